//! Supervision: a failed service is rebuilt from a factory and its last good state, within an
//! intensity limit, the way OTP supervisors restart children.
//!
//! - A service is *failed* when its handler panics or its `start` fails (outside `stop_all`).
//! - Its running dependants are told at once: a [`Notice::DependencyFailed`](crate::Notice::DependencyFailed) and, for
//!   `Event`/`Reply` dependants, a pushed event `{to: dependant, from: "kernel",
//!   kind: "dependency-failed", content: <service>}`. They keep running; their calls to the
//!   failed service get 404 until it is back.
//! - With [`RestartPolicy::OnFailure`], a supervisor thread waits the backoff (doubling with each
//!   restart inside the window), builds a new instance with the factory, imports the last good
//!   state (the service's state file if the kernel has a store and the file exists, else the
//!   state exported when the service last started), and starts it. More than `max_restarts`
//!   failures within `within` and the service stays Failed: [`Notice::GaveUp`](crate::Notice::GaveUp) and an error in
//!   the log.
//! - A replacement ends the supervision of that service (the factory builds the old version),
//!   with [`Notice::SupervisionEnded`](crate::Notice::SupervisionEnded); [`Kernel::replace_supervised`] replaces and carries
//!   supervision over to the new version's factory in one step.

#[cfg(feature = "tokio")]
mod asynchronous;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::runtime::error::Status;
use crate::runtime::error::{Hook, LifecycleError};
use crate::runtime::handle::Handle;
use crate::runtime::kernel::supervision::{Admission, Failure, Restarter};
use crate::runtime::kernel::{Kernel, Shared};
use crate::runtime::service::{Handler, Service};
use crate::runtime::slot::{HoldForLifecycle, Installs, SlotCore, export_encoded};
use crate::state;

/// What happens when a service fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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

/// What supervision needs of a slot, whatever its kind: one implementation over the
/// lifecycle's view of a slot ([`HoldForLifecycle`]), for synchronous and async slots alike.
trait Restartable<S>: Send + Sync + 'static {
    /// What every kind of slot keeps beside its instance.
    fn core(&self) -> &SlotCore;
    /// The current instance's state, encoded.
    fn good_state(&self) -> Result<Vec<u8>, LifecycleError>;
    /// With the slot held: unless the failed instance `epoch` is gone, wait for its saves in
    /// flight, let `prepare` give `fresh` its state, swap it in and start it. `Ok(false)` when
    /// someone came first (a `start`, a replacement).
    fn swap_in(
        &self,
        shared: &Shared,
        epoch: u64,
        fresh: S,
        prepare: &mut dyn FnMut(&mut S) -> Result<(), LifecycleError>,
    ) -> Result<bool, LifecycleError>;
}

impl<S, K> Restartable<S> for Arc<K>
where
    K: HoldForLifecycle + 'static,
    for<'a> K::Held<'a>: Installs<S>,
{
    fn core(&self) -> &SlotCore {
        HoldForLifecycle::core(&**self)
    }

    fn good_state(&self) -> Result<Vec<u8>, LifecycleError> {
        export_encoded(&**self).map(|(encoded, _)| encoded.into_bytes())
    }

    fn swap_in(
        &self,
        shared: &Shared,
        epoch: u64,
        fresh: S,
        prepare: &mut dyn FnMut(&mut S) -> Result<(), LifecycleError>,
    ) -> Result<bool, LifecycleError> {
        restart_held(shared, self.hold("restart")?, epoch, fresh, prepare)
    }
}

/// A supervised service: its slot, factory and policy, its restarts in the window, and the
/// state it had when it last started well.
struct Supervised<R, S, F> {
    /// The kernel, held weakly: it holds this.
    kernel: Weak<Shared>,
    slot: R,
    factory: F,
    policy: RestartPolicy,
    last_good: Mutex<Option<Vec<u8>>>,
    restarts: Mutex<VecDeque<Instant>>,
    _service: std::marker::PhantomData<fn() -> S>,
}

impl<R, S, F> Supervised<R, S, F> {
    fn new(kernel: &Kernel, slot: R, policy: RestartPolicy, factory: F) -> Self {
        Self {
            kernel: kernel.shared().weak_self(),
            slot,
            factory,
            policy,
            last_good: Mutex::new(None),
            restarts: Mutex::new(VecDeque::new()),
            _service: std::marker::PhantomData,
        }
    }
}

impl<R, S, F> Restarter for Supervised<R, S, F>
where
    R: Restartable<S>,
    S: Service + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    fn restarts(&self) -> bool {
        self.policy != RestartPolicy::Never
    }

    fn admit(&self, now: Instant) -> Admission {
        let RestartPolicy::OnFailure {
            max_restarts,
            within,
            backoff,
        } = self.policy
        else {
            return Admission::Never;
        };
        let mut restarts = self.restarts.lock().unwrap_or_else(PoisonError::into_inner);
        while restarts.front().is_some_and(|t| now.duration_since(*t) > within) {
            restarts.pop_front();
        }
        if restarts.len() >= max_restarts as usize {
            return Admission::GaveUp;
        }
        restarts.push_back(now);
        let nth = restarts.len() as u32;
        // The backoff doubles with each restart inside the window.
        let after = backoff.saturating_mul(1 << (nth - 1).min(16));
        Admission::Restart { after, nth }
    }

    fn remember_good_state(&self) {
        match self.slot.good_state() {
            Ok(bytes) => *self.last_good.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes),
            Err(error) => tracing::warn!(%error, "could not keep the last good state for supervision"),
        }
    }

    fn restart(&self, failure: &Failure) -> Result<bool, LifecycleError> {
        let Some(shared) = self.kernel.upgrade() else {
            return Ok(false);
        };
        let shared = &*shared;
        let core = self.slot.core();
        let name = core.name.to_string();
        // Nothing to do if the failed instance is gone (replaced, or restarted by `start`).
        if core.status() != Status::Failed || core.epoch() != failure.epoch {
            return Ok(false);
        }
        // A stop that outlived its timeout still holds the slot: do not wait for it.
        core.check_no_late_stop()?;
        // The same rules as `start`: every dependency registered and running (from the
        // registry: the slot may be held).
        shared.check_dependencies_of(&name)?;
        let fresh = crate::panic::catch(&self.factory).map_err(|message| LifecycleError::FactoryPanicked {
            service: name.clone(),
            message,
        })?;
        core.check_no_late_stop()?;
        let mut prepare = |fresh: &mut S| self.import_last_state(shared, &name, fresh);
        self.slot.swap_in(shared, failure.epoch, fresh, &mut prepare)
    }
}

impl<R, S: Service, F> Supervised<R, S, F> {
    /// Gives `fresh` the newest state: the store's (the failed instance's saves have been
    /// waited for), else the one kept when the service last started well.
    fn import_last_state(&self, shared: &Shared, name: &str, fresh: &mut S) -> Result<(), LifecycleError> {
        let from_store = shared
            .load_opened(name)
            .map_err(|source| LifecycleError::Restore {
                service: name.to_owned(),
                source,
            })?
            .map(|opened| opened.state.into_bytes());
        let Some(bytes) = from_store.or_else(|| self.last_good.lock().unwrap_or_else(PoisonError::into_inner).clone())
        else {
            return Ok(());
        };
        let imported = crate::panic::catch(|| {
            let state = state::decode::<S::State>(&bytes)?;
            fresh
                .import_state(state)
                .map_err(|e| e as Box<dyn std::error::Error + Send + Sync>)
        });
        crate::boxed::ServiceFault::of(imported).map_err(|source| LifecycleError::Export {
            service: name.to_owned(),
            source,
        })
    }
}

/// A restart, the same for every kind of slot once it is held: unless the failed instance
/// `epoch` is gone, its saves in flight are waited for, `prepare` gives `fresh` its state, and
/// `fresh` is swapped in and started. `Ok(false)` when someone came first.
fn restart_held<E: Installs<S>, S>(
    shared: &Shared,
    mut entered: E,
    epoch: u64,
    mut fresh: S,
    prepare: &mut dyn FnMut(&mut S) -> Result<(), LifecycleError>,
) -> Result<bool, LifecycleError> {
    if entered.status() != Status::Failed || entered.epoch() != epoch {
        return Ok(false); // someone started or replaced it meanwhile
    }
    // The failed instance may have exported a state a moment before it failed, whose save is
    // still being written: restart from that one, not from the file before it. (No new export
    // can begin: the slot is held.)
    entered.wait_for_saves();
    prepare(&mut fresh)?;
    let fresh = entered.instance_of(fresh);
    let broken = entered.swap(fresh);
    let started = entered.run_hook(Hook::Start);
    let name = Arc::clone(entered.name());
    drop(entered);
    shared.reaper().drop_now(&name, Box::new(broken));
    started.map(|()| true)
}

impl Kernel {
    /// Supervises the service behind `handle`: when it fails, it is rebuilt by `factory` and
    /// restarted with its last good state, per `policy` (see the [module docs](crate::supervise)).
    ///
    /// Fails with [`LifecycleError::NotFound`] if the service was unregistered since the handle
    /// was taken (as [`supervise_async`](Kernel::supervise_async) does).
    pub fn supervise<S, F>(
        &self,
        handle: &Handle<S::Request, S::Response>,
        policy: RestartPolicy,
        factory: F,
    ) -> Result<(), LifecycleError>
    where
        S: Handler,
        F: Fn() -> S + Send + Sync + 'static,
    {
        self.supervise_slot(Arc::clone(&handle.slot), policy, factory)
    }

    /// Supervises the service in `slot` (of any kind), registered under its name.
    fn supervise_slot<R, S, F>(&self, slot: R, policy: RestartPolicy, factory: F) -> Result<(), LifecycleError>
    where
        R: Restartable<S>,
        S: Service + Send + 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let name = slot.core().name.to_string();
        self.registered(&name, slot.core())?;
        let running = slot.core().status() == Status::Running;
        let restarter = Arc::new(Supervised::new(self, slot, policy, factory));
        if running {
            restarter.remember_good_state();
        }
        self.shared().restarts().watch(name, restarter);
        Ok(())
    }

    /// The service `name` is registered, and `core` is its slot's (not a slot unregistered
    /// since a handle to it was taken, whose name another service has now).
    pub(crate) fn registered(&self, name: &str, core: &SlotCore) -> Result<(), LifecycleError> {
        match self.shared().entry(name) {
            Some(entry) if std::ptr::eq(entry.lifecycle.core(), core) => Ok(()),
            _ => Err(LifecycleError::NotFound { name: name.to_owned() }),
        }
    }
}

impl Kernel {
    /// Replaces the `Event`/`Reply` service named by `new.name()` (as [`Kernel::replace`]) and
    /// carries its supervision over to the new version: from the moment the new version is in
    /// the slot, a failure rebuilds it with `factory`, under `policy`. If the replacement fails,
    /// the old version and its supervision stay as they were.
    ///
    /// A plain `replace` of a supervised service ends its supervision instead (the old factory
    /// builds the old version), with [`Notice::SupervisionEnded`](crate::Notice::SupervisionEnded).
    pub fn replace_supervised<S, F>(
        &self,
        new: S,
        policy: RestartPolicy,
        factory: F,
    ) -> Result<crate::Replaced, crate::ReplaceError>
    where
        S: Handler<Request = crate::Event, Response = crate::Reply>,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let name = new.name().to_owned();
        let handle = self.replacement_target(&name)?;
        let successor: Arc<dyn Restarter> = Arc::new(Supervised::new(self, Arc::clone(&handle.slot), policy, factory));
        self.with_successor(name, successor, || self.replace(new))
    }

    /// Runs `replace` with `successor` prepared to supervise the new version of `name`: the
    /// replacement hands supervision to it once the new version is in; on failure it is
    /// forgotten, so that it cannot take over a later plain `replace`.
    pub(crate) fn with_successor(
        &self,
        name: String,
        successor: Arc<dyn Restarter>,
        replace: impl FnOnce() -> Result<crate::Replaced, crate::ReplaceError>,
    ) -> Result<crate::Replaced, crate::ReplaceError> {
        let restarts = self.shared().restarts();
        restarts.prepare_successor(name.clone(), successor);
        let replaced = replace();
        restarts.forget_successor(&name);
        replaced
    }
}
