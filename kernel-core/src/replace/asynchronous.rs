//! The replacement of an async service (feature `tokio`): the same four steps as
//! `replace_in_slot`, with the slot taken through its FIFO queue (callers arriving meanwhile
//! queue behind the replacement and are served by the new version), a handler that is mid-`.await` given
//! `KernelBuilder::drain_timeout` to finish, and the hooks awaited. It runs on the blocking pool:
//! the crossing of a large state (encode, seal, open, decode) never occupies a worker.

use super::{Direction, ReplaceCause, ReplaceError, Replaced, Step, begin, check_before, precopy, swap_versions};
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
    let _span = tracing::info_span!("replace", service, ?direction).entered();
    let no_late_stop = || slot.core.check_no_late_stop();
    check_before(service, new.name(), no_late_stop)?;
    let would_block = |WouldBlockRuntime| {
        ReplaceError::new(
            service,
            Step::Enter,
            LifecycleError::WouldBlockRuntime {
                service: service.to_owned(),
            },
        )
    };
    let runtime = slot.runtime();

    let drain = shared.drain_timeout();
    let mut hold = || {
        chain::block_on(runtime, slot.enter(crate::runtime::caller::current_sync(), Some(drain)))
            .map_err(would_block)?
            .map_err(|blocked| {
                let reason = match blocked {
                    Blocked::TimedOut(timeout) => ReplaceCause::DrainTimeout { timeout },
                    other => other.into_lifecycle_error(service, "replace").into(),
                };
                ReplaceError::new(service, Step::Enter, reason)
            })
    };
    // A `#[precopy]` map crosses first, the service serving, before the lifecycle lock.
    let precopied = precopy::copy_ahead::<S::State, _>(shared, service, direction, &mut hold)?;
    let _serial = begin(shared, service, new.name(), no_late_stop)?;

    // 1. Take the slot: a handler mid-`.await` may finish (within the drain timeout); calls
    // arriving from now on queue behind the replacement.
    swap_versions(shared, hold()?, new, direction, precopied)
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
