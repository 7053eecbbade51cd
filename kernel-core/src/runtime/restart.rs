//! Restarts: the runtime's side of supervision. A supervised service has a [`Restarter`] (its
//! factory, policy and last good state, built in `supervise/` and known here only through the
//! trait); when it fails, its dependants are told, and a thread waits out the backoff and
//! restarts the failed instance under the lifecycle lock, unless a replacement, a `start` or a
//! `stop_all` came first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::messaging::message::{Event, KERNEL};
use crate::runtime::error::LifecycleError;
use crate::runtime::error::Status;
use crate::runtime::kernel::{Kernel, Shared};
use crate::runtime::notice::Notice;

/// How a restarter answers a failure.
pub(crate) enum Admission {
    /// Not restarted: the policy never restarts.
    Never,
    /// Restarted after `after`, the `nth` restart within the policy's window.
    Restart {
        /// The backoff to wait.
        after: Duration,
        /// Which restart in the window this is.
        nth: u32,
    },
    /// The policy's limit is reached: the service stays failed.
    GaveUp,
}

/// Restarts one supervised service, its type erased.
pub(crate) trait Restarter: Send + Sync {
    /// Whether the policy restarts at all.
    fn restarts(&self) -> bool;
    /// Admits a restart at `now` (counting it against the policy's window) or refuses it.
    fn admit(&self, now: Instant) -> Admission;
    /// Keeps the state of the instance that just started, to restart from.
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
    pub(crate) name: String,
    pub(crate) epoch: u64,
    pub(crate) stops: u64,
}

/// The kernel's restarts: the restarter of each supervised service, and the thread that
/// restarts them.
#[derive(Default)]
pub(crate) struct Restarts {
    services: Mutex<HashMap<String, Arc<dyn Restarter>>>,
    /// Supervision of a new version, taking over when its replacement completes
    /// (`Kernel::replace_supervised`).
    successors: Mutex<HashMap<String, Arc<dyn Restarter>>>,
    worker: Mutex<Option<(Sender<Failure>, JoinHandle<()>)>>,
}

impl Restarts {
    fn get(&self, name: &str) -> Option<Arc<dyn Restarter>> {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Restarts `name` with `restarter` when it fails (replacing any earlier restarter).
    pub(crate) fn watch(&self, name: String, restarter: Arc<dyn Restarter>) {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, restarter);
    }

    /// Prepares the restarter of a new version, taking over when its replacement completes.
    pub(crate) fn prepare_successor(&self, name: String, restarter: Arc<dyn Restarter>) {
        self.successors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, restarter);
    }

    /// Drops a prepared successor (its replacement failed): it must not take over a later
    /// plain replacement.
    pub(crate) fn forget_successor(&self, name: &str) {
        self.successors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
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
    let Some(restarter) = kernel.restarts.get(&failure.name) else {
        kernel.notify(&Notice::RestartDropped {
            service: &failure.name,
            reason: NOT_SUPERVISED,
        });
        return None;
    };
    match restarter.admit(Instant::now()) {
        Admission::Never => None,
        Admission::Restart { after, nth } => Some((after, nth)),
        Admission::GaveUp => {
            tracing::error!(service = %failure.name, "restart limit reached; the service stays failed");
            kernel.notify(&Notice::GaveUp { service: &failure.name });
            None
        }
    }
}

/// Restarts the failed instance, under the lifecycle lock, unless a replacement, a `start` or
/// a `stop_all` came first; a failed restart is tried again (counting against the limit).
fn act(kernel: &Arc<Shared>, failure: &Failure, nth: u32) {
    let name = &failure.name;
    let _span = tracing::info_span!("restart", service = %name, restart = nth).entered();
    let Ok(_serial) = kernel.lifecycle_lock("restart") else {
        return; // unreachable: the supervisor holds no slot that could close a cycle
    };
    // A replacement ends supervision: what this restarter would build is the old version.
    let dropped = |reason: &'static str| {
        tracing::info!(service = %name, reason, "restart dropped");
        kernel.notify(&Notice::RestartDropped { service: name, reason });
    };
    let Some(restarter) = kernel.restarts.get(name) else {
        return dropped(NOT_SUPERVISED);
    };
    if kernel.stops() != failure.stops {
        return dropped("stop_all ran since the failure");
    }
    match restarter.restart(kernel, failure) {
        Ok(true) => {
            tracing::info!(service = %name, restart = nth, "restarted");
            kernel.notify(&Notice::Restarted { service: name });
            kernel.restarts.started(name);
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
            kernel.restarts.schedule(Arc::downgrade(kernel), failure.clone());
        }
    }
}

impl Shared {
    /// A service's instance `epoch` just failed (a handler panic): tell its dependants and, if
    /// it is supervised, schedule a restart of that instance.
    pub(crate) fn report_failure(self: &Arc<Self>, service: &str, epoch: u64) {
        for (dependant, entry) in self.dependants_of(service) {
            if entry.lifecycle.status() != Status::Running {
                continue;
            }
            let dependant = &*dependant;
            self.notify(&Notice::DependencyFailed {
                service: dependant,
                dependency: service,
            });
            let event = Event::new(dependant.to_owned(), KERNEL, "dependency-failed", service.to_owned());
            // Fire and forget: the dependant handles it on a push worker.
            drop(Kernel::from_shared(Arc::clone(self)).push_detached(event));
        }
        if self.restarts.get(service).is_some_and(|r| r.restarts()) {
            let failure = Failure {
                name: service.to_owned(),
                epoch,
                stops: self.stops(),
            };
            self.restarts.schedule(Arc::downgrade(self), failure);
        }
    }
}
