//! Supervision: a failed service is rebuilt from a factory and its last good state, within an
//! intensity limit, the way OTP supervisors restart children.
//!
//! - A service is *failed* when its handler panics or its `start` fails (outside `stop_all`).
//! - Its running dependants are told at once: a [`Notice::DependencyFailed`] and, for
//!   `Event`/`Reply` dependants, a pushed event `{to: dependant, from: "kernel",
//!   kind: "dependency-failed", content: <service>}`. They keep running; their calls to the
//!   failed service get 404 until it is back.
//! - With [`RestartPolicy::OnFailure`], a supervisor thread waits the backoff (doubling with each
//!   restart inside the window), builds a new instance with the factory, imports the last good
//!   state (the service's state file if the kernel has a store and the file exists, else the
//!   state exported when the service last started), and starts it. More than `max_restarts`
//!   failures within `within` and the service stays Failed: [`Notice::GaveUp`] and an error in
//!   the log.
//! - A replacement ends the supervision of that service (the factory builds the old version),
//!   with [`Notice::SupervisionEnded`]; [`Kernel::replace_supervised`] replaces and carries
//!   supervision over to the new version's factory in one step.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::messaging::message::{Event, KERNEL};
use crate::runtime::error::{Hook, LifecycleError};
use crate::runtime::graph;
use crate::runtime::handle::Handle;
use crate::runtime::kernel::{Kernel, Shared, dep_graph};
use crate::runtime::notice::Notice;
use crate::runtime::service::{Service, Status};
use crate::runtime::slot::SlotOf;
use crate::state;

/// What happens when a service fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Stay Failed (the default).
    #[default]
    Never,
    /// Restart, at most `max_restarts` times within `within`, waiting `backoff` before the first
    /// restart and twice as long before each further one in the window.
    OnFailure {
        /// Restarts allowed within the window.
        max_restarts: u32,
        /// The window.
        within: Duration,
        /// Wait before the first restart.
        backoff: Duration,
    },
}

/// A supervised service, its type erased.
trait Restarter: Send + Sync {
    fn policy(&self) -> RestartPolicy;
    /// Restarts on the timeline: `Some(n)` when allowed (the n-th in the window), `None` when the
    /// limit is reached.
    fn admit(&self, now: Instant) -> Option<u32>;
    fn remember_good_state(&self);
    /// Restarts the failed instance `failure` names, with the lifecycle lock held by the
    /// caller; `Ok(false)` when there is nothing to do any more (it was replaced or restarted
    /// meanwhile).
    fn restart(&self, shared: &Shared, failure: &Failure) -> Result<bool, LifecycleError>;
}

/// A failure to act on: which service, which of its instances failed, and how many times
/// `stop_all` had begun then.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    name: String,
    epoch: u64,
    stops: u64,
}

struct Supervised<S: Service, F> {
    slot: Arc<SlotOf<S>>,
    factory: F,
    policy: RestartPolicy,
    last_good: Mutex<Option<Vec<u8>>>,
    restarts: Mutex<VecDeque<Instant>>,
}

impl<S: Service, F: Fn() -> S + Send + Sync + 'static> Restarter for Supervised<S, F> {
    fn policy(&self) -> RestartPolicy {
        self.policy
    }

    fn admit(&self, now: Instant) -> Option<u32> {
        let RestartPolicy::OnFailure {
            max_restarts, within, ..
        } = self.policy
        else {
            return None;
        };
        let mut restarts = self.restarts.lock().unwrap_or_else(PoisonError::into_inner);
        while restarts.front().is_some_and(|t| now.duration_since(*t) > within) {
            restarts.pop_front();
        }
        if restarts.len() >= max_restarts as usize {
            return None;
        }
        restarts.push_back(now);
        Some(restarts.len() as u32)
    }

    fn remember_good_state(&self) {
        use crate::runtime::slot::Lifecycle;
        match self.slot.export_encoded() {
            Ok((encoded, _)) => {
                *self.last_good.lock().unwrap_or_else(PoisonError::into_inner) = Some(encoded.into_bytes());
            }
            Err(error) => tracing::warn!(%error, "could not keep the last good state for supervision"),
        }
    }

    fn restart(&self, shared: &Shared, failure: &Failure) -> Result<bool, LifecycleError> {
        let name = self.slot.name().to_string();
        // Nothing to do if the failed instance is gone (replaced, or restarted by `start`).
        if self.slot.status() != Status::Failed || self.slot_epoch() != failure.epoch {
            return Ok(false);
        }
        // A stop that outlived its timeout still holds the slot: do not wait for it.
        self.slot.check_no_late_stop()?;
        // The same rules as `start`: every dependency registered and running (from the
        // registry: the slot may be held).
        shared.check_dependencies_of(&name)?;
        let mut fresh = crate::panic::catch(&self.factory).map_err(|message| LifecycleError::FactoryPanicked {
            service: name.clone(),
            message,
        })?;
        self.slot.check_no_late_stop()?;
        let mut entered = self
            .slot
            .enter()
            .ok_or_else(|| LifecycleError::Reentrant { service: name.clone() })?;
        if entered.status() != Status::Failed || entered.epoch() != failure.epoch {
            return Ok(false); // someone started or replaced it meanwhile
        }
        // The failed instance may have exported a state a moment before it failed, whose save
        // is still being written: restart from that one, not from the file before it. (No new
        // export can begin: the slot is held.)
        self.slot.wait_for_saves();
        let from_store = shared
            .load_opened(&name)
            .map_err(|source| LifecycleError::Restore {
                service: name.clone(),
                source,
            })?
            .map(|opened| opened.state.into_bytes());
        let bytes = from_store.or_else(|| self.last_good.lock().unwrap_or_else(PoisonError::into_inner).clone());
        if let Some(bytes) = bytes {
            let imported = crate::panic::catch(|| {
                let state = state::decode::<S::State>(&bytes)?;
                fresh
                    .import_state(state)
                    .map_err(|e| e as Box<dyn std::error::Error + Send + Sync>)
            });
            let failed = |source: crate::runtime::service::BoxError| LifecycleError::Export {
                service: name.clone(),
                source,
            };
            match imported {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(failed(error)),
                Err(message) => return Err(failed(format!("panicked: {message}").into())),
            }
        }
        let broken = entered.swap(Box::new(fresh));
        let started = entered.run_hook(Hook::Start);
        drop(entered);
        crate::runtime::reap::drop_reporting(Some(shared), &name, Box::new(broken));
        started.map(|()| true)
    }
}

impl<S: Service, F> Supervised<S, F> {
    fn slot_epoch(&self) -> u64 {
        self.slot.epoch()
    }
}

/// The kernel's supervisor: supervised services, and the thread that restarts them.
#[derive(Default)]
pub(crate) struct Supervision {
    services: Mutex<HashMap<String, Arc<dyn Restarter>>>,
    /// Supervision of a new version, taking over when its replacement completes
    /// (`Kernel::replace_supervised`).
    successors: Mutex<HashMap<String, Arc<dyn Restarter>>>,
    worker: Mutex<Option<(Sender<Failure>, JoinHandle<()>)>>,
}

impl Supervision {
    fn get(&self, name: &str) -> Option<Arc<dyn Restarter>> {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// After a replacement of `name`: the new version's supervision takes over if one was
    /// prepared, else the old one ends. Returns whether `name` is supervised now, and whether
    /// a supervision ended.
    pub(crate) fn replaced(&self, name: &str) -> (bool, bool) {
        let successor = self
            .successors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        match successor {
            Some(next) => {
                services.insert(name.to_owned(), next);
                (true, false)
            }
            None => {
                let ended = services.remove(name).is_some();
                if ended {
                    tracing::warn!(
                        service = name,
                        "replaced: supervision ends (the factory builds the old version); use \
                         replace_supervised or supervise the new version to keep it"
                    );
                }
                (false, ended)
            }
        }
    }

    /// Keeps the state of a supervised service that just started.
    pub(crate) fn started(&self, name: &str) {
        if let Some(restarter) = self.get(name) {
            restarter.remember_good_state();
        }
    }

    fn schedule(&self, shared: Weak<Shared>, failure: Failure) {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if worker.is_none() {
            let (tx, rx) = mpsc::channel();
            match thread::Builder::new()
                .name("microkernel-supervisor".into())
                .spawn(move || supervise_loop(&shared, &rx))
            {
                Ok(handle) => *worker = Some((tx, handle)),
                Err(error) => {
                    tracing::error!(%error, service = failure.name, "could not start the supervisor thread; no restart");
                    return;
                }
            }
        }
        if let Some((tx, _)) = worker.as_ref() {
            let _ = tx.send(failure);
        }
    }

    /// Stops the supervisor thread (restarts in progress finish first).
    pub(crate) fn shutdown(&self) {
        let worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((tx, handle)) = worker {
            drop(tx);
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

const NOT_SUPERVISED: &str = "the service is no longer supervised (a replacement ends supervision)";

fn supervise_loop(shared: &Weak<Shared>, failures: &Receiver<Failure>) {
    // Restarts waiting out their backoff, soonest first: one service's long backoff never
    // delays another's restart. (A backoff too long for an `Instant` never comes due.)
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut waiting: HashMap<u64, (Failure, u32)> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        let received = match due.peek() {
            None => failures.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(Reverse((at, _))) => failures.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match received {
            Ok(failure) => {
                let Some(kernel) = shared.upgrade() else { return };
                if let Some((wait, nth)) = admit(&kernel, &failure)
                    && let Some(at) = Instant::now().checked_add(wait)
                {
                    due.push(Reverse((at, next_id)));
                    waiting.insert(next_id, (failure, nth));
                    next_id += 1;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        while let Some(Reverse((at, id))) = due.peek().copied() {
            if at > Instant::now() {
                break;
            }
            due.pop();
            let Some((failure, nth)) = waiting.remove(&id) else {
                continue;
            };
            let Some(kernel) = shared.upgrade() else { return };
            // Any panic of user code is caught inside; this guards the thread itself.
            if let Err(message) = crate::panic::catch(|| act(&kernel, &failure, nth)) {
                tracing::error!(service = %failure.name, %message, "supervising a restart panicked");
            }
        }
    }
}

/// Whether a failure gets a restart: `Some((backoff to wait, nth restart in the window))`.
fn admit(kernel: &Shared, failure: &Failure) -> Option<(Duration, u32)> {
    let Some(restarter) = kernel.supervision.get(&failure.name) else {
        kernel.notify(&Notice::RestartDropped {
            service: &failure.name,
            reason: NOT_SUPERVISED,
        });
        return None;
    };
    let RestartPolicy::OnFailure { backoff, .. } = restarter.policy() else {
        return None;
    };
    let Some(nth) = restarter.admit(Instant::now()) else {
        tracing::error!(service = %failure.name, "restart limit reached; the service stays failed");
        kernel.notify(&Notice::GaveUp { service: &failure.name });
        return None;
    };
    Some((backoff.saturating_mul(1 << (nth - 1).min(16)), nth))
}

/// Restarts the failed instance, under the lifecycle lock, unless a replacement, a `start` or
/// a `stop_all` came first; a failed restart is tried again (counting against the limit).
fn act(kernel: &Arc<Shared>, failure: &Failure, nth: u32) {
    let name = &failure.name;
    let Ok(_serial) = kernel.lifecycle_lock("restart") else {
        return; // unreachable: the supervisor holds no slot that could close a cycle
    };
    // A replacement ends supervision: what this restarter would build is the old version.
    let dropped = |reason: &'static str| {
        tracing::info!(service = %name, reason, "restart dropped");
        kernel.notify(&Notice::RestartDropped { service: name, reason });
    };
    let Some(restarter) = kernel.supervision.get(name) else {
        return dropped(NOT_SUPERVISED);
    };
    if kernel.stops() != failure.stops {
        return dropped("stop_all ran since the failure");
    }
    match restarter.restart(kernel, failure) {
        Ok(true) => {
            tracing::info!(service = %name, restart = nth, "restarted");
            kernel.notify(&Notice::Restarted { service: name });
            kernel.supervision.started(name);
        }
        Ok(false) => dropped("the failed instance was replaced or started meanwhile"),
        Err(error) => {
            tracing::error!(service = %name, %error, "restart failed");
            if let LifecycleError::FactoryPanicked { message, .. } = &error {
                kernel.notify(&Notice::Panicked {
                    service: name,
                    during: "restart",
                    message,
                });
            }
            kernel.notify(&Notice::RestartFailed {
                service: name,
                error: &error.to_string(),
            });
            kernel.supervision.schedule(Arc::downgrade(kernel), failure.clone());
        }
    }
}

impl Kernel {
    /// Supervises the service behind `handle`: when it fails, it is rebuilt by `factory` and
    /// restarted with its last good state, per `policy` (see the [module docs](crate::supervise)).
    pub fn supervise<S, F>(&self, handle: &Handle<S::Request, S::Response>, policy: RestartPolicy, factory: F)
    where
        S: Service,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let restarter = Arc::new(Supervised {
            slot: Arc::clone(&handle.slot),
            factory,
            policy,
            last_good: Mutex::new(None),
            restarts: Mutex::new(VecDeque::new()),
        });
        if handle.status() == Status::Running {
            restarter.remember_good_state();
        }
        let name = handle.name().to_owned();
        let services = &self.shared().supervision.services;
        services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, restarter);
    }
}

impl Kernel {
    /// Replaces the `Event`/`Reply` service named by `new.name()` (as [`Kernel::replace`]) and
    /// carries its supervision over to the new version: from the moment the new version is in
    /// the slot, a failure rebuilds it with `factory`, under `policy`. If the replacement fails,
    /// the old version and its supervision stay as they were.
    ///
    /// A plain `replace` of a supervised service ends its supervision instead (the old factory
    /// builds the old version), with [`Notice::SupervisionEnded`].
    pub fn replace_supervised<S, F>(
        &self,
        new: S,
        policy: RestartPolicy,
        factory: F,
    ) -> Result<crate::Replaced, crate::ReplaceError>
    where
        S: Service<Request = crate::Event, Response = crate::Reply>,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let name = new.name().to_owned();
        let Ok(handle) = self.handle(&name) else {
            // Not registered: `replace` registers it; then supervise it.
            let replaced = self.replace(new)?;
            if let Ok(handle) = self.handle(&name) {
                self.supervise(&handle, policy, factory);
            }
            return Ok(replaced);
        };
        let successor: Arc<dyn Restarter> = Arc::new(Supervised {
            slot: Arc::clone(&handle.slot),
            factory,
            policy,
            last_good: Mutex::new(None),
            restarts: Mutex::new(VecDeque::new()),
        });
        let supervision = &self.shared().supervision;
        supervision
            .successors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone(), successor);
        let replaced = self.replace(new);
        // On failure the prepared successor must not take over a later plain `replace`.
        supervision
            .successors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name);
        replaced
    }
}

impl Shared {
    /// A service's instance `epoch` just failed (a handler panic): tell its dependants and, if
    /// it is supervised, schedule a restart of that instance.
    pub(crate) fn report_failure(self: &Arc<Self>, service: &str, epoch: u64) {
        let snapshot = self.snapshot();
        let graph = dep_graph(&snapshot);
        for dependant in graph::dependants(&graph, service) {
            // `dependants` names keys of the graph built from this snapshot.
            if snapshot[dependant].lifecycle.status() != Status::Running {
                continue;
            }
            self.notify(&Notice::DependencyFailed {
                service: dependant,
                dependency: service,
            });
            let event = Event::new(dependant.to_owned(), KERNEL, "dependency-failed", service.to_owned());
            // Fire and forget: the dependant handles it on a push worker.
            drop(Kernel::from_shared(Arc::clone(self)).push(event));
        }
        if self
            .supervision
            .get(service)
            .is_some_and(|r| r.policy() != RestartPolicy::Never)
        {
            let failure = Failure {
                name: service.to_owned(),
                epoch,
                stops: self.stops(),
            };
            self.supervision.schedule(Arc::downgrade(self), failure);
        }
    }
}
