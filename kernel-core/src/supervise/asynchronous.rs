//! Supervision of async services (feature `tokio`): the same policies and restarts as for a
//! synchronous service; the restart runs on the supervisor's thread, awaiting the new
//! instance's `start` there.

use std::sync::Arc;

use super::{RestartPolicy, Restartable, Supervised};
use crate::replace::{Direction, replace_in_async_slot};
use crate::runtime::asynchronous::chain::off_workers;
use crate::runtime::asynchronous::{AsyncHandle, AsyncHandler, AsyncLifecycle, AsyncSlot};
use crate::runtime::error::LifecycleError;
use crate::runtime::kernel::{Kernel, Shared};
use crate::runtime::restart::Restarter;
use crate::runtime::service::Status;
use crate::runtime::slot::Lifecycle;

type AsyncSlotOf<S> = AsyncSlot<<S as AsyncHandler>::Request, <S as AsyncHandler>::Response>;

impl<S: AsyncHandler> Restartable<S> for Arc<AsyncSlotOf<S>> {
    fn name(&self) -> &Arc<str> {
        AsyncSlot::name(self)
    }

    fn status(&self) -> Status {
        AsyncSlot::status(self)
    }

    fn epoch(&self) -> u64 {
        AsyncSlot::epoch(self)
    }

    fn check_no_late_stop(&self) -> Result<(), LifecycleError> {
        AsyncSlot::check_no_late_stop(self)
    }

    fn good_state(&self) -> Result<Vec<u8>, LifecycleError> {
        AsyncLifecycle(Arc::clone(self))
            .export_encoded()
            .map(|(encoded, _)| encoded.into_bytes())
    }

    fn swap_in(
        &self,
        shared: &Shared,
        epoch: u64,
        fresh: S,
        prepare: &mut dyn FnMut(&mut S) -> Result<(), LifecycleError>,
    ) -> Result<bool, LifecycleError> {
        super::restart_held(shared, self.enter_blocking()?, epoch, fresh, prepare)
    }
}

impl Kernel {
    /// Supervises the async service behind `handle`, as [`Kernel::supervise`] does a
    /// synchronous one: when it fails (its handler panics, its `start` fails), `factory` builds
    /// a new instance, which imports the last good state and is started, per `policy`.
    pub fn supervise_async<S, F>(
        &self,
        handle: &AsyncHandle<S::Request, S::Response>,
        policy: RestartPolicy,
        factory: F,
    ) -> Result<(), LifecycleError>
    where
        S: AsyncHandler,
        F: Fn() -> S + Send + Sync + 'static,
    {
        self.registered(handle.name())?;
        let Some(slot) = handle.async_slot() else {
            return Err(LifecycleError::WrongKind {
                service: handle.name().to_owned(),
                service_is: "a synchronous",
            });
        };
        let restarter = Arc::new(Supervised::new(Arc::clone(slot), policy, factory));
        if handle.status() == Status::Running {
            restarter.remember_good_state();
        }
        self.shared().restarts.watch(handle.name().to_owned(), restarter);
        Ok(())
    }

    /// [`replace_async`](Kernel::replace_async) that carries supervision over to the new
    /// version, as [`Kernel::replace_supervised`] does for a synchronous service.
    pub async fn replace_supervised_async<S, F>(
        &self,
        new: S,
        policy: RestartPolicy,
        factory: F,
    ) -> Result<crate::Replaced, crate::ReplaceError>
    where
        S: AsyncHandler<Request = crate::Event, Response = crate::Reply>,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let name = new.name().to_owned();
        let handle = self
            .async_handle(&name)
            .map_err(|e| crate::ReplaceError::new(&name, crate::Step::Enter, e))?;
        let Some(slot) = handle.async_slot() else {
            return Err(crate::ReplaceError::new(
                &name,
                crate::Step::Enter,
                crate::replace::ReplaceCause::WrongKind {
                    service_is: "a synchronous",
                },
            ));
        };
        let successor: Arc<dyn Restarter> = Arc::new(Supervised::new(Arc::clone(slot), policy, factory));
        let (kernel, slot) = (self.clone(), Arc::clone(slot));
        // All of it off the workers, in one piece: dropping this future does not cancel the
        // replacement, and the successor must be forgotten whenever it fails.
        off_workers(move || {
            let restarts = &kernel.shared().restarts;
            restarts.prepare_successor(name.clone(), successor);
            let replaced = replace_in_async_slot(kernel.shared(), &slot, new, Direction::Upgrade);
            restarts.forget_successor(&name);
            replaced
        })
        .await
    }
}
