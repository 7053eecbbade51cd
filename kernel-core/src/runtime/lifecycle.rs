//! The kernel's view of any slot, whatever its kind and protocol: the [`Lifecycle`] the registry
//! holds each service by, the [`Plumbing`] of an instance's state, and what passes through them
//! (exports for saves, bounded stops, holds for a takeover). It names no slot and no kernel, so
//! that the kernel can hold slots and slots can reach the kernel without a circle of imports.

use std::sync::Arc;

use crate::boxed::ServiceFault;
use crate::runtime::error::{Hook, LifecycleError, Status};
use crate::runtime::slot::core::{SaveInFlight, SlotCore};
use crate::seal::writer::StateWriter;
use crate::state::precopy::PrecopySource;
use crate::state::{EncodedState, MigrationError, StateTag};
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

/// The kernel's view of any slot, whatever its kind and protocol: implemented once, for every
/// kind of slot that can be held ([`HoldForLifecycle`](crate::runtime::slot::HoldForLifecycle)).
pub(crate) trait Lifecycle: Send + Sync {
    /// What every kind of slot keeps beside its instance (also: which slot this is).
    fn core(&self) -> &SlotCore;
    fn name(&self) -> &Arc<str> {
        &self.core().name
    }
    fn status(&self) -> Status {
        self.core().status()
    }
    fn run_hook(&self, hook: Hook) -> Result<(), LifecycleError>;
    /// The current instance's dependencies (takes the slot's mutex).
    fn dependencies(&self) -> Vec<String>;
    /// Exports the current instance's state for a save through `export`, called with the
    /// instance and its next generation while the slot's mutex is held (a large state is
    /// sealed and written to the store there, part by part). Also returns a guard to hold until
    /// the state is written, which a restart of the service waits for.
    fn export_for_save<'s>(
        &self,
        export: &mut ExportForSave<'_, 's>,
    ) -> Result<(Exported<'s>, u64, SaveInFlight), LifecycleError>;
    /// A bounded stop gave up waiting: the service is Failed, and lifecycle changes are refused
    /// until the hook returns (called with the stop's race decided, under its lock).
    fn abandon_stop(&self);
    /// Whether this thread holds the slot (inside its handler or hook).
    fn held_here(&self) -> bool;
    /// Runs the stop hook for a waiter bounded by a timeout; the status becomes Stopped (or
    /// Failed on an error) if the waiter has not given up by then, and stays Failed if it has.
    /// Returns the hook's result and whether it finished late.
    fn stop_bounded(&self, race: &std::sync::Mutex<StopRace>) -> (Result<(), LifecycleError>, bool);
    /// Holds the slot for a takeover by another process (feature `takeover`): calls arriving
    /// meanwhile wait until the hold is dropped, as during a replacement.
    #[cfg(all(feature = "takeover", target_os = "linux"))]
    fn hold_for_handover(&self) -> Result<Box<dyn HandoverHold + '_>, LifecycleError>;
}

/// A service's slot held for a takeover, whatever its kind (synchronous or async): what the
/// handover does with it.
#[cfg(all(feature = "takeover", target_os = "linux"))]
pub(crate) trait HandoverHold {
    /// Runs `start` or `stop` on the held instance, leaving the status as it is (callers
    /// waiting for the slot see the service Running throughout, as during a replacement).
    fn run(&mut self, hook: Hook) -> Result<(), LifecycleError>;
    /// Sets the service's status.
    fn mark(&self, status: Status);
    /// The service's status.
    fn current_status(&self) -> Status;
    /// The held instance's state, encoded, at its next generation.
    fn export_state(&self) -> Result<(EncodedState, u64), LifecycleError>;
}

/// A service's state plumbing with its types erased: what a replacement and a save need of an
/// instance, the same for synchronous and asynchronous services.
pub(crate) trait Plumbing: Send {
    fn dependencies(&self) -> Vec<String>;
    /// Exports the current state (or its previous version when `downgrade`) and appends its
    /// encoding to `out`; returns its tag.
    fn export(&self, downgrade: bool, out: &mut StateWriter<'_>) -> Result<StateTag, ExportError>;
    /// The version and fingerprint of the state type it holds.
    fn state_tag(&self) -> StateTag;
    /// The state's `#[precopy]` map, if it has one (and `export_state` lends the state).
    fn precopy_source(&self) -> Option<&dyn PrecopySource>;
}

/// Why an instance could not hand out its state: user code failed or panicked at one of the
/// three steps (each a [`Step`](crate::Step) of a replacement).
#[derive(Debug)]
pub(crate) enum ExportError {
    /// `export_state` failed or panicked.
    Handler(ServiceFault),
    /// The downgrade conversion refused (none declared, a first version) or panicked.
    Downgrade(MigrationError),
    /// The state's `Serialize` failed or panicked.
    Encode(ServiceFault),
}

impl ExportError {
    /// The underlying failure, whichever the step.
    pub(crate) fn into_source(self) -> ServiceFault {
        match self {
            ExportError::Handler(source) | ExportError::Encode(source) => source,
            ExportError::Downgrade(refused) => ServiceFault::Error(Box::new(refused)),
        }
    }
}
