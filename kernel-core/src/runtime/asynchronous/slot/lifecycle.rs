//! The kernel's lifecycle operations on an async slot, from synchronous code.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{AsyncEntered, AsyncSlot};
use crate::runtime::asynchronous::chain;
use crate::runtime::error::{Hook, LifecycleError};
use crate::runtime::service::Status;
use crate::runtime::slot::HeldSlot;
use crate::runtime::slot::{ExportForSave, Exported, Lifecycle, SaveInFlight, StopRace, export_for_save_now};
use crate::state::EncodedState;

/// The kernel's lifecycle drives an async slot from synchronous code (off the runtime's
/// workers: the async kernel operations hand it to the blocking pool).
pub(crate) struct AsyncLifecycle<Req, Resp>(pub(crate) Arc<AsyncSlot<Req, Resp>>);

impl<Req: Send + 'static, Resp: Send + 'static> AsyncLifecycle<Req, Resp> {
    /// The kernel is being dropped (no `Kernel` is left to upgrade to) on a thread that must
    /// not wait.
    fn dropping_in_runtime(&self) -> bool {
        self.0.kernel.strong_count() == 0 && !chain::may_block()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Lifecycle for AsyncLifecycle<Req, Resp> {
    fn name(&self) -> &Arc<str> {
        &self.0.name
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
                    if let Ok(mut entered) = slot.enter(chain::current(), None).await {
                        let _ = entered.run_hook_async(Hook::Stop).await;
                    }
                }));
            }
            return Ok(());
        }
        self.0.run_hook_blocking(hook)
    }

    fn dependencies(&self) -> Vec<String> {
        // Asked when the service registers, when nobody holds the slot: no wait (which a
        // single-threaded runtime could not allow) is needed then.
        if let Some(lot) = self.0.gate.try_take(chain::current_sync()) {
            let entered = AsyncEntered {
                slot: Arc::clone(&self.0),
                lot: Some(lot),
            };
            return entered.dependencies();
        }
        match self.0.enter_blocking() {
            Ok(entered) => entered.dependencies(),
            Err(error) => {
                tracing::error!(service = %self.0.name, %error, "could not read the dependencies of a busy async service");
                Vec::new()
            }
        }
    }

    fn export_encoded(&self) -> Result<(EncodedState, u64), LifecycleError> {
        self.0.check_no_late_stop()?;
        let entered = self.0.enter_blocking()?;
        self.0.export_entered(&entered)
    }

    fn export_for_save<'s>(
        &self,
        export: &mut ExportForSave<'_, 's>,
    ) -> Result<(Exported<'s>, u64, SaveInFlight), LifecycleError> {
        if self.dropping_in_runtime() {
            return Err(LifecycleError::WouldBlockRuntime {
                service: self.0.name.to_string(),
            });
        }
        self.0.check_no_late_stop()?;
        let entered = self.0.enter_blocking()?;
        let in_flight = SaveInFlight::begin(&self.0.saves_in_flight);
        let exported = entered
            .plumbing()
            .map_err(|source| LifecycleError::Export {
                service: self.0.name.to_string(),
                source,
            })
            .and_then(|instance| export_for_save_now(instance, || entered.next_generation(), export));
        drop(entered);
        exported.map(|(state, generation)| (state, generation, in_flight))
    }

    fn mark_failed(&self) {
        self.0.status.store(Status::Failed.to_u8(), Ordering::Release);
    }

    fn abandon_stop(&self) {
        self.0.late_stop.store(true, Ordering::Release);
        self.mark_failed();
    }

    fn held_here(&self) -> bool {
        self.0.gate.owner() == chain::current_sync()
    }

    fn stop_bounded(&self, race: &std::sync::Mutex<StopRace>) -> (Result<(), LifecycleError>, bool) {
        let mut entered = match self.0.enter_blocking() {
            Ok(entered) => entered,
            Err(error) => return (Err(error), false),
        };
        let result = HeldSlot::invoke(&mut entered, Hook::Stop);
        let mut race = race.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let late = *race == StopRace::Abandoned;
        if late {
            self.0.late_stop.store(false, Ordering::Release);
        } else {
            *race = StopRace::Done;
        }
        entered.set_status(match (&result, late) {
            (Ok(()), false) => Status::Stopped,
            _ => Status::Failed,
        });
        (result, late)
    }
}
