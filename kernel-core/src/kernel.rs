//! The kernel: a registry of named slots, the lifecycle in dependency order, and routing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use crate::error::{CallError, Hook, LifecycleError, StopAllError};
use crate::graph::{self, DepGraph};
use crate::handle::Handle;
use crate::message::{Event, KERNEL, Reply};
use crate::notice::{Notice, Observer};
use crate::persist::Checkpointer;
use crate::push::{PendingReply, Pusher};
use crate::reap::Reaper;
use crate::seal::Sealer;
use crate::service::{Service, Status};
use crate::slot::{Lifecycle, Slot, SlotOf, StopRace};
use crate::store::StateStore;
use crate::supervise::Supervision;
use crate::sync::ReentrantLock;

/// The kernel. Cheap to clone (an `Arc`), `Send + Sync`: share it across threads freely.
///
/// Dropping the last clone stops every running service in reverse dependency order.
///
/// ```
/// use microkernel::{Context, Event, Kernel, Reply, Service, Status};
///
/// #[derive(microkernel::Service)]
/// #[service(name = "db")]
/// struct Db;
/// impl Service for Db {
///     type Request = Event;
///     type Response = Reply;
///     fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply { Reply::ok("stored", "") }
/// }
///
/// #[derive(microkernel::Service)]
/// #[service(name = "api", deps = ["db"])]
/// struct Api;
/// impl Service for Api {
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

/// Builds a [`Kernel`] with an observer and limits.
#[must_use]
pub struct KernelBuilder {
    observer: Option<Observer>,
    max_push_workers: usize,
    sealer: Option<Sealer>,
    store: Option<StateStore>,
    checkpoint_every: Option<Duration>,
    stop_timeout: Option<Duration>,
    #[cfg(feature = "fault-injection")]
    transit_fault: Option<TransitFault>,
    #[cfg(feature = "fault-injection")]
    save_pause: Option<SavePause>,
}

/// Alters sealed state between seal and open (fault-injection builds only).
#[cfg(feature = "fault-injection")]
pub(crate) type TransitFault = Box<dyn Fn(&mut Vec<u8>) + Send + Sync>;

/// Runs between a save's export and its write, with the service and the generation exported
/// (fault-injection builds only): lets a test force an interleaving of saves.
#[cfg(feature = "fault-injection")]
pub(crate) type SavePause = Box<dyn Fn(&str, u64) + Send + Sync>;

impl Default for KernelBuilder {
    fn default() -> Self {
        Self {
            observer: None,
            max_push_workers: 16,
            sealer: None,
            store: None,
            checkpoint_every: None,
            stop_timeout: None,
            #[cfg(feature = "fault-injection")]
            transit_fault: None,
            #[cfg(feature = "fault-injection")]
            save_pause: None,
        }
    }
}

impl KernelBuilder {
    /// Calls `observer` with every [`Notice`]: registrations, starts, stops, pushed events,
    /// state migrations. It runs on the thread that caused the notice.
    pub fn observer(mut self, observer: impl Fn(&Notice<'_>) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The most threads that run pushed events at once (default 16). A push finding them all
    /// busy waits in a queue; its timeout still bounds the caller's wait.
    pub fn max_push_workers(mut self, n: usize) -> Self {
        self.max_push_workers = n;
        self
    }

    /// Seals every state that crosses a replacement with `sealer`.
    pub fn sealer(mut self, sealer: Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Alters every sealed state between seal and open, to test that tampering is caught
    /// (only with the `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    pub fn fault_in_transit(mut self, fault: impl Fn(&mut Vec<u8>) + Send + Sync + 'static) -> Self {
        self.transit_fault = Some(Box::new(fault));
        self
    }

    /// Calls `pause(service, generation)` after a save exported a state and before it writes it
    /// (only with the `fault-injection` feature), to force interleavings of saves in tests.
    #[cfg(feature = "fault-injection")]
    pub fn pause_before_save(mut self, pause: impl Fn(&str, u64) + Send + Sync + 'static) -> Self {
        self.save_pause = Some(Box::new(pause));
        self
    }

    /// Persists states in `store`: saved when a service stops and on
    /// [`Kernel::checkpoint`]; a registering service whose file exists starts from it.
    pub fn store(mut self, store: StateStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Also checkpoints every running service every `interval` (needs a store); failures are
    /// reported through `tracing` at error level.
    pub fn checkpoint_every(mut self, interval: Duration) -> Self {
        self.checkpoint_every = Some(interval);
        self
    }

    /// Gives each `stop` hook at most `timeout` (during `stop`, `stop_cascade` and `stop_all`).
    /// A service that does not stop in time is reported ([`LifecycleError::StopTimeout`]) and
    /// marked Failed, and the others still stop in order; its hook keeps running on its own
    /// thread until it returns.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = Some(timeout);
        self
    }

    /// Builds the kernel, refusing settings that could not mean anything: no push workers,
    /// periodic checkpoints without a store, a zero checkpoint interval or stop timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use microkernel::{BuildError, Kernel};
    ///
    /// let kernel = Kernel::builder().stop_timeout(Duration::from_secs(5)).build()?;
    /// let refused = Kernel::builder().checkpoint_every(Duration::from_secs(1)).build();
    /// assert!(matches!(refused, Err(BuildError::CheckpointsWithoutStore)));
    /// # drop(kernel);
    /// # Ok::<(), BuildError>(())
    /// ```
    pub fn build(self) -> Result<Kernel, BuildError> {
        if self.max_push_workers == 0 {
            return Err(BuildError::NoPushWorkers);
        }
        match self.checkpoint_every {
            Some(_) if self.store.is_none() => return Err(BuildError::CheckpointsWithoutStore),
            Some(interval) if interval.is_zero() => {
                return Err(BuildError::ZeroDuration {
                    setting: "checkpoint_every",
                });
            }
            _ => {}
        }
        if self.stop_timeout.is_some_and(|t| t.is_zero()) {
            return Err(BuildError::ZeroDuration {
                setting: "stop_timeout",
            });
        }
        let shared = Arc::new_cyclic(|this| Shared {
            stops: AtomicU64::new(0),
            this: Weak::clone(this),
            registry: RwLock::new(HashMap::default()),
            lifecycle: Arc::default(),
            observer: self.observer,
            pusher: Pusher::new(self.max_push_workers),
            sealer: self.sealer,
            checkpoint_every: self.checkpoint_every,
            store: self.store,
            checkpointer: Mutex::new(None),
            stop_timeout: self.stop_timeout,
            reaper: Reaper::default(),
            supervision: Supervision::default(),
            #[cfg(feature = "fault-injection")]
            transit_fault: self.transit_fault,
            #[cfg(feature = "fault-injection")]
            save_pause: self.save_pause,
        });
        Ok(Kernel { shared })
    }
}

/// A [`KernelBuilder`] setting that cannot mean anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_push_workers(0)`: no pushed event could ever be handled.
    #[error("max_push_workers(0): pushed events need at least one worker")]
    NoPushWorkers,
    /// `checkpoint_every` without a `store`: nowhere to write the checkpoints.
    #[error("checkpoint_every needs a store: add .store(StateStore::open(..)?)")]
    CheckpointsWithoutStore,
    /// A duration of zero where a positive one is needed.
    #[error("{setting}(Duration::ZERO): give a positive duration")]
    ZeroDuration {
        /// The builder method.
        setting: &'static str,
    },
}

/// What the kernel holds; services reach it through a `Weak`, so they never keep it alive.
pub(crate) struct Shared {
    registry: RwLock<Registry>,
    /// Serializes lifecycle changes (start, stop, replace) kernel-wide; re-entrant so that hooks
    /// may change other services' lifecycles. Calls never take it.
    lifecycle: Arc<ReentrantLock>,
    observer: Option<Observer>,
    pusher: Pusher,
    sealer: Option<Sealer>,
    store: Option<StateStore>,
    checkpoint_every: Option<Duration>,
    checkpointer: Mutex<Option<Checkpointer>>,
    /// Bounds each `stop` hook during `stop_all` (and `stop`); `None` waits for ever.
    stop_timeout: Option<Duration>,
    pub(crate) reaper: Reaper,
    pub(crate) supervision: Supervision,
    /// How many times `stop_all` began: a restart scheduled before the latest is dropped.
    stops: AtomicU64,
    /// The `Arc` this lives in, for threads that must not keep the kernel alive.
    this: Weak<Shared>,
    #[cfg(feature = "fault-injection")]
    pub(crate) transit_fault: Option<TransitFault>,
    #[cfg(feature = "fault-injection")]
    pub(crate) save_pause: Option<SavePause>,
}

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) lifecycle: Arc<dyn Lifecycle>,
    /// The slot as an `Event`/`Reply` service, if it speaks that protocol.
    events: Option<Arc<Slot<Event, Reply>>>,
    pub(crate) deps: Vec<String>,
}

impl Kernel {
    /// A kernel with no observer and default limits.
    pub fn new() -> Self {
        Self::from_builder_defaults()
    }

    /// The default builder's kernel, which is always valid.
    fn from_builder_defaults() -> Self {
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

    /// Registers a service that speaks the default [`Event`]/[`Reply`] protocol, reachable by
    /// name. It starts in [`Status::Created`]; its dependencies need not be registered yet.
    pub fn register<S>(&self, service: S) -> Result<Handle, LifecycleError>
    where
        S: Service<Request = Event, Response = Reply>,
    {
        let slot = self.new_slot(service)?;
        self.insert(Arc::clone(&slot) as Arc<dyn Lifecycle>, Some(Arc::clone(&slot)))?;
        Ok(Handle::new(slot))
    }

    /// Registers a service with its own request and response types. Only its [`Handle`]
    /// reaches it; events routed to it by name get [`CallError::Unsupported`] (415).
    pub fn register_typed<S: Service>(&self, service: S) -> Result<Handle<S::Request, S::Response>, LifecycleError> {
        let slot = self.new_slot(service)?;
        self.insert(Arc::clone(&slot) as Arc<dyn Lifecycle>, None)?;
        Ok(Handle::new(slot))
    }

    /// The slot for a new service, its state restored from the store if it has a file there.
    fn new_slot<S: Service>(&self, mut service: S) -> Result<Arc<SlotOf<S>>, LifecycleError> {
        if self.shared.read().contains_key(service.name()) {
            return Err(LifecycleError::Duplicate {
                name: service.name().to_owned(),
            });
        }
        self.check_registrable(service.name(), service.dependencies())?;
        let generation = self.restore(&mut service)?;
        let name: Arc<str> = service.name().into();
        Ok(Slot::new(
            name,
            Box::new(service),
            Arc::downgrade(&self.shared),
            generation,
        ))
    }

    /// A name the configured store and sealer can carry, and each dependency listed once.
    fn check_registrable(&self, name: &str, deps: &[&str]) -> Result<(), LifecycleError> {
        let invalid = |reason: String| LifecycleError::InvalidName {
            service: name.chars().take(64).collect(),
            reason,
        };
        if let Some(store) = self.shared.store() {
            store.path(name).map_err(|e| invalid(e.to_string()))?;
        }
        if self.shared.sealer().is_some() && name.len() > crate::seal::envelope::MAX_NAME_LEN {
            return Err(invalid(format!(
                "{} bytes; a sealed state's header holds at most {} bytes of service name",
                name.len(),
                crate::seal::envelope::MAX_NAME_LEN
            )));
        }
        for (i, dependency) in deps.iter().enumerate() {
            if deps[..i].contains(dependency) {
                return Err(LifecycleError::DuplicateDependency {
                    service: name.to_owned(),
                    dependency: (*dependency).to_owned(),
                });
            }
        }
        Ok(())
    }

    fn insert(
        &self,
        lifecycle: Arc<dyn Lifecycle>,
        events: Option<Arc<Slot<Event, Reply>>>,
    ) -> Result<(), LifecycleError> {
        let name = Arc::clone(lifecycle.name());
        let deps = lifecycle.dependencies();
        {
            let mut registry = self.shared.write();
            if registry.contains_key(&name) {
                return Err(LifecycleError::Duplicate { name: name.to_string() });
            }
            registry.insert(
                Arc::clone(&name),
                Entry {
                    lifecycle,
                    events,
                    deps,
                },
            );
        }
        tracing::debug!(service = %name, "registered");
        self.shared.notify(&Notice::Registered { service: &name });
        Ok(())
    }

    /// A handle to the `Event`/`Reply` service `name`, to call it without a name lookup.
    pub fn handle(&self, name: &str) -> Result<Handle, CallError> {
        self.shared.event_slot(name).map(Handle::new)
    }

    /// The sealer states cross replacements with, if one was configured.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.shared.sealer()
    }

    /// The service's status, or `None` if no service has that name.
    pub fn status(&self, name: &str) -> Option<Status> {
        self.shared.read().get(name).map(|e| e.lifecycle.status())
    }

    /// Registered service names, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.read().keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    /// The order `start_all` would start the services in: each after its dependencies,
    /// independent ones by name. Fails on an unknown dependency or a cycle.
    pub fn start_order(&self) -> Result<Vec<String>, LifecycleError> {
        let snapshot = self.shared.snapshot();
        graph::start_order(&dep_graph(&snapshot))
    }

    /// Calls the service `to` on this thread (the Go design's `Send`, typed).
    pub fn call(&self, to: &str, event: Event) -> Result<Reply, CallError> {
        self.shared.event_slot(to)?.call(event)
    }

    /// [`call`](Self::call), waiting at most `timeout` to enter the service (see
    /// [`Handle::call_timeout`]: a handler that has started is not interrupted).
    pub fn call_timeout(&self, to: &str, event: Event, timeout: Duration) -> Result<Reply, CallError> {
        self.shared.event_slot(to)?.call_within(event, timeout)
    }

    /// Routes `event` to the service named by `event.to` and returns its reply; failures
    /// become replies with their codes (404 for an unknown or stopped service).
    pub fn send(&self, event: Event) -> Reply {
        match self.shared.event_slot(&event.to) {
            Ok(slot) => slot.call(event).unwrap_or_else(|e| e.to_reply()),
            Err(e) => e.to_reply(),
        }
    }

    /// Pushes an event to the kernel (the Go design's `Push`): one addressed to
    /// [`KERNEL`] is answered `{0 Handled by kernel ok}`; one addressed to a service is
    /// routed to it on a worker thread. Wait for the reply with [`PendingReply::wait`], whose
    /// timeout bounds the wait even if the handler hangs.
    pub fn push(&self, event: Event) -> PendingReply {
        self.shared.notify(&Notice::Pushed { event: &event });
        if event.to == KERNEL {
            return PendingReply::ready(Reply::ok("Handled by kernel", "ok"));
        }
        // The status is checked by the worker, under the slot's mutex: a service being replaced
        // is briefly between its old and new instance, and its events must wait, not get 404.
        let slot = match self.shared.event_slot(&event.to) {
            Ok(slot) => slot,
            Err(e) => return PendingReply::ready(e.to_reply()),
        };
        self.shared
            .pusher
            .submit(move || slot.call(event).unwrap_or_else(|e| e.to_reply()))
    }

    /// Starts one service. Its dependencies must be registered and running. Starting a running
    /// service does nothing.
    pub fn start(&self, name: &str) -> Result<(), LifecycleError> {
        let _serial = self.shared.lifecycle_lock("start")?;
        self.ensure_checkpointer();
        let snapshot = self.shared.snapshot();
        let entry = snapshot.get(name).ok_or_else(|| not_found(name))?;
        if entry.lifecycle.status() == Status::Running {
            return Ok(());
        }
        check_dependencies_running(name, &entry.deps, &snapshot)?;
        self.shared.run_hook(entry, Hook::Start)
    }

    /// Stops one service. Refuses while running services depend on it, naming them; use
    /// [`stop_cascade`](Self::stop_cascade) to stop them first. Stopping a service that is not
    /// running does nothing.
    pub fn stop(&self, name: &str) -> Result<(), LifecycleError> {
        let _serial = self.shared.lifecycle_lock("stop")?;
        let snapshot = self.shared.snapshot();
        let entry = snapshot.get(name).ok_or_else(|| not_found(name))?;
        let graph = dep_graph(&snapshot);
        let dependants: Vec<String> = graph::dependants(&graph, name)
            .into_iter()
            .filter(|d| snapshot[*d].lifecycle.status() == Status::Running)
            .map(str::to_owned)
            .collect();
        if !dependants.is_empty() {
            return Err(LifecycleError::HasRunningDependants {
                service: name.to_owned(),
                dependants,
            });
        }
        self.shared.stop_if_running(entry)
    }

    /// Stops a service after every running service that depends on it, directly or not,
    /// dependants first. Stops at the first failure, leaving the rest running.
    pub fn stop_cascade(&self, name: &str) -> Result<(), LifecycleError> {
        let _serial = self.shared.lifecycle_lock("stop_cascade")?;
        let snapshot = self.shared.snapshot();
        snapshot.get(name).ok_or_else(|| not_found(name))?;
        let graph = dep_graph(&snapshot);
        let order = graph::start_order(&graph)?;
        let mut affected = graph::dependants_closure(&graph, name);
        affected.insert(name);
        for service in order.iter().rev().filter(|s| affected.contains(s.as_str())) {
            self.shared.stop_if_running(&snapshot[service.as_str()])?;
        }
        Ok(())
    }

    /// Starts every service that is not running, in dependency order. Unknown dependencies and
    /// cycles are refused before anything starts. If a service fails to start, it is marked
    /// Failed, the services this call started are stopped again in reverse order, and the
    /// start error is returned.
    pub fn start_all(&self) -> Result<(), LifecycleError> {
        let _serial = self.shared.lifecycle_lock("start_all")?;
        self.ensure_checkpointer();
        let snapshot = self.shared.snapshot();
        let order = graph::start_order(&dep_graph(&snapshot))?;
        let mut started: Vec<&Entry> = Vec::new();
        for name in &order {
            let entry = &snapshot[name.as_str()];
            if entry.lifecycle.status() == Status::Running {
                continue;
            }
            let outcome = check_dependencies_running(name, &entry.deps, &snapshot)
                .and_then(|()| self.shared.run_hook(entry, Hook::Start));
            if let Err(error) = outcome {
                tracing::warn!(service = %name, %error, "start_all failed; stopping what it started");
                for done in started.iter().rev() {
                    if let Err(stop_error) = self.shared.stop_if_running(done) {
                        tracing::warn!(%stop_error, "stopping after a failed start_all failed too");
                    }
                }
                return Err(error);
            }
            started.push(entry);
        }
        Ok(())
    }

    /// Stops every running service in reverse dependency order. Goes on past a failing stop
    /// (that service is marked Failed) and reports every failure. When it returns, no service
    /// runs (a restart that was pending is dropped) and the kernel's own threads (push workers,
    /// supervisor, checkpoints, reaper) have ended; they start again when needed. Only a stop
    /// hook that outlived `stop_timeout` goes on, on its own thread, until it returns.
    pub fn stop_all(&self) -> Result<(), StopAllError> {
        self.shared.stop_all()
    }

    /// Starts the periodic checkpoint thread if one is configured and not running.
    fn ensure_checkpointer(&self) {
        if let Some(every) = self.shared.checkpoint_every {
            let mut checkpointer = self.shared.checkpointer.lock().unwrap_or_else(PoisonError::into_inner);
            if checkpointer.is_none() {
                *checkpointer = Some(Checkpointer::start(Arc::downgrade(&self.shared), every));
            }
        }
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

/// Hashes service names for the registry with FNV-1a: a name lookup is on the path of every
/// call by name, names are short and chosen by the program (not by an attacker), and SipHash
/// cost more than the rest of the lookup.
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let start = if self.0 == 0 { crate::state::FNV_OFFSET } else { self.0 };
        self.0 = crate::state::fnv1a(start, bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Names = std::hash::BuildHasherDefault<NameHasher>;

/// Service name → entry.
type Registry = HashMap<Arc<str>, Entry, Names>;

pub(crate) fn dep_graph(snapshot: &Snapshot) -> DepGraph<'_> {
    snapshot
        .iter()
        .map(|(name, entry)| (&**name, entry.deps.as_slice()))
        .collect()
}

fn check_dependencies_running(service: &str, deps: &[String], snapshot: &Snapshot) -> Result<(), LifecycleError> {
    dependencies_running(service, deps, |name| snapshot.get(name))
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
        if self.read().get(service).is_some_and(|e| e.deps == deps) {
            return;
        }
        if let Some(entry) = self.write().get_mut(service) {
            entry.deps = deps;
        }
    }

    /// Takes the kernel's lifecycle lock for `operation`, unless waiting for it would deadlock.
    pub(crate) fn lifecycle_lock(
        &self,
        operation: &'static str,
    ) -> Result<crate::sync::ReentrantGuard<'_>, LifecycleError> {
        self.lifecycle
            .lock()
            .map_err(|cycle| LifecycleError::WouldDeadlock { operation, cycle })
    }

    /// A reference to the kernel that does not keep it alive.
    pub(crate) fn weak_self(&self) -> Weak<Shared> {
        Weak::clone(&self.this)
    }

    /// How many times `stop_all` has begun.
    pub(crate) fn stops(&self) -> u64 {
        self.stops.load(Ordering::SeqCst)
    }

    pub(crate) fn store(&self) -> Option<&StateStore> {
        self.store.as_ref()
    }

    pub(crate) fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }

    fn event_slot(&self, name: &str) -> Result<Arc<Slot<Event, Reply>>, CallError> {
        let registry = self.read();
        let entry = registry.get(name).ok_or_else(|| CallError::NotFound {
            service: name.to_owned(),
        })?;
        entry.events.clone().ok_or_else(|| CallError::Unsupported {
            service: name.to_owned(),
        })
    }

    /// Tells the observer; a panicking observer (user code) is logged and the kernel goes on.
    pub(crate) fn notify(&self, notice: &Notice<'_>) {
        if let Some(observer) = &self.observer
            && let Err(message) = crate::panic::catch(|| observer(notice))
        {
            tracing::error!(%message, ?notice, "the observer panicked");
        }
    }

    /// Runs a start or stop hook and reports the outcome.
    fn run_hook(&self, entry: &Entry, hook: Hook) -> Result<(), LifecycleError> {
        let result = entry.lifecycle.run_hook(hook);
        self.report_hook(entry, hook, result)
    }

    /// Notices, logs and follow-ups (save on stop, supervision's good state) of a hook's result.
    fn report_hook(&self, entry: &Entry, hook: Hook, result: Result<(), LifecycleError>) -> Result<(), LifecycleError> {
        let service = &**entry.lifecycle.name();
        match (&result, hook) {
            (Ok(()), Hook::Stop) => {
                tracing::debug!(service, "stopped");
                self.notify(&Notice::Stopped { service });
                return self.save_after_stop(entry);
            }
            (Ok(()), _) => {
                tracing::debug!(service, "started");
                self.notify(&Notice::Started { service });
                self.supervision.started(service);
            }
            (Err(error), _) => {
                tracing::warn!(service, %error, "hook failed; service marked failed");
                self.notify(&Notice::Failed { service });
            }
        }
        result
    }

    fn stop_if_running(&self, entry: &Entry) -> Result<(), LifecycleError> {
        if entry.lifecycle.status() != Status::Running {
            return Ok(());
        }
        let Some(timeout) = self.stop_timeout else {
            return self.run_hook(entry, Hook::Stop);
        };
        // The stop runs on another thread: from inside the service it would wait for this
        // thread's own slot. Refuse, as an unbounded stop does.
        if entry.lifecycle.held_here() {
            return Err(LifecycleError::Reentrant {
                service: entry.lifecycle.name().to_string(),
            });
        }
        // Run the hook on its own thread so that a hook that never returns cannot hold up the
        // rest of the shutdown. The stopper and this thread agree, under `race`, whether the
        // stop finished in time: a stop that finishes later leaves the service Failed (as
        // reported) and saves its state then, so that nothing the hook did is lost.
        let (tx, rx) = std::sync::mpsc::channel();
        let race = Arc::new(Mutex::new(StopRace::Waiting));
        let (late_entry, late_race) = (entry.clone(), Arc::clone(&race));
        let kernel = self.weak_self();
        let spawned = std::thread::Builder::new()
            .name("microkernel-stop".into())
            .spawn(move || {
                let (result, late) = late_entry.lifecycle.stop_bounded(&late_race);
                if late {
                    stopped_late(kernel.upgrade().as_deref(), &late_entry, result);
                } else {
                    drop(tx.send(result));
                }
            });
        let stopper = match spawned {
            Ok(stopper) => stopper,
            Err(error) => {
                tracing::warn!(%error, "no thread for a bounded stop; stopping without a bound");
                return self.run_hook(entry, Hook::Stop);
            }
        };
        let service = &**entry.lifecycle.name();
        let in_time = match rx.recv_timeout(timeout) {
            Ok(result) => Some(result),
            Err(_) => {
                let mut race = race.lock().unwrap_or_else(PoisonError::into_inner);
                if *race == StopRace::Done {
                    // It finished just now: its result is on the way.
                    drop(race);
                    rx.recv().ok()
                } else {
                    *race = StopRace::Abandoned;
                    entry.lifecycle.abandon_stop();
                    None
                }
            }
        };
        match in_time {
            Some(result) => {
                // It has sent its result and is returning: wait for it, so that no kernel
                // thread outlives `stop_all`.
                let _ = stopper.join();
                self.report_hook(entry, Hook::Stop, result)
            }
            None => {
                tracing::error!(service, ?timeout, "stop did not finish in time; marked failed");
                self.notify(&Notice::Failed { service });
                Err(LifecycleError::StopTimeout {
                    service: service.to_owned(),
                    timeout,
                })
            }
        }
    }

    fn stop_all(&self) -> Result<(), StopAllError> {
        let serial = self.lifecycle_lock("stop_all").map_err(|e| StopAllError(vec![e]))?;
        // Restarts scheduled before this point are dropped: after `stop_all`, nothing runs.
        self.stops.fetch_add(1, Ordering::SeqCst);
        let snapshot = self.snapshot();
        // A cycle cannot have started, but stop everything anyway: reverse name order then.
        let order = graph::start_order(&dep_graph(&snapshot))
            .unwrap_or_else(|_| snapshot.keys().map(|k| k.to_string()).collect());
        let errors: Vec<LifecycleError> = order
            .iter()
            .rev()
            .filter_map(|name| self.stop_if_running(&snapshot[name.as_str()]).err())
            .collect();
        // The supervisor may be waiting for the lock to drop a restart: release it first.
        drop(serial);
        self.stop_threads();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(StopAllError(errors))
        }
    }
}

impl Shared {
    /// Ends the kernel's own threads; each starts again when next needed.
    fn stop_threads(&self) {
        if let Some(checkpointer) = self.checkpointer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            checkpointer.shutdown();
        }
        self.supervision.shutdown();
        self.pusher
            .shutdown(self.stop_timeout.unwrap_or(Duration::from_secs(5)));
        self.reaper.shutdown();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Err(error) = self.stop_all() {
            tracing::warn!(%error, "stopping services while dropping the kernel failed");
        }
    }
}

/// A stop that finished after its timeout: the service stays Failed (as `stop` reported), and
/// the state the hook left is saved, so that nothing it did is lost.
fn stopped_late(kernel: Option<&Shared>, entry: &Entry, result: Result<(), LifecycleError>) {
    let service = &**entry.lifecycle.name();
    tracing::warn!(
        service,
        ok = result.is_ok(),
        "a stop finished after its timeout; the service stays failed"
    );
    let Some(kernel) = kernel else { return };
    if result.is_ok() && kernel.store().is_some() {
        match kernel.save(entry) {
            Ok(path) => tracing::info!(service, path = %path.display(), "saved the state of a late stop"),
            Err(error) => tracing::error!(service, %error, "saving the state of a late stop failed"),
        }
    }
}
