//! How an event addressed by name reaches its service.

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
    /// A service with its own request type: only its typed handle reaches it.
    Typed,
}

impl Route {
    /// Calls the service on this thread (an async one without blocking a runtime's worker).
    pub(crate) fn call(&self, service: &str, event: Event, timeout: Option<Duration>) -> Result<Reply, CallError> {
        match (self, timeout) {
            (Route::Sync(slot), None) => slot.call(event),
            (Route::Sync(slot), Some(timeout)) => slot.call_within(event, timeout),
            #[cfg(feature = "tokio")]
            (Route::Async(slot), _) => slot.call_blocking(event, timeout),
            (Route::Typed, _) => Err(CallError::Unsupported {
                service: service.to_owned(),
            }),
        }
    }
}

/// A route held weakly: a dropped kernel's services are not kept alive by a thread's cache.
enum WeakRoute {
    Sync(std::sync::Weak<Slot<Event, Reply>>),
    #[cfg(feature = "tokio")]
    Async(std::sync::Weak<crate::runtime::asynchronous::AsyncSlot<Event, Reply>>),
    Typed,
}

impl WeakRoute {
    fn of(route: &Route) -> Self {
        match route {
            Route::Sync(slot) => WeakRoute::Sync(Arc::downgrade(slot)),
            #[cfg(feature = "tokio")]
            Route::Async(slot) => WeakRoute::Async(Arc::downgrade(slot)),
            Route::Typed => WeakRoute::Typed,
        }
    }

    fn upgrade(&self) -> Option<Route> {
        match self {
            WeakRoute::Sync(slot) => slot.upgrade().map(Route::Sync),
            #[cfg(feature = "tokio")]
            WeakRoute::Async(slot) => slot.upgrade().map(Route::Async),
            WeakRoute::Typed => Some(Route::Typed),
        }
    }
}

/// The routes one thread has looked up in one kernel.
struct KernelRoutes {
    kernel: u64,
    /// The kernel's count of unregistered services when these routes were read: once it moves
    /// on, a cached route may lead to a slot that left the registry.
    epoch: u64,
    routes: std::collections::HashMap<Box<str>, WeakRoute, crate::runtime::kernel::Names>,
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
