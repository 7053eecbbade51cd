//! Hot replacement: a running service is swapped for a new version, its state moved across as a
//! typed value, with no request lost.
//!
//! The data path, top to bottom in `replace_in_slot` (this file):
//!
//! 1. take the slot (calls arriving now wait; they are neither dropped nor failed);
//! 2. export → encode → seal → open → decode/upgrade → import into the new instance, and check
//!    the new version's dependencies — the old instance is untouched;
//! 3. stop the old instance, start the new one (restarting the old one if that fails);
//! 4. switch the slot to the new instance and release it: waiting calls reach the new version.
//!
//! Any failure in 2–3 leaves the old version in the slot, serving, with its state unchanged, and
//! returns a [`ReplaceError`] naming the step.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::boxed::ServiceFault;
use crate::messaging::message::{Event, Reply};
use crate::runtime::error::Status;
use crate::runtime::error::{Hook, LifecycleError, panic_message};
use crate::runtime::graph;
use crate::runtime::handle::Handle;
use crate::runtime::kernel::{Kernel, Shared, dep_graph};
use crate::runtime::lifecycle::Plumbing;
use crate::runtime::notice::Notice;
use crate::runtime::service::{Handler, Service};
use crate::runtime::slot::{HeldSlot, Installs, Slot, SlotCore};
use crate::state::StateTag;

#[cfg(feature = "tokio")]
mod asynchronous;
#[cfg(feature = "tokio")]
pub(crate) use asynchronous::replace_in_async_slot;

mod outcome;
mod precopy;
mod transit;

pub use outcome::{ReplaceCause, ReplaceError, Replaced, Step};

/// Which way the state moves along its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Upgrade,
    Rollback,
}

impl Kernel {
    /// Replaces the `Event`/`Reply` service named by `new.name()` with `new`, moving its state
    /// across (see the [module docs](crate::replace) for the protocol).
    ///
    /// - A running service keeps serving throughout; calls made meanwhile wait and are answered
    ///   by the new version.
    /// - A service that is not running (Created, Stopped, Failed) is swapped without starting
    ///   either version: it stays in its status, holding the migrated state.
    /// - A name that is not registered is refused at [`Step::Enter`] with
    ///   [`ReplaceCause::Call`]`(`[`CallError::NotFound`](crate::CallError::NotFound)`)`, as
    ///   every replacement call does: register a service first.
    /// - A state type that shares no chain with the old one is refused at [`Step::Decode`],
    ///   before anything is stopped.
    pub fn replace<S>(&self, new: S) -> Result<Replaced, ReplaceError>
    where
        S: Handler<Request = Event, Response = Reply>,
    {
        let handle = self.replacement_target(new.name())?;
        replace_in_slot(self.shared(), &handle.slot, new, Direction::Upgrade)
    }

    /// Replaces the service behind `handle` (any protocol) with `new`, which must speak the same
    /// request and response types — checked at compile time — and have the same name.
    pub fn replace_at<S: Handler>(
        &self,
        handle: &Handle<S::Request, S::Response>,
        new: S,
    ) -> Result<Replaced, ReplaceError> {
        replace_in_slot(self.shared(), &handle.slot, new, Direction::Upgrade)
    }

    /// Rolls the `Event`/`Reply` service named by `older.name()` back one version: the current
    /// state is downgraded (`#[migratable(down = ...)]`) to `older`'s state type.
    pub fn rollback<S>(&self, older: S) -> Result<Replaced, ReplaceError>
    where
        S: Handler<Request = Event, Response = Reply>,
    {
        let handle = self.replacement_target(older.name())?;
        replace_in_slot(self.shared(), &handle.slot, older, Direction::Rollback)
    }

    /// [`rollback`](Self::rollback) for a service reached through its handle.
    pub fn rollback_at<S: Handler>(
        &self,
        handle: &Handle<S::Request, S::Response>,
        older: S,
    ) -> Result<Replaced, ReplaceError> {
        replace_in_slot(self.shared(), &handle.slot, older, Direction::Rollback)
    }
}

impl Kernel {
    /// The synchronous `Event`/`Reply` service `name`, for a replacement: an async one is
    /// [`ReplaceCause::WrongKind`], as the async spellings say of a synchronous one.
    pub(crate) fn replacement_target(&self, name: &str) -> Result<Handle, ReplaceError> {
        self.handle(name).map_err(|error| match error {
            crate::CallError::WrongKind { service_is, .. } => {
                ReplaceError::new(name, Step::Enter, ReplaceCause::WrongKind { service_is })
            }
            other => ReplaceError::new(name, Step::Enter, other),
        })
    }
}

/// Encoded size above which a replaced instance is dropped on the reaper thread.
const REAP_ABOVE: usize = 64 * 1024;

/// The whole protocol, for one synchronous slot.
fn replace_in_slot<S: Handler>(
    shared: &Shared,
    slot: &Slot<S::Request, S::Response>,
    new: S,
    direction: Direction,
) -> Result<Replaced, ReplaceError> {
    let service = &**slot.name();
    let hold = || {
        slot.enter_for("replace")
            .map_err(|error| ReplaceError::new(service, Step::Enter, error))
    };
    replace_held(shared, slot.core(), new, direction, hold)
}

/// The whole protocol, for a slot of any kind that `hold` takes (step 1), waiting for the
/// handler that holds it: the same for every kind of slot.
fn replace_held<S, E>(
    shared: &Shared,
    core: &SlotCore,
    new: S,
    direction: Direction,
    mut hold: impl FnMut() -> Result<E, ReplaceError>,
) -> Result<Replaced, ReplaceError>
where
    S: Service,
    E: Installs<S>,
{
    let service = &*core.name;
    let _span = tracing::info_span!("replace", service, ?direction).entered();
    let refused = |error: LifecycleError| ReplaceError::new(service, Step::Enter, error);
    if new.name() != service {
        let new_name = new.name().to_owned();
        return Err(ReplaceError::new(
            service,
            Step::Enter,
            ReplaceCause::WrongName { new_name },
        ));
    }
    // A stop hook that outlived its timeout holds the slot: refused, not waited for (checked
    // again after the pre-copy and under the kernel's lifecycle lock).
    core.check_no_late_stop().map_err(refused)?;
    // A `#[precopy]` map crosses first, the service serving, before the lifecycle lock.
    let precopied = precopy::copy_ahead::<S::State, _>(shared, service, direction, &mut hold)?;
    // Checked again: a bounded stop may have given up during the pre-copy, and the lock would
    // then be waited for only to refuse.
    core.check_no_late_stop().map_err(refused)?;
    let _serial = shared.lifecycle_lock("replace").map_err(refused)?;
    core.check_no_late_stop().map_err(refused)?;

    // 1. Take the slot: calls arriving from now on wait (an async handler mid-`.await` may
    // finish first, within the drain timeout).
    swap_versions(shared, hold()?, new, direction, precopied)
}

/// Steps 2–4, the same for every kind of slot, once step 1 has taken it:
///
/// 2. export → encode → seal → open → decode/upgrade → import into `new`, and check the new
///    version's dependencies — the old instance is only read;
/// 3. stop the old instance, start the new one — the old one comes back if either fails (the
///    status stays Running throughout, see [`HeldSlot::invoke`]; only a failure changes it);
/// 4. switch: the new instance is in, the slot is released to the waiting calls, and the old
///    instance is dropped.
fn swap_versions<E, S>(
    shared: &Shared,
    mut entered: E,
    mut new: S,
    direction: Direction,
    precopied: Option<precopy::Precopied<S::State>>,
) -> Result<Replaced, ReplaceError>
where
    E: Installs<S>,
    S: Service,
{
    // The pause begins: for a pre-copy, what is left of the crossing is timed from here.
    let precopied = precopied.map(precopy::Precopied::pausing);
    let service = Arc::clone(entered.name());
    let service = &*service;
    let was_running = entered.status() == Status::Running;

    // 2.
    let generation = entered.next_generation();
    let old = entered.plumbing().ok_or_else(|| {
        let lost = LifecycleError::InstanceLost {
            service: service.to_owned(),
        };
        ReplaceError::new(service, Step::Export, lost)
    })?;
    let mut crossed = cross(shared, service, old, &mut new, generation, direction, precopied)?;
    crossed.new_deps = check_new_dependencies(shared, service, new.dependencies(), was_running)?;

    // 3.
    if was_running && let Err(error) = entered.invoke(Hook::Stop) {
        let restarted = restart_old(&mut entered);
        return Err(ReplaceError {
            old_restarted: restarted,
            ..ReplaceError::new(service, Step::StopOld, error)
        });
    }
    let fresh = entered.instance_of(new);
    let old = entered.swap(fresh);
    if was_running && let Err(error) = entered.invoke(Hook::Start) {
        entered.swap(old);
        let restarted = restart_old(&mut entered);
        return Err(ReplaceError {
            old_restarted: restarted,
            ..ReplaceError::new(service, Step::StartNew, error)
        });
    }

    // 4.
    if let Some(deps) = crossed.new_deps.take() {
        shared.set_dependencies(service, deps);
    }
    let name = Arc::clone(entered.name());
    drop(entered);
    let retired = crossed.precopy.as_mut().map(|report| {
        report.pause = report.paused_at.elapsed();
        std::mem::take(&mut report.retired)
    });
    dispose_old(shared, &name, &crossed, Box::new((old, retired)));
    Ok(finished(shared, service, &crossed))
}

/// After the swap, the same for every kind of slot: the replaced instance is dropped. Freeing a
/// large state takes milliseconds, so it goes to the reaper thread; a small one costs less than
/// waking the reaper. Either way a panicking `Drop` is reported, not unwound into the caller of
/// a replacement that succeeded.
pub(crate) fn dispose_old(shared: &Shared, service: &Arc<str>, crossed: &Crossed, old: Box<dyn Send>) {
    if crossed.state_len > REAP_ABOVE {
        shared.reaper().dispose(Arc::clone(service), old);
    } else {
        shared.reaper().drop_now(service, old);
    }
}

/// What step 2 of a replacement hands on to the swap.
pub(crate) struct Crossed {
    /// What the old instance held (a rollback exports it downgraded: that is not where it came
    /// from).
    pub(crate) from: StateTag,
    /// What the new instance imported.
    pub(crate) to: StateTag,
    pub(crate) sealed: bool,
    /// The encoded state's length: a large old instance is dropped on the reaper thread.
    pub(crate) state_len: usize,
    /// The new version's dependencies, if they differ from the old one's (checked after the
    /// import).
    pub(crate) new_deps: Option<Vec<String>>,
    /// How the `#[precopy]` map crossed, if it crossed before the pause.
    pub(crate) precopy: Option<precopy::Report>,
}

/// Step 2, the same for every kind of slot: export → encode → seal → open → decode/upgrade →
/// import into `new` (the `#[precopy]` map's entries having crossed already if `precopied`).
/// The old instance is only read.
pub(crate) fn cross<S: Service>(
    shared: &Shared,
    service: &str,
    old: &dyn Plumbing,
    new: &mut S,
    generation: u64,
    direction: Direction,
    precopied: Option<precopy::Precopied<S::State>>,
) -> Result<Crossed, ReplaceError> {
    let from = old.state_tag();
    let precopied = match precopied {
        Some(precopied) => precopy::finish(shared, service, old, precopied, generation)?,
        None => None,
    };
    let (crossing, precopy) = match precopied {
        Some((crossing, report)) => (crossing, Some(report)),
        None => {
            let crossing =
                transit::transit::<S::State>(shared, service, direction == Direction::Rollback, old, generation)?;
            (crossing, None)
        }
    };
    let (state, sealed, state_len) = (crossing.state, crossing.sealed, crossing.len);
    guarded(service, Step::Import, || new.import_state(state))?
        .map_err(|e| ReplaceError::new(service, Step::Import, ServiceFault::Error(e)))?;
    let to = StateTag::of::<S::State>();
    Ok(Crossed {
        from,
        to,
        sealed,
        state_len,
        new_deps: None,
        precopy,
    })
}

/// After the swap: the log line, supervision handed over or ended, the notices.
///
/// `Notice::StateMigrated` is sent here, once the new version serves, and never for a
/// replacement that failed (a new version that did not start, an old one that did not stop):
/// the old version then keeps or gets back its state, and no notice says otherwise.
pub(crate) fn finished(shared: &Shared, service: &str, crossed: &Crossed) -> Replaced {
    let (from, to, sealed) = (crossed.from, crossed.to, crossed.sealed);
    tracing::info!(service, from = from.version, to = to.version, sealed, "replaced");
    if let Some(report) = &crossed.precopy {
        shared.notify(&Notice::Precopied {
            service,
            rounds: report.rounds,
            entries: report.entries,
            in_pause: report.in_pause,
            pause: report.pause,
        });
    }
    shared.notify(&Notice::StateMigrated {
        service,
        from,
        to,
        sealed,
    });
    match shared.restarts().replaced(service) {
        (true, _) => shared.restarts().started(service),
        (false, true) => shared.notify(&Notice::SupervisionEnded { service }),
        (false, false) => {}
    }
    shared.notify(&Notice::Replaced { service });
    Replaced::Swapped { from, to, sealed }
}

/// Starts the old instance again after a failed replacement; whether it is running.
fn restart_old(entered: &mut impl HeldSlot) -> bool {
    match entered.invoke(Hook::Start) {
        Ok(()) => true,
        Err(error) => {
            entered.set_status(Status::Failed);
            tracing::error!(%error, "restarting the old version after a failed replacement failed");
            false
        }
    }
}

/// Runs a conversion step with its panics caught, so a panicking `From` or import leaves the old
/// version serving.
pub(super) fn guarded<T>(service: &str, step: Step, f: impl FnOnce() -> T) -> Result<T, ReplaceError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic_message(&*panic);
        ReplaceError::new(service, step, ServiceFault::Panicked { message })
    })
}

/// The new version's dependencies must be registered, form no cycle and, if the service runs,
/// be running. Returns them if they differ from the old version's, for the registry.
fn check_new_dependencies(
    shared: &Shared,
    service: &str,
    deps: Vec<String>,
    running: bool,
) -> Result<Option<Vec<String>>, ReplaceError> {
    let fail = |e: LifecycleError| ReplaceError::new(service, Step::Dependencies, e);
    // The rule of registration: each dependency listed once.
    if let Some(dependency) = graph::listed_twice(&deps) {
        return Err(fail(LifecycleError::DuplicateDependency {
            service: service.to_owned(),
            dependency: dependency.to_owned(),
        }));
    }
    // The common case, same dependencies as before, needs no copy of the registry: the graph
    // was acyclic and stays so, and the running dependencies were checked when it started.
    let mut snapshot = shared.snapshot_if(|registered| registered.get(service).is_none_or(|e| *e.deps != *deps));
    let Some(snapshot) = &mut snapshot else {
        if running {
            shared.check_running(service, &deps).map_err(fail)?;
        }
        return Ok(None);
    };
    // The entry is there unless the service was unregistered meanwhile; then the graph
    // without it is still checked.
    if let Some(entry) = snapshot.get_mut(service) {
        entry.deps = deps.clone().into();
    }
    graph::start_order(&dep_graph(snapshot)).map_err(fail)?;
    if running {
        shared.check_running(service, &deps).map_err(fail)?;
    }
    Ok(Some(deps))
}
