//! The kernel's lifecycle operations on an async slot, from synchronous code.

use std::sync::Arc;

use super::{AsyncEntered, AsyncSlot};
use crate::runtime::asynchronous::chain;
use crate::runtime::error::{Hook, LifecycleError};
use crate::runtime::slot::{HoldForLifecycle, SlotCore};

/// The kernel's lifecycle drives an async slot from synchronous code (off the runtime's
/// workers: the async kernel operations hand it to the blocking pool).
pub(crate) struct AsyncLifecycle<Req, Resp>(pub(crate) Arc<AsyncSlot<Req, Resp>>);

impl<Req: Send + 'static, Resp: Send + 'static> HoldForLifecycle for AsyncLifecycle<Req, Resp> {
    type Held<'a> = AsyncEntered<Req, Resp>;

    fn core(&self) -> &SlotCore {
        &self.0.core
    }

    fn hold(&self, operation: &'static str) -> Result<Self::Held<'_>, LifecycleError> {
        self.0.enter_blocking(operation)
    }

    fn held_here(&self) -> bool {
        self.0.gate.owner() == crate::runtime::caller::current_sync()
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

    /// The last `Kernel` is being dropped on a runtime's thread, which must never block.
    fn must_not_wait(&self) -> bool {
        self.0.ctx.shared().strong_count() == 0 && !chain::may_block()
    }

    /// The stop runs on the runtime as soon as the service is free.
    fn stop_later(&self) {
        let slot = Arc::clone(&self.0);
        drop(self.0.runtime.spawn(async move {
            if let Ok(mut entered) = slot.enter(crate::runtime::caller::current(), None).await {
                let _ = entered.run_hook_async(Hook::Stop).await;
            }
        }));
    }
}
