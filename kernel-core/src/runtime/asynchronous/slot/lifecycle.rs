//! The kernel's lifecycle operations on an async slot, from synchronous code.

use std::sync::Arc;

use super::{AsyncEntered, AsyncSlot};
use crate::runtime::asynchronous::chain;
use crate::runtime::error::Status;
use crate::runtime::error::{Hook, LifecycleError};
use crate::runtime::lifecycle::{ExportForSave, Exported, Lifecycle, StopRace};
use crate::runtime::slot::{HoldForLifecycle, SaveInFlight, SlotCore, hold_and};

/// The kernel's lifecycle drives an async slot from synchronous code (off the runtime's
/// workers: the async kernel operations hand it to the blocking pool).
pub(crate) struct AsyncLifecycle<Req, Resp>(pub(crate) Arc<AsyncSlot<Req, Resp>>);

impl<Req: Send + 'static, Resp: Send + 'static> AsyncLifecycle<Req, Resp> {
    /// The kernel is being dropped (no `Kernel` is left to upgrade to) on a thread that must
    /// not wait.
    fn dropping_in_runtime(&self) -> bool {
        self.0.ctx.shared().strong_count() == 0 && !chain::may_block()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> HoldForLifecycle for AsyncLifecycle<Req, Resp> {
    type Held<'a> = AsyncEntered<Req, Resp>;

    fn core(&self) -> &SlotCore {
        &self.0.core
    }

    fn hold(&self, operation: &'static str) -> Result<Self::Held<'_>, LifecycleError> {
        self.0.enter_blocking(operation)
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Lifecycle for AsyncLifecycle<Req, Resp> {
    fn name(&self) -> &Arc<str> {
        self.0.name()
    }

    fn core(&self) -> &SlotCore {
        &self.0.core
    }

    fn status(&self) -> Status {
        self.0.status()
    }

    fn run_hook(&self, hook: Hook) -> Result<(), LifecycleError> {
        if self.dropping_in_runtime() {
            // The last `Kernel` is being dropped on a runtime's thread: never block it. The
            // stop runs on the runtime as soon as the service is free (best effort: a program
            // that must see its async services stopped awaits `Kernel::shutdown`).
            if hook == Hook::Stop {
                let slot = Arc::clone(&self.0);
                drop(self.0.runtime.spawn(async move {
                    if let Ok(mut entered) = slot.enter(crate::runtime::caller::current(), None).await {
                        let _ = entered.run_hook_async(Hook::Stop).await;
                    }
                }));
            }
            return Ok(());
        }
        hold_and::run_hook(self, hook)
    }

    fn dependencies(&self) -> Vec<String> {
        // Asked when the service registers, when nobody holds the slot: no wait (which a
        // single-threaded runtime could not allow) is needed then.
        if let Some(lot) = self.0.gate.try_take(crate::runtime::caller::current_sync()) {
            let entered = AsyncEntered {
                slot: Arc::clone(&self.0),
                lot: Some(lot),
            };
            return entered.dependencies();
        }
        match self.0.enter_blocking("dependencies") {
            Ok(entered) => entered.dependencies(),
            Err(error) => {
                tracing::error!(service = %self.0.name(), %error, "could not read the dependencies of a busy async service");
                Vec::new()
            }
        }
    }

    fn export_for_save<'s>(
        &self,
        export: &mut ExportForSave<'_, 's>,
    ) -> Result<(Exported<'s>, u64, SaveInFlight), LifecycleError> {
        if self.dropping_in_runtime() {
            return Err(LifecycleError::WouldBlockRuntime {
                service: self.0.name().to_string(),
            });
        }
        hold_and::export_for_save(self, export)
    }

    fn abandon_stop(&self) {
        hold_and::abandon_stop(self);
    }

    fn held_here(&self) -> bool {
        self.0.gate.owner() == crate::runtime::caller::current_sync()
    }

    fn stop_bounded(&self, race: &std::sync::Mutex<StopRace>) -> (Result<(), LifecycleError>, bool) {
        hold_and::stop_bounded(self, race)
    }

    #[cfg(all(feature = "takeover", target_os = "linux"))]
    fn hold_for_handover(&self) -> Result<Box<dyn crate::runtime::lifecycle::HandoverHold + '_>, LifecycleError> {
        self.0.core.check_no_late_stop()?;
        Ok(Box::new(self.0.enter_blocking("handover")?))
    }
}
