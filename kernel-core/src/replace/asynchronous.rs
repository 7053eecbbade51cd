//! The replacement of an async service (feature `tokio`): the same protocol (`replace_held`),
//! with the slot taken through its FIFO queue (callers arriving meanwhile
//! queue behind the replacement and are served by the new version), a handler that is mid-`.await` given
//! `KernelBuilder::drain_timeout` to finish, and the hooks awaited. It runs on the blocking pool:
//! the crossing of a large state (encode, seal, open, decode) never occupies a worker.

use super::{Direction, ReplaceCause, ReplaceError, Replaced, Step, replace_held};
use crate::runtime::asynchronous::chain::{self, WouldBlockRuntime};
use crate::runtime::asynchronous::{AsyncHandler, AsyncSlot};
use crate::runtime::error::LifecycleError;
use crate::runtime::kernel::Shared;
use crate::runtime::slot::Blocked;

/// The whole protocol for one async slot, run from the blocking pool.
pub(crate) fn replace_in_async_slot<S: AsyncHandler>(
    shared: &Shared,
    slot: &std::sync::Arc<AsyncSlot<S::Request, S::Response>>,
    new: S,
    direction: Direction,
) -> Result<Replaced, ReplaceError> {
    let service = &**slot.name();
    let (runtime, drain) = (slot.runtime(), shared.drain_timeout());
    let hold = || {
        let would_block = |WouldBlockRuntime| LifecycleError::WouldBlockRuntime {
            service: service.to_owned(),
        };
        let entered = chain::block_on(runtime, slot.enter(crate::runtime::caller::current_sync(), Some(drain)))
            .map_err(|e| ReplaceError::new(service, Step::Enter, would_block(e)))?;
        entered.map_err(|blocked| {
            let reason = match blocked {
                Blocked::TimedOut(timeout) => ReplaceCause::DrainTimeout { timeout },
                other => other.into_lifecycle_error(service, "replace").into(),
            };
            ReplaceError::new(service, Step::Enter, reason)
        })
    };
    replace_held(shared, &slot.core, new, direction, hold)
}

impl crate::Kernel {
    /// Replaces the async `Event`/`Reply` service named by `new.name()` while it runs, its state
    /// moved across (see the [`asynchronous`](crate::asynchronous) module): the old version's
    /// handler may finish (within the drain timeout), calls arriving meanwhile wait and are
    /// served by the new version. Runs off the runtime's workers. Any failure leaves the old
    /// version serving with its state and names the step.
    pub async fn replace_async<S>(&self, new: S) -> Result<Replaced, ReplaceError>
    where
        S: AsyncHandler<Request = crate::Event, Response = crate::Reply>,
    {
        let handle = self
            .async_handle(new.name())
            .map_err(|e| ReplaceError::new(new.name(), Step::Enter, e))?;
        self.replace_async_at(&handle, new).await
    }

    /// Replaces the async service behind `handle` (any protocol) with `new`, which must speak
    /// the same types and have the same name.
    pub async fn replace_async_at<S: AsyncHandler>(
        &self,
        handle: &crate::asynchronous::AsyncHandle<S::Request, S::Response>,
        new: S,
    ) -> Result<Replaced, ReplaceError> {
        self.replace_async_in(handle, new, Direction::Upgrade).await
    }

    /// Rolls the async `Event`/`Reply` service named by `older.name()` back one version (its
    /// state downgraded), as [`Kernel::rollback`](crate::Kernel::rollback) does for a synchronous one.
    pub async fn rollback_async<S>(&self, older: S) -> Result<Replaced, ReplaceError>
    where
        S: AsyncHandler<Request = crate::Event, Response = crate::Reply>,
    {
        let handle = self
            .async_handle(older.name())
            .map_err(|e| ReplaceError::new(older.name(), Step::Enter, e))?;
        self.rollback_async_at(&handle, older).await
    }

    /// [`rollback_async`](Self::rollback_async) for an async service reached through its
    /// handle (any protocol), as [`Kernel::rollback_at`](crate::Kernel::rollback_at) does for a
    /// synchronous one.
    pub async fn rollback_async_at<S: AsyncHandler>(
        &self,
        handle: &crate::asynchronous::AsyncHandle<S::Request, S::Response>,
        older: S,
    ) -> Result<Replaced, ReplaceError> {
        self.replace_async_in(handle, older, Direction::Rollback).await
    }

    /// The replacement behind `handle` (an async service's, else [`ReplaceCause::WrongKind`]),
    /// off the runtime's workers.
    async fn replace_async_in<S: AsyncHandler>(
        &self,
        handle: &crate::asynchronous::AsyncHandle<S::Request, S::Response>,
        new: S,
        direction: Direction,
    ) -> Result<Replaced, ReplaceError> {
        let Some(slot) = handle.async_slot().cloned() else {
            let reason = ReplaceCause::WrongKind {
                service_is: "a synchronous",
            };
            return Err(ReplaceError::new(handle.name(), Step::Enter, reason));
        };
        let kernel = self.clone();
        chain::off_workers(move || replace_in_async_slot(kernel.shared(), &slot, new, direction)).await
    }
}
