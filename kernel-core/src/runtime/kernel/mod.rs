//! The kernel: a registry of named slots, the lifecycle in dependency order, and routing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

mod builder;
#[cfg(all(feature = "takeover", target_os = "linux"))]
mod handover;
mod lifecycle;
mod persistence;
mod register;
mod registry;
pub(crate) mod supervision;

pub use builder::{BuildError, KernelBuilder};
#[cfg(all(feature = "takeover", target_os = "linux"))]
pub(crate) use handover::Paused;
use persistence::Persistence;
use registry::Registry;
use supervision::Restarts;

use crate::messaging::message::{Event, KERNEL, Reply};
use crate::messaging::push::{PendingReply, Pusher};
use crate::runtime::error::Status;
use crate::runtime::error::{CallError, LifecycleError};
use crate::runtime::graph::{self, DepGraph};
use crate::runtime::lifecycle::Lifecycle;
use crate::runtime::notice::{Notice, Notices};
use crate::runtime::reap::Reaper;
use crate::runtime::route::Route;
use crate::runtime::sync::ReentrantLock;
use crate::seal::Sealer;

/// Why a synchronous `Event` call to a name served elsewhere fails ([`CallError::Remote`]).
const SYNC_STAYS_HERE: &str = "a synchronous call does not wait on the network: await Kernel::call_async";

/// Why a typed call to a name served elsewhere fails ([`CallError::Remote`]), in either spelling.
pub(crate) const TYPED_STAYS_HERE: &str =
    "typed calls reach only this node's services: call_async sends an Event to other nodes";

/// The kernel. Cheap to clone (an `Arc`), `Send + Sync`: share it across threads freely.
///
/// Dropping the last clone stops every running service in reverse dependency order.
///
/// # Operations
///
/// Each operation has one name, a synchronous spelling and (feature `tokio`) an async one that
/// takes the same arguments, returns the same type and fails with the same errors. The async
/// spellings never block a runtime worker: lifecycle work runs on the blocking pool.
///
/// | operation | synchronous | async (feature `tokio`) | fails with |
/// |---|---|---|---|
/// | register a service | `register`, `register_typed` | `register_async`, `register_async_typed` (async services) | [`LifecycleError`] |
/// | call by name | `call(name, event)`, `call_timeout` | `call_async`, `call_async_timeout` | [`CallError`] |
/// | typed call by name | [`call_typed`](Self::call_typed) | `call_typed_async` | [`CallError`] ([`CallError::WrongTypes`]) |
/// | route by `event.to` | [`send`](Self::send) | `send_async` | a reply with the error's code |
/// | push | [`push`](Self::push)`(event, timeout)` | `push_async(event, timeout)` | a reply with the error's code |
/// | a handle (no name lookup) | `handle`, `handle_typed` | `async_handle`, `async_handle_typed` | [`CallError`] |
/// | start / stop all | `start_all`, `stop_all` | `start_all_async`, `stop_all_async` (= `shutdown`) | [`LifecycleError`], [`StopAllError`](crate::StopAllError) |
/// | start / stop one | `start`, `stop`, `stop_cascade` | `start_async`, `stop_async`, `stop_cascade_async` | [`LifecycleError`] |
/// | save | `checkpoint`, `checkpoint_service` | `checkpoint_async`, `checkpoint_service_async` | [`CheckpointError`](crate::CheckpointError), [`LifecycleError`] |
/// | replace (upgrade) | `replace`, `replace_at` | `replace_async`, `replace_async_at` | [`ReplaceError`](crate::ReplaceError) |
/// | roll back | `rollback`, `rollback_at` | `rollback_async`, `rollback_async_at` | [`ReplaceError`](crate::ReplaceError) |
/// | supervise | `supervise`, `replace_supervised` | `supervise_async`, `replace_supervised_async` | [`LifecycleError`], [`ReplaceError`](crate::ReplaceError) |
/// | anything else from async code | — | `blocking(\|kernel\| ...)` | what the operation returns |
///
/// Where the two spellings differ, it is in what they can reach, never in how they fail:
///
/// - `replace`/`rollback`/`supervise` and their async spellings differ only in the kind of
///   service they take: a synchronous [`Handler`](crate::Handler) or an `AsyncHandler`. Each
///   refuses a name that is not registered (a replacement with [`CallError::NotFound`] inside
///   its error, `supervise` with [`LifecycleError::NotFound`]) and a service of the other kind
///   ([`ReplaceCause::WrongKind`](crate::ReplaceCause::WrongKind),
///   [`LifecycleError::WrongKind`]). `supervise_async` does not
///   wait for anything, so it is a plain `fn`.
/// - An [`AsyncHandle`](crate::asynchronous::AsyncHandle) reaches a service of either kind; a
///   [`Handle`](crate::Handle) only a synchronous one (an async service is [`CallError::WrongKind`] there:
///   calling it would block on the runtime).
/// - With other nodes to ask (`KernelBuilder::remote`), `call_async`/`send_async` reach a name
///   served elsewhere; `call`/`send` refuse it with [`CallError::Remote`] (a synchronous call
///   never waits on the network), typed calls in both spellings too (other nodes take `Event`s),
///   and pushes in both spellings reach this node's services only (404).
/// - An `Event` call, send, push or handle to a service with its own protocol is
///   [`CallError::WrongTypes`] in every spelling (415 as a reply).
///
/// ```
/// use microkernel::{Context, Event, Kernel, Reply, Handler, Status};
///
/// #[derive(microkernel::Service)]
/// #[service(name = "db")]
/// struct Db;
/// impl Handler for Db {
///     type Request = Event;
///     type Response = Reply;
///     fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply { Reply::ok("stored", "") }
/// }
///
/// #[derive(microkernel::Service)]
/// #[service(name = "api", deps = ["db"])]
/// struct Api;
/// impl Handler for Api {
///     type Request = Event;
///     type Response = Reply;
///     fn handle(&mut self, ev: Event, ctx: &Context<'_>) -> Reply {
///         ctx.call("db", ev).unwrap_or_else(|e| e.to_reply())
///     }
/// }
///
/// let kernel = Kernel::new();
/// kernel.register(Api)?;          // dependencies may be registered later
/// kernel.register(Db)?;
/// assert_eq!(kernel.start_order()?, ["db", "api"]);
/// kernel.start_all()?;
/// assert_eq!(kernel.send(Event::new("api", "doc", "put", "x")).message, "stored");
/// kernel.stop_all()?;
/// assert_eq!(kernel.status("db"), Some(Status::Stopped));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Kernel {
    shared: Arc<Shared>,
}

/// What the kernel holds; services reach it through a `Weak`, so they never keep it alive.
pub(crate) struct Shared {
    registry: RwLock<Registry>,
    /// Serializes lifecycle changes (start, stop, replace) kernel-wide; re-entrant so that hooks
    /// may change other services' lifecycles. Calls never take it.
    lifecycle: Arc<ReentrantLock>,
    notices: Arc<Notices>,
    pusher: Pusher,
    persistence: Persistence,
    /// Bounds each `stop` hook during `stop_all` (and `stop`); `None` waits for ever.
    stop_timeout: Option<Duration>,
    /// How long a replacement of an async service waits for a handler mid-`.await`.
    drain_timeout: Duration,
    /// Where async calls to names no local service has go (feature `tokio`).
    #[cfg(feature = "tokio")]
    pub(crate) remote: Option<Arc<dyn crate::runtime::asynchronous::RemoteCalls>>,
    reaper: Reaper,
    restarts: Restarts,
    /// How many times `stop_all` began: a restart scheduled before the latest is dropped.
    stops: AtomicU64,
    /// Names this kernel among all the process's, for the threads' route caches.
    pub(crate) id: u64,
    /// How many services were unregistered: a thread's cached routes from before are dropped.
    pub(crate) removals: AtomicU64,
    /// The `Arc` this lives in, for threads that must not keep the kernel alive.
    this: Weak<Shared>,
}

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) lifecycle: Arc<dyn Lifecycle>,
    /// Where events addressed to it by name go.
    pub(crate) route: Route,
    /// Shared, so that the copies lifecycle walks take of the registry cost no allocation.
    pub(crate) deps: Arc<[String]>,
}

impl Kernel {
    /// A kernel with no observer and default limits.
    pub fn new() -> Self {
        match KernelBuilder::default().build() {
            Ok(kernel) => kernel,
            // Unreachable: the defaults (16 push workers, no checkpoints, no stop timeout) are
            // all valid, and `build` refuses only invalid settings.
            Err(error) => unreachable!("the default kernel settings are valid: {error}"),
        }
    }

    /// Starts building a kernel.
    pub fn builder() -> KernelBuilder {
        KernelBuilder::default()
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn shared_arc(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The sealer configured with [`KernelBuilder::sealer`]: it seals saved states and the
    /// states crossing a replacement. Without one, a replacement seals its state with a key
    /// generated for this kernel alone (AES-256-GCM), which is never stored, so nothing can be
    /// saved (a store needs a configured sealer).
    pub fn sealer(&self) -> Option<&Sealer> {
        self.shared.persistence.sealer()
    }

    /// The service's status, or `None` if no service has that name.
    pub fn status(&self, name: &str) -> Option<Status> {
        self.shared.read().get(name).map(|e| e.lifecycle.status())
    }

    /// Registered service names, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.read().iter().map(|(k, _)| k.to_string()).collect();
        names.sort();
        names
    }

    /// The order `start_all` would start the services in: each after its dependencies,
    /// independent ones by name. Fails on an unknown dependency or a cycle.
    pub fn start_order(&self) -> Result<Vec<String>, LifecycleError> {
        let snapshot = self.shared.snapshot();
        graph::start_order(&dep_graph(&snapshot))
    }

    /// Calls the service `to` on this thread and returns its reply. The target is `to`;
    /// `event.to` is not consulted (use [`send`](Self::send) to route by `event.to`, naming the
    /// target once).
    pub fn call(&self, to: &str, event: Event) -> Result<Reply, CallError> {
        self.shared.local_route(to, SYNC_STAYS_HERE)?.call(to, event, None)
    }

    /// [`call`](Self::call), waiting at most `timeout` to enter the service (see
    /// [`Handle::call_timeout`](crate::Handle::call_timeout): a handler that has started is not interrupted).
    pub fn call_timeout(&self, to: &str, event: Event, timeout: Duration) -> Result<Reply, CallError> {
        self.shared
            .local_route(to, SYNC_STAYS_HERE)?
            .call(to, event, Some(timeout))
    }

    /// Routes `event` to the service named by `event.to` and returns its reply: [`call`](Self::call)
    /// to `event.to`, with failures as replies with their codes (404 for an unknown or stopped
    /// service, 503 for one served on another node, which `Kernel::send_async` reaches).
    pub fn send(&self, event: Event) -> Reply {
        let to = event.to.clone();
        self.call(&to, event).unwrap_or_else(|e| e.to_reply())
    }

    /// Pushes an event to the kernel and waits at most `timeout` for its reply: one addressed
    /// to [`KERNEL`] is answered `{0 Handled by kernel ok}`; one addressed to a service is
    /// routed to it on a push worker thread, so the timeout bounds the wait even if the
    /// handler hangs (the handler then finishes on the worker). It reaches this node's services
    /// only. Failures are reply codes: 404 for an unknown or stopped service, 408 past the
    /// timeout, 415 for a service with its own request type. The same as [`Context::push`](crate::Context::push) and, from async code,
    /// `Kernel::push_async`.
    pub fn push(&self, event: Event, timeout: Duration) -> Reply {
        self.push_detached(event).wait(timeout)
    }

    /// [`push`](Self::push) without waiting: the reply, when it comes, is in the returned
    /// pending reply (which may be dropped: fire and forget).
    pub(crate) fn push_detached(&self, event: Event) -> PendingReply {
        self.shared.notify(&Notice::Pushed { event: &event });
        if event.to == KERNEL {
            return PendingReply::ready(Reply::ok("Handled by kernel", "ok"));
        }
        // The status is checked by the worker, under the slot's mutex: a service being replaced
        // is briefly between its old and new instance, and its events must wait, not get 404.
        let route = match self.shared.route(&event.to) {
            Ok(Route::Typed(typed)) => {
                return PendingReply::ready(typed.refuse_events(&event.to).to_reply());
            }
            Ok(route) => route,
            Err(e) => return PendingReply::ready(e.to_reply()),
        };
        self.shared.pusher.submit(move || {
            let to = event.to.clone();
            route.call(&to, event, None).unwrap_or_else(|e| e.to_reply())
        })
    }
}

impl Default for Kernel {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").field("services", &self.services()).finish()
    }
}

fn not_found(name: &str) -> LifecycleError {
    LifecycleError::NotFound { name: name.to_owned() }
}

/// A copy of the registry. Indexing it (`snapshot[name]`) is done only with names taken from
/// it or from a graph built from it, so the key is always there.
pub(crate) type Snapshot = BTreeMap<Arc<str>, Entry>;

pub(crate) fn dep_graph(snapshot: &Snapshot) -> DepGraph<'_> {
    snapshot.iter().map(|(name, entry)| (&**name, &*entry.deps)).collect()
}

/// Every dependency is registered (per `lookup`) and running.
fn dependencies_running<'a>(
    service: &str,
    deps: &[String],
    lookup: impl Fn(&str) -> Option<&'a Entry>,
) -> Result<(), LifecycleError> {
    for dependency in deps {
        let entry = lookup(dependency).ok_or_else(|| LifecycleError::UnknownDependency {
            service: service.to_owned(),
            dependency: dependency.clone(),
        })?;
        let status = entry.lifecycle.status();
        if status != Status::Running {
            return Err(LifecycleError::DependencyNotRunning {
                service: service.to_owned(),
                dependency: dependency.clone(),
                status,
            });
        }
    }
    Ok(())
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the registry, so that no registry lock is held while service code runs.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.read().iter().map(|(k, v)| (Arc::clone(k), v.clone())).collect()
    }

    /// A copy of the registry if `wanted` says one is needed, taken under one read lock.
    pub(crate) fn snapshot_if(&self, wanted: impl FnOnce(&Registry) -> bool) -> Option<Snapshot> {
        let registry = self.read();
        wanted(&registry).then(|| registry.iter().map(|(k, v)| (Arc::clone(k), v.clone())).collect())
    }

    /// Every dependency is registered and running, looked up under one read lock.
    pub(crate) fn check_running(&self, service: &str, deps: &[String]) -> Result<(), LifecycleError> {
        let registry = self.read();
        dependencies_running(service, deps, |name| registry.get(name))
    }

    /// The registered service's dependencies are all running (read from the registry, without
    /// touching the service's slot).
    pub(crate) fn check_dependencies_of(&self, service: &str) -> Result<(), LifecycleError> {
        let registry = self.read();
        let deps = registry.get(service).map(|e| e.deps.clone()).unwrap_or_default();
        dependencies_running(service, &deps, |name| registry.get(name))
    }

    /// Records a replaced service's dependencies, if they changed.
    pub(crate) fn set_dependencies(&self, service: &str, deps: Vec<String>) {
        // The common case, unchanged dependencies, needs only the read lock.
        if self.read().get(service).is_some_and(|e| *e.deps == *deps) {
            return;
        }
        self.write().set_deps(service, deps.into());
    }

    /// Takes the kernel's lifecycle lock for `operation`, unless waiting for it would deadlock.
    pub(crate) fn lifecycle_lock(
        &self,
        operation: &'static str,
    ) -> Result<crate::runtime::sync::ReentrantGuard<'_>, LifecycleError> {
        self.lifecycle
            .lock()
            .map_err(|cycle| LifecycleError::WouldDeadlock { operation, cycle })
    }

    /// Who is supervised, and the supervisor thread.
    pub(crate) fn restarts(&self) -> &Restarts {
        &self.restarts
    }

    /// Drops replaced instances.
    pub(crate) fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    /// A reference to the kernel that does not keep it alive.
    pub(crate) fn weak_self(&self) -> Weak<Shared> {
        Weak::clone(&self.this)
    }

    /// How many times `stop_all` has begun.
    pub(crate) fn stops(&self) -> u64 {
        self.stops.load(Ordering::SeqCst)
    }

    /// Where states are kept and sealed.
    pub(crate) fn persistence(&self) -> &Persistence {
        &self.persistence
    }

    /// The sealer a replacement's state crosses with (see [`Persistence::crossing_sealer`]).
    pub(crate) fn crossing_sealer(&self) -> Result<&Sealer, crate::seal::KeyError> {
        self.persistence.crossing_sealer()
    }

    /// How long a replacement of an async service waits for a handler mid-`.await`.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// Where a call that stays on this node goes (a synchronous `Event` call, a typed call in
    /// either spelling): a local service, else an error — which, when the kernel has other
    /// nodes to ask, says so and why the call stays here (`why_here`).
    #[cfg_attr(not(feature = "tokio"), allow(unused_variables))]
    pub(crate) fn local_route(&self, name: &str, why_here: &'static str) -> Result<Route, CallError> {
        match self.route(name) {
            #[cfg(feature = "tokio")]
            Err(CallError::NotFound { service }) if self.has_remote(name) => Err(CallError::Remote {
                service,
                reason: format!("it is not served on this node, and {why_here}"),
            }),
            other => other,
        }
    }

    /// The other nodes to ask for `name`, if the kernel has some: never for [`KERNEL`], which
    /// names this kernel (a push answers it; a call finds no service of that name).
    #[cfg(feature = "tokio")]
    pub(crate) fn remote_for(&self, name: &str) -> Option<&Arc<dyn crate::runtime::asynchronous::RemoteCalls>> {
        self.remote.as_ref().filter(|_| name != KERNEL)
    }

    #[cfg(feature = "tokio")]
    fn has_remote(&self, name: &str) -> bool {
        self.remote_for(name).is_some()
    }

    /// Where events for `name` go: from this thread's cache, else from the registry (then
    /// remembered).
    pub(crate) fn route(&self, name: &str) -> Result<Route, CallError> {
        let epoch = self.removals.load(std::sync::atomic::Ordering::Acquire);
        if let Some(route) = crate::runtime::route::cached(self.id, epoch, name) {
            return Ok(route);
        }
        let route = self.route_from_registry(name)?;
        crate::runtime::route::remember(self.id, epoch, name, &route);
        Ok(route)
    }

    /// Where events for `name` go, read from the registry.
    fn route_from_registry(&self, name: &str) -> Result<Route, CallError> {
        let registry = self.read();
        let entry = registry.get(name).ok_or_else(|| CallError::NotFound {
            service: name.to_owned(),
        })?;
        Ok(entry.route.clone())
    }

    /// Tells the observer (see [`Notices`]).
    pub(crate) fn notify(&self, notice: &Notice<'_>) {
        self.notices.notify(notice);
    }
}
