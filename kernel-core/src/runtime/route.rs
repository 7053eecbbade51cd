//! How an event addressed by name reaches its service, and how a typed call by name finds its
//! slot.

use std::any::{Any, type_name};
use std::sync::Arc;
use std::time::Duration;

use crate::messaging::message::{Event, Reply};
use crate::runtime::error::CallError;
use crate::runtime::slot::Slot;

/// Where the registry sends events for a service.
#[derive(Clone)]
pub(crate) enum Route {
    /// A synchronous service speaking `Event`/`Reply`.
    Sync(Arc<Slot<Event, Reply>>),
    /// An async service speaking `Event`/`Reply`.
    #[cfg(feature = "tokio")]
    Async(Arc<crate::runtime::asynchronous::AsyncSlot<Event, Reply>>),
    /// A service with its own request and response types: a typed call by name reaches it.
    Typed(TypedSlot),
}

/// The slot of a service with its own protocol, its types erased; a typed call by name gets it
/// back after checking the types it asks for are the ones the service was registered with.
#[derive(Clone)]
pub(crate) struct TypedSlot {
    /// An `Arc<Slot<Req, Resp>>` or an `Arc<AsyncSlot<Req, Resp>>`.
    slot: Arc<dyn Any + Send + Sync>,
    /// The request and response types' names, for the error when they differ.
    speaks: Speaks,
}

/// The names of a protocol's request and response types.
type Speaks = (&'static str, &'static str);

impl TypedSlot {
    /// `slot`, speaking `Req` and `Resp`.
    pub(crate) fn new<Req: 'static, Resp: 'static, T: Send + Sync + 'static>(slot: Arc<T>) -> Self {
        Self {
            slot,
            speaks: (type_name::<Req>(), type_name::<Resp>()),
        }
    }
}

/// The slot behind a route, of the kind and protocol asked for.
pub(crate) enum SlotOfKind<Req, Resp> {
    Sync(Arc<Slot<Req, Resp>>),
    #[cfg(feature = "tokio")]
    Async(Arc<crate::runtime::asynchronous::AsyncSlot<Req, Resp>>),
}

impl Route {
    /// Calls the service on this thread (an async one without blocking a runtime's worker).
    pub(crate) fn call(&self, service: &str, event: Event, timeout: Option<Duration>) -> Result<Reply, CallError> {
        match (self, timeout) {
            (Route::Sync(slot), None) => slot.call(event),
            (Route::Sync(slot), Some(timeout)) => slot.call_within(event, timeout),
            #[cfg(feature = "tokio")]
            (Route::Async(slot), _) => slot.call_blocking(event, timeout),
            (Route::Typed(_), _) => Err(CallError::Unsupported {
                service: service.to_owned(),
            }),
        }
    }

    /// The service's slot if it speaks `Req` and `Resp`; else [`CallError::WrongTypes`] naming
    /// both protocols.
    pub(crate) fn slot_speaking<Req: Send + 'static, Resp: Send + 'static>(
        &self,
        service: &str,
    ) -> Result<SlotOfKind<Req, Resp>, CallError> {
        let (slot, speaks): (Arc<dyn Any + Send + Sync>, Speaks) = match self {
            Route::Sync(slot) => (Arc::clone(slot) as _, (type_name::<Event>(), type_name::<Reply>())),
            #[cfg(feature = "tokio")]
            Route::Async(slot) => (Arc::clone(slot) as _, (type_name::<Event>(), type_name::<Reply>())),
            Route::Typed(typed) => (Arc::clone(&typed.slot), typed.speaks),
        };
        let _other = match Arc::downcast::<Slot<Req, Resp>>(slot) {
            Ok(slot) => return Ok(SlotOfKind::Sync(slot)),
            Err(other) => other,
        };
        #[cfg(feature = "tokio")]
        if let Ok(slot) = Arc::downcast::<crate::runtime::asynchronous::AsyncSlot<Req, Resp>>(_other) {
            return Ok(SlotOfKind::Async(slot));
        }
        Err(CallError::WrongTypes {
            service: service.to_owned(),
            registered: format!("{} -> {}", speaks.0, speaks.1),
            requested: format!("{} -> {}", type_name::<Req>(), type_name::<Resp>()),
        })
    }
}

/// A route held weakly: a dropped kernel's services are not kept alive by a thread's cache.
enum WeakRoute {
    Sync(std::sync::Weak<Slot<Event, Reply>>),
    #[cfg(feature = "tokio")]
    Async(std::sync::Weak<crate::runtime::asynchronous::AsyncSlot<Event, Reply>>),
    Typed(std::sync::Weak<dyn Any + Send + Sync>, Speaks),
}

impl WeakRoute {
    fn of(route: &Route) -> Self {
        match route {
            Route::Sync(slot) => WeakRoute::Sync(Arc::downgrade(slot)),
            #[cfg(feature = "tokio")]
            Route::Async(slot) => WeakRoute::Async(Arc::downgrade(slot)),
            Route::Typed(typed) => WeakRoute::Typed(Arc::downgrade(&typed.slot), typed.speaks),
        }
    }

    fn upgrade(&self) -> Option<Route> {
        match self {
            WeakRoute::Sync(slot) => slot.upgrade().map(Route::Sync),
            #[cfg(feature = "tokio")]
            WeakRoute::Async(slot) => slot.upgrade().map(Route::Async),
            WeakRoute::Typed(slot, speaks) => slot
                .upgrade()
                .map(|slot| Route::Typed(TypedSlot { slot, speaks: *speaks })),
        }
    }
}

/// The routes one thread has looked up in one kernel.
struct KernelRoutes {
    kernel: u64,
    /// The kernel's count of unregistered services when these routes were read: once it moves
    /// on, a cached route may lead to a slot that left the registry.
    epoch: u64,
    routes: std::collections::HashMap<Box<str>, WeakRoute, crate::runtime::graph::Names>,
}

/// Kernels a thread remembers routes for, and routes per kernel, at most.
const CACHED_KERNELS: usize = 8;
const CACHED_ROUTES: usize = 4096;

std::thread_local! {
    /// Routes this thread has looked up by name. A call by name finds its slot here without the
    /// registry's lock, which every thread calling by name would otherwise share: a service's
    /// route never changes while it is registered (a replacement swaps the instance inside the
    /// slot), so an entry stays right until a service is unregistered (the kernel's epoch).
    static CACHE: std::cell::RefCell<Vec<KernelRoutes>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The route to `name` in kernel `kernel`, if this thread has looked it up before.
pub(crate) fn cached(kernel: u64, epoch: u64, name: &str) -> Option<Route> {
    CACHE
        .try_with(|cache| {
            // A call made from a handler reached through the cache finds it borrowed: it reads
            // it again (shared), and only an insertion would have to give up.
            let cache = cache.try_borrow().ok()?;
            let routes = cache.iter().find(|k| k.kernel == kernel && k.epoch == epoch)?;
            routes.routes.get(name)?.upgrade()
        })
        .ok()
        .flatten()
}

/// Remembers the route to `name` in kernel `kernel` for this thread (if its cache is free).
pub(crate) fn remember(kernel: u64, epoch: u64, name: &str, route: &Route) {
    let _ = CACHE.try_with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else { return };
        let at = match cache.iter().position(|k| k.kernel == kernel) {
            Some(at) => at,
            None => {
                if cache.len() == CACHED_KERNELS {
                    cache.remove(0);
                }
                cache.push(KernelRoutes {
                    kernel,
                    epoch,
                    routes: Default::default(),
                });
                cache.len() - 1
            }
        };
        if cache[at].epoch != epoch {
            cache[at].epoch = epoch;
            cache[at].routes.clear();
        }
        let routes = &mut cache[at].routes;
        if routes.len() >= CACHED_ROUTES {
            routes.clear();
        }
        routes.insert(name.into(), WeakRoute::of(route));
    });
}
