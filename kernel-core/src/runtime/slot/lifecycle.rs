//! The kernel's view of any slot, whatever its protocol: lifecycle operations, bounded stops,
//! exports for saves.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Entered, Plumbing, SaveInFlight, Slot};
use crate::runtime::error::{Hook, LifecycleError};
use crate::runtime::service::Status;
use crate::runtime::sync::caller_token;
use crate::seal::writer::StateWriter;
use crate::state::EncodedState;
use crate::store::ObjectWriter;

/// How a stop bounded by a timeout ended, agreed between the stopping thread and the waiting one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopRace {
    /// The hook is running and the waiter still waits.
    Waiting,
    /// The hook finished before the waiter gave up.
    Done,
    /// The waiter gave up (timeout): the service was reported Failed.
    Abandoned,
}

/// What a save's export hands back, to finish once the service is released.
pub(crate) enum Exported<'s> {
    /// The encoding: to seal and save whole.
    Encoded(EncodedState),
    /// A whole envelope, sealed: to save.
    Sealed(Vec<u8>),
    /// Written to the store part by part: to commit.
    Streamed(Box<dyn ObjectWriter<'s> + 's>),
}

/// How a save exports an instance's state at a generation.
pub(crate) type ExportForSave<'f, 's> = dyn FnMut(&dyn Plumbing, u64) -> Result<Exported<'s>, LifecycleError> + 'f;

/// The kernel's view of any slot, whatever its protocol.
pub(crate) trait Lifecycle: Send + Sync {
    fn name(&self) -> &Arc<str>;
    fn status(&self) -> Status;
    fn run_hook(&self, hook: Hook) -> Result<(), LifecycleError>;
    /// The current instance's dependencies (takes the slot's mutex).
    fn dependencies(&self) -> Vec<String>;
    /// The current instance's state, encoded, with the generation it was exported at (takes
    /// the slot's mutex, so it is consistent and generations follow export order).
    fn export_encoded(&self) -> Result<(EncodedState, u64), LifecycleError>;
    /// Exports the current instance's state for a save through `export`, called with the
    /// instance and its next generation while the slot's mutex is held (a large state is
    /// sealed and written to the store there, part by part). Also returns a guard to hold until
    /// the state is written, which a restart of the service waits for.
    fn export_for_save<'s>(
        &self,
        export: &mut ExportForSave<'_, 's>,
    ) -> Result<(Exported<'s>, u64, SaveInFlight), LifecycleError>;
    /// Marks the service Failed without taking its mutex (a hook holding it did not return).
    fn mark_failed(&self);
    /// A bounded stop gave up waiting: the service is Failed, and lifecycle changes are refused
    /// until the hook returns (called with the stop's race decided, under its lock).
    fn abandon_stop(&self);
    /// Whether this thread holds the slot (inside its handler or hook).
    fn held_here(&self) -> bool;
    /// Runs the stop hook for a waiter bounded by a timeout; the status becomes Stopped (or
    /// Failed on an error) if the waiter has not given up by then, and stays Failed if it has.
    /// Returns the hook's result and whether it finished late.
    fn stop_bounded(&self, race: &std::sync::Mutex<StopRace>) -> (Result<(), LifecycleError>, bool);
}

impl<Req: Send + 'static, Resp: Send + 'static> Lifecycle for Slot<Req, Resp> {
    fn name(&self) -> &Arc<str> {
        Slot::name(self)
    }

    fn status(&self) -> Status {
        Slot::status(self)
    }

    fn run_hook(&self, hook: Hook) -> Result<(), LifecycleError> {
        Slot::run_hook(self, hook)
    }

    fn dependencies(&self) -> Vec<String> {
        self.instance.lock().dependencies()
    }

    fn mark_failed(&self) {
        self.status.store(Status::Failed.to_u8(), Ordering::Release);
    }

    fn abandon_stop(&self) {
        self.late_stop.store(true, Ordering::Release);
        self.mark_failed();
    }

    fn held_here(&self) -> bool {
        self.owner.0.load(Ordering::Relaxed) == caller_token()
    }

    fn stop_bounded(&self, race: &std::sync::Mutex<StopRace>) -> (Result<(), LifecycleError>, bool) {
        let mut entered = match self.enter_for("stop") {
            Ok(entered) => entered,
            Err(error) => return (Err(error), false),
        };
        let result = entered.invoke(Hook::Stop);
        let mut race = race.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let late = *race == StopRace::Abandoned;
        if late {
            self.late_stop.store(false, Ordering::Release);
        } else {
            *race = StopRace::Done;
        }
        entered.set_status(match (&result, late) {
            (Ok(()), false) => Status::Stopped,
            _ => Status::Failed,
        });
        (result, late)
    }

    fn export_for_save<'s>(
        &self,
        export: &mut ExportForSave<'_, 's>,
    ) -> Result<(Exported<'s>, u64, SaveInFlight), LifecycleError> {
        self.check_no_late_stop()?;
        let entered = self.enter_for("save")?;
        // Counted under the mutex: a restart holding it sees every export that came before.
        let in_flight = SaveInFlight::begin(&self.saves_in_flight);
        let exported = export_for_save_now(&**entered.instance, || entered.next_generation(), export);
        drop(entered);
        exported.map(|(state, generation)| (state, generation, in_flight))
    }

    fn export_encoded(&self) -> Result<(EncodedState, u64), LifecycleError> {
        self.check_no_late_stop()?;
        let entered = self.enter_for("export")?;
        self.export_entered(&entered)
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Slot<Req, Resp> {
    /// Exports the entered instance's state at the next generation.
    fn export_entered(&self, entered: &Entered<'_, Req, Resp>) -> Result<(EncodedState, u64), LifecycleError> {
        export_now(&self.name, &**entered.instance, || entered.next_generation())
    }
}

/// Exports `instance`'s state for a save through `export` at its next generation (the caller
/// holds the slot, so generations follow the order of exports): the same for every kind of slot.
pub(crate) fn export_for_save_now<'s>(
    instance: &dyn Plumbing,
    next_generation: impl FnOnce() -> u64,
    export: &mut ExportForSave<'_, 's>,
) -> Result<(Exported<'s>, u64), LifecycleError> {
    // Taken before the export, since a segmented envelope's header carries it: an export that
    // fails leaves a gap in the numbers, which only ever go up.
    let generation = next_generation();
    export(instance, generation).map(|exported| (exported, generation))
}

/// Exports `instance`'s state, taking its next generation (the caller holds the slot, so
/// generations follow the order of exports): the same for every kind of slot.
pub(crate) fn export_now(
    service: &str,
    instance: &dyn Plumbing,
    next_generation: impl FnOnce() -> u64,
) -> Result<(EncodedState, u64), LifecycleError> {
    let mut writer = StateWriter::plain();
    let tag = instance
        .export(false, &mut writer)
        .map_err(|e| LifecycleError::Export {
            service: service.to_owned(),
            source: e.into_source(),
        })?;
    debug_assert_eq!(writer.tag_written(), Some(tag));
    let bytes = writer.into_plain();
    let generation = next_generation();
    let encoded = EncodedState::from_bytes(bytes).map_err(|e| LifecycleError::Export {
        service: service.to_owned(),
        source: e.into(),
    })?;
    Ok((encoded, generation))
}
