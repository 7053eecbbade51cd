//! Supervision of async services (feature `tokio`): the same policies and restarts as for a
//! synchronous service; the restart runs on the supervisor's thread, awaiting the new
//! instance's `start` there.

use std::sync::Arc;

use super::{RestartPolicy, Supervised};
use crate::replace::{Direction, replace_in_async_slot};
use crate::runtime::asynchronous::chain::off_workers;
use crate::runtime::asynchronous::{AsyncHandle, AsyncHandler, AsyncLifecycle};
use crate::runtime::error::LifecycleError;
use crate::runtime::kernel::Kernel;
use crate::runtime::kernel::supervision::Restarter;

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
        let Some(slot) = handle.async_slot() else {
            return Err(LifecycleError::WrongKind {
                service: handle.name().to_owned(),
                service_is: "a synchronous",
            });
        };
        self.supervise_slot(Arc::new(AsyncLifecycle(Arc::clone(slot))), policy, factory)
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
        let successor: Arc<dyn Restarter> = Arc::new(Supervised::new(
            self,
            Arc::new(AsyncLifecycle(Arc::clone(slot))),
            policy,
            factory,
        ));
        let (kernel, slot) = (self.clone(), Arc::clone(slot));
        // All of it off the workers, in one piece: dropping this future does not cancel the
        // replacement, and the successor must be forgotten whenever it fails.
        off_workers(move || {
            kernel.with_successor(name, successor, || {
                replace_in_async_slot(kernel.shared(), &slot, new, Direction::Upgrade)
            })
        })
        .await
    }
}
