//! The kernel's part that supervises ([`Restarts`]): which services are supervised, by which
//! [`Restarter`] (built in `supervise/`, known here only through the trait), and the supervisor
//! thread. What the thread does with a failure is the runtime's (`runtime/restart.rs`).

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::runtime::error::LifecycleError;

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
    /// meanwhile, or the kernel is gone).
    fn restart(&self, failure: &Failure) -> Result<bool, LifecycleError>;
}

/// A failure to act on: which service, which of its instances failed, and how many times
/// `stop_all` had begun then.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) name: String,
    pub(crate) epoch: u64,
    pub(crate) stops: u64,
}

/// The kernel's part that supervises: the restarter of each supervised service, and the thread
/// that restarts them.
#[derive(Default)]
pub(crate) struct Restarts {
    services: Mutex<HashMap<String, Arc<dyn Restarter>>>,
    /// Supervision of a new version, taking over when its replacement completes
    /// (`Kernel::replace_supervised`).
    successors: Mutex<HashMap<String, Arc<dyn Restarter>>>,
    worker: Mutex<Option<(Sender<Failure>, JoinHandle<()>)>>,
}

impl Restarts {
    /// The restarter of `name`, if it is supervised.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn Restarter>> {
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

    /// Hands `failure` to the supervisor thread, started first (running `supervise` over the
    /// failures to come) if it is not running.
    pub(crate) fn schedule(&self, failure: Failure, supervise: impl FnOnce(Receiver<Failure>) + Send + 'static) {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if worker.is_none() {
            let (tx, rx) = mpsc::channel();
            match thread::Builder::new()
                .name("microkernel-supervisor".into())
                .spawn(move || supervise(rx))
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
