//! The kernel's view of a slot ([`Lifecycle`]) for either kind of slot: lifecycle operations,
//! bounded stops, exports for saves, written once over [`HoldForLifecycle`].

use std::sync::atomic::Ordering;

use super::{Entered, HeldSlot, SaveInFlight, Slot, SlotCore};
use crate::runtime::caller::caller_token;
use crate::runtime::error::{Hook, LifecycleError, Status};
use crate::runtime::lifecycle::{ExportForSave, Exported, Lifecycle, Plumbing, StopRace};
use crate::seal::writer::StateWriter;
use crate::state::EncodedState;

/// A kind of slot, as the lifecycle takes it: the kernel's view of a slot ([`Lifecycle`]) is
/// written once over this trait, for synchronous and async slots alike.
pub(crate) trait HoldForLifecycle: Send + Sync {
    /// The slot, held.
    type Held<'a>: HeldSlot
    where
        Self: 'a;
    /// What every kind of slot keeps beside its instance.
    fn core(&self) -> &SlotCore;
    /// Takes the slot for the lifecycle operation `operation` (waiting for its holder); a
    /// refusal says whether this chain holds it already or waiting would close a cycle.
    fn hold(&self, operation: &'static str) -> Result<Self::Held<'_>, LifecycleError>;
    /// Whether this chain of calls holds the slot (inside its handler or hook).
    fn held_here(&self) -> bool;
    /// The current instance's dependencies.
    fn dependencies(&self) -> Vec<String>;
    /// Whether this thread must not wait for the slot (an async slot whose last `Kernel` is
    /// being dropped on a runtime's thread): hooks are then skipped, a stop handed to
    /// [`stop_later`](Self::stop_later), and saves refused.
    fn must_not_wait(&self) -> bool {
        false
    }
    /// Runs the stop hook later, without waiting here (see [`must_not_wait`](Self::must_not_wait)).
    fn stop_later(&self) {}
}

impl<K: HoldForLifecycle> Lifecycle for K {
    fn core(&self) -> &SlotCore {
        HoldForLifecycle::core(self)
    }

    fn run_hook(&self, hook: Hook) -> Result<(), LifecycleError> {
        if self.must_not_wait() {
            // Best effort: a program that must see its async services stopped awaits
            // `Kernel::shutdown`.
            if hook == Hook::Stop {
                self.stop_later();
            }
            return Ok(());
        }
        self.core().check_no_late_stop()?;
        self.hold(hook.as_str())?.run_hook(hook)
    }

    fn dependencies(&self) -> Vec<String> {
        HoldForLifecycle::dependencies(self)
    }

    fn export_for_save<'s>(
        &self,
        export: &mut ExportForSave<'_, 's>,
    ) -> Result<(Exported<'s>, u64, SaveInFlight), LifecycleError> {
        if self.must_not_wait() {
            return Err(LifecycleError::WouldBlockRuntime {
                service: self.core().name.to_string(),
            });
        }
        self.core().check_no_late_stop()?;
        let held = self.hold("save")?;
        // Counted while held: a restart holding the slot sees every export that came before.
        let in_flight = self.core().begin_save();
        let exported =
            plumbing(&held).and_then(|instance| export_for_save_now(instance, || held.next_generation(), export));
        drop(held);
        exported.map(|(state, generation)| (state, generation, in_flight))
    }

    fn abandon_stop(&self) {
        self.core().set_late_stop(true);
        self.core().set_status(Status::Failed);
    }

    fn held_here(&self) -> bool {
        HoldForLifecycle::held_here(self)
    }

    fn stop_bounded(&self, race: &std::sync::Mutex<StopRace>) -> (Result<(), LifecycleError>, bool) {
        let mut held = match self.hold("stop") {
            Ok(held) => held,
            Err(error) => return (Err(error), false),
        };
        let result = held.invoke(Hook::Stop);
        let mut race = race.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let late = *race == StopRace::Abandoned;
        if late {
            self.core().set_late_stop(false);
        } else {
            *race = StopRace::Done;
        }
        held.set_status(match (&result, late) {
            (Ok(()), false) => Status::Stopped,
            _ => Status::Failed,
        });
        (result, late)
    }

    #[cfg(all(feature = "takeover", target_os = "linux"))]
    fn hold_for_handover(&self) -> Result<Box<dyn crate::runtime::lifecycle::HandoverHold + '_>, LifecycleError> {
        self.core().check_no_late_stop()?;
        Ok(Box::new(self.hold("handover")?))
    }
}

/// The current instance's state, encoded, at its next generation (for supervision's last good
/// state).
pub(crate) fn export_encoded<K: HoldForLifecycle>(slot: &K) -> Result<(EncodedState, u64), LifecycleError> {
    slot.core().check_no_late_stop()?;
    let held = slot.hold("export")?;
    let instance = plumbing(&held)?;
    export_now(held.name(), instance, || held.next_generation())
}

/// The held instance's plumbing, or why there is none.
fn plumbing<H: HeldSlot>(held: &H) -> Result<&dyn Plumbing, LifecycleError> {
    held.plumbing().ok_or_else(|| LifecycleError::InstanceLost {
        service: held.name().to_string(),
    })
}

impl<Req: Send + 'static, Resp: Send + 'static> HoldForLifecycle for Slot<Req, Resp> {
    type Held<'a> = Entered<'a, Req, Resp>;

    fn core(&self) -> &SlotCore {
        Slot::core(self)
    }

    fn hold(&self, operation: &'static str) -> Result<Self::Held<'_>, LifecycleError> {
        self.enter_for(operation)
    }

    fn held_here(&self) -> bool {
        self.owner.0.load(Ordering::Relaxed) == caller_token()
    }

    fn dependencies(&self) -> Vec<String> {
        self.instance.lock().dependencies()
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
        source: crate::boxed::ServiceFault::Error(e.into()),
    })?;
    Ok((encoded, generation))
}
