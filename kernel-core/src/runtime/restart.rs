//! Restarts: the runtime's side of supervision. When a service fails, its dependants are told
//! and, if it is supervised (see [`Restarts`](crate::runtime::kernel::supervision::Restarts)),
//! the supervisor thread waits out the backoff and restarts the failed instance under the
//! lifecycle lock, unless a replacement, a `start` or a `stop_all` came first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::messaging::message::{Event, KERNEL};
use crate::runtime::error::LifecycleError;
use crate::runtime::error::Status;
use crate::runtime::kernel::supervision::{Admission, Failure};
use crate::runtime::kernel::{Kernel, Shared};
use crate::runtime::notice::Notice;

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
    let Some(restarter) = kernel.restarts().get(&failure.name) else {
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
    let Some(restarter) = kernel.restarts().get(name) else {
        return dropped(NOT_SUPERVISED);
    };
    if kernel.stops() != failure.stops {
        return dropped("stop_all ran since the failure");
    }
    match restarter.restart(failure) {
        Ok(true) => {
            tracing::info!(service = %name, restart = nth, "restarted");
            kernel.notify(&Notice::Restarted { service: name });
            kernel.restarts().started(name);
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
            kernel.schedule_restart(failure.clone());
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
        if self.restarts().get(service).is_some_and(|r| r.restarts()) {
            self.schedule_restart(Failure {
                name: service.to_owned(),
                epoch,
                stops: self.stops(),
            });
        }
    }

    /// Hands `failure` to the supervisor thread.
    fn schedule_restart(self: &Arc<Self>, failure: Failure) {
        let shared = Arc::downgrade(self);
        self.restarts()
            .schedule(failure, move |failures| supervise_loop(&shared, &failures));
    }
}
