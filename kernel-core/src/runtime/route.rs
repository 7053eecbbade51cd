//! How an event addressed by name reaches its service, and how a typed call by name finds its
//! slot. Routes hold slots with their types erased, so that the registry, and the kernel around
//! it, name no kind of slot.

use std::any::{Any, type_name};
use std::sync::Arc;
use std::time::Duration;

use crate::messaging::message::{Event, Reply};
use crate::runtime::error::CallError;

/// Where the registry sends events for a service.
#[derive(Clone)]
pub(crate) enum Route {
    /// A service speaking `Event`/`Reply`, synchronous or async.
    Events(Arc<dyn CallsByName>),
    /// A service with its own request and response types: a typed call by name reaches it.
    Typed(TypedSlot),
}

/// A slot that takes `Event`s: a synchronous or an async one speaking `Event`/`Reply`.
pub(crate) trait CallsByName: Any + Send + Sync {
    /// Calls the service on this thread (an async one without blocking a runtime's worker),
    /// waiting at most `timeout` to enter it.
    fn call(self: Arc<Self>, event: Event, timeout: Option<Duration>) -> Result<Reply, CallError>;
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
pub(crate) type Speaks = (&'static str, &'static str);

/// The error for a call asking `service`, which speaks `registered`, for `Req` and `Resp`.
#[cold]
pub(crate) fn wrong_types<Req, Resp>(service: &str, registered: Speaks) -> CallError {
    CallError::WrongTypes {
        service: service.to_owned(),
        registered: format!("{} -> {}", registered.0, registered.1),
        requested: format!("{} -> {}", type_name::<Req>(), type_name::<Resp>()),
    }
}

impl TypedSlot {
    /// The error for an `Event` call, send or push to this service.
    pub(crate) fn refuse_events(&self, service: &str) -> CallError {
        wrong_types::<Event, Reply>(service, self.speaks)
    }

    /// `slot`, speaking `Req` and `Resp`.
    pub(crate) fn new<Req: 'static, Resp: 'static, T: Send + Sync + 'static>(slot: Arc<T>) -> Self {
        Self {
            slot,
            speaks: (type_name::<Req>(), type_name::<Resp>()),
        }
    }
}

impl Route {
    /// Calls the service on this thread (an async one without blocking a runtime's worker).
    pub(crate) fn call(self, service: &str, event: Event, timeout: Option<Duration>) -> Result<Reply, CallError> {
        match self {
            Route::Events(slot) => slot.call(event, timeout),
            Route::Typed(typed) => Err(typed.refuse_events(service)),
        }
    }

    /// The slot, its types erased, and the protocol it speaks.
    pub(crate) fn slot(&self) -> (Arc<dyn Any + Send + Sync>, Speaks) {
        match self {
            Route::Events(slot) => (Arc::clone(slot) as _, (type_name::<Event>(), type_name::<Reply>())),
            Route::Typed(typed) => (Arc::clone(&typed.slot), typed.speaks),
        }
    }
}

impl Route {
    /// The route of `slot`, registered with its own types `Req` and `Resp` (`register_typed`):
    /// typed, unless it speaks `Event`/`Reply` after all (it is an `E`), then routed as
    /// `register` routes it, so that every spelling reaches it alike.
    pub(crate) fn registered_typed<Req: 'static, Resp: 'static, T: Send + Sync + 'static, E: CallsByName>(
        slot: Arc<T>,
    ) -> Route {
        match Arc::downcast::<E>(Arc::clone(&slot) as Arc<dyn Any + Send + Sync>) {
            Ok(events) => Route::Events(events),
            Err(_) => Route::Typed(TypedSlot::new::<Req, Resp, _>(slot)),
        }
    }
}

/// A route held weakly: a dropped kernel's services are not kept alive by a thread's cache.
enum WeakRoute {
    Events(std::sync::Weak<dyn CallsByName>),
    Typed(std::sync::Weak<dyn Any + Send + Sync>, Speaks),
}

impl WeakRoute {
    fn of(route: &Route) -> Self {
        match route {
            Route::Events(slot) => WeakRoute::Events(Arc::downgrade(slot)),
            Route::Typed(typed) => WeakRoute::Typed(Arc::downgrade(&typed.slot), typed.speaks),
        }
    }

    fn upgrade(&self) -> Option<Route> {
        match self {
            WeakRoute::Events(slot) => slot.upgrade().map(Route::Events),
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
