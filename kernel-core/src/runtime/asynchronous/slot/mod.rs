//! An async service's slot: the one place its current instance lives, behind a FIFO lock that
//! moves the instance to its holder ([`Gate`]). Callers (async ones awaiting, synchronous ones
//! waiting off the workers) take it in the order they arrived; a replacement that holds it makes
//! them wait, and they are served by the new version.
//!
//! A call takes the instance with one atomic swap, polls the handler once right there (most
//! handlers are done then) and puts it back with another; the handler's future lives in
//! storage the instance keeps. Only a handler that returns `Pending` leaves its work in the
//! call's future — and if that future is dropped, the work (which owns the instance) is moved
//! to a task of the runtime that finishes it, so a taken request is completed once.

use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::runtime::Handle as Runtime;
use tracing::Instrument;

use super::AsyncContext;
use super::chain::{self, CatchUnwind, WouldBlockRuntime};
use super::gate::Gate;
use super::handler::{AsyncHandler, BoxAsyncInstance, Served};
use crate::messaging::message::{Event, Reply};
use crate::runtime::error::{CallError, Hook, LifecycleError, Status, panic_message};
use crate::runtime::kernel::Shared;
use crate::runtime::lifecycle::Plumbing;
use crate::runtime::route::CallsByName;
use crate::runtime::slot::{Blocked, HeldSlot, Installs, SlotCore, status_after};
use crate::runtime::wait::Held;

mod call;
mod lifecycle;

pub(crate) use call::Call;
use call::{Queued, Step};
pub(crate) use lifecycle::AsyncLifecycle;

/// What the holder of an async slot gets: the instance, `None` for good once a panic of its
/// handler lost it (restart or replace the service then).
pub(crate) struct Lot<Req, Resp> {
    instance: Option<BoxAsyncInstance<Req, Resp>>,
}

/// Where one async service lives.
pub(crate) struct AsyncSlot<Req, Resp> {
    /// What every kind of slot keeps beside its instance.
    pub(crate) core: SlotCore,
    /// The instance, moved to whoever holds the slot.
    gate: Gate<Lot<Req, Resp>>,
    /// The runtime the service was registered on: where synchronous callers drive its futures,
    /// and where work whose caller went away is finished.
    runtime: Runtime,
    /// What its hooks and handler are given (made once: a call clones nothing).
    ctx: AsyncContext,
}

/// The slot, held by a chain of calls (for the lifecycle); released when dropped.
pub(crate) struct AsyncEntered<Req: Send + 'static, Resp: Send + 'static> {
    slot: Arc<AsyncSlot<Req, Resp>>,
    /// Always `Some` until dropped.
    lot: Option<Box<Lot<Req, Resp>>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for AsyncEntered<Req, Resp> {
    fn drop(&mut self) {
        if let Some(lot) = self.lot.take() {
            self.slot.gate.release(lot);
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> AsyncEntered<Req, Resp> {
    fn lot(&mut self) -> &mut Lot<Req, Resp> {
        match self.lot.as_deref_mut() {
            Some(lot) => lot,
            None => unreachable!("an entered slot holds its lot until dropped"),
        }
    }

    /// Puts `instance` in the slot and returns the one it replaces.
    pub(crate) fn swap(
        &mut self,
        instance: Option<BoxAsyncInstance<Req, Resp>>,
    ) -> Option<BoxAsyncInstance<Req, Resp>> {
        self.slot.core.swapped();
        std::mem::replace(&mut self.lot().instance, instance)
    }

    /// The instance, for its state plumbing; `None` if a panic of its handler lost it.
    pub(crate) fn plumbing(&self) -> Option<&dyn Plumbing> {
        self.lot.as_deref()?.instance.as_deref()?.plumbing()
    }

    fn dependencies(&self) -> Vec<String> {
        self.plumbing().map(|p| p.dependencies()).unwrap_or_default()
    }

    /// Runs `start` or `stop` on the current instance, panics caught, leaving the status as it
    /// is (see the synchronous slot's `invoke`).
    pub(crate) async fn invoke_async(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        let span = tracing::info_span!("hook", service = %self.slot.core.name, %hook);
        let token = self.slot.gate.owner();
        let service = Arc::clone(&self.slot.core.name);
        let hook_future = match self.lot().instance.as_deref_mut() {
            Some(instance) => match hook {
                Hook::Stop => instance.stop(),
                _ => instance.start(),
            },
            None => None,
        };
        let Some(hook_future) = hook_future else {
            return Err(LifecycleError::InstanceLost {
                service: service.to_string(),
            });
        };
        let outcome = CatchUnwind(std::pin::pin!(chain::within(token, hook_future).instrument(span))).await;
        crate::runtime::error::hook_outcome(&service, hook, outcome)
    }

    /// Runs a hook and records the outcome: Running or Stopped, Failed on an error or a panic.
    pub(crate) async fn run_hook_async(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        let result = self.invoke_async(hook).await;
        self.set_status(status_after(hook, &result));
        result
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> AsyncSlot<Req, Resp> {
    pub(crate) fn new<S>(
        name: Arc<str>,
        service: S,
        kernel: Weak<Shared>,
        generation: u64,
        runtime: Runtime,
    ) -> Arc<Self>
    where
        S: AsyncHandler<Request = Req, Response = Resp>,
    {
        let ctx = AsyncContext::new(kernel.clone(), Arc::clone(&name));
        Arc::new(Self {
            gate: Gate::new(Lot {
                instance: Some(super::handler::boxed(service, ctx.clone())),
            }),
            ctx,
            core: SlotCore::new(name, generation),
            runtime,
        })
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.core.name
    }

    pub(crate) fn status(&self) -> Status {
        self.core.status()
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Takes the slot for chain `me`, in arrival order, waiting at most `timeout`; refused if
    /// the chain holds it already or waiting would close a cycle of waits.
    pub(crate) async fn enter(
        self: &Arc<Self>,
        me: u64,
        timeout: Option<Duration>,
    ) -> Result<AsyncEntered<Req, Resp>, Blocked> {
        if self.gate.owner() == me {
            return Err(Blocked::Reentry);
        }
        let lot = match self.gate.try_take(me) {
            Some(lot) => lot,
            None => {
                let mut queued = None;
                std::future::poll_fn(|cx| match &mut queued {
                    None => match Queued::new(self, me, false, timeout, cx) {
                        Ok(waiting) => queued.insert(waiting).poll_lot(cx),
                        Err(blocked) => Poll::Ready(Err(blocked)),
                    },
                    Some(waiting) => waiting.poll_lot(cx),
                })
                .await?
            }
        };
        Ok(AsyncEntered {
            slot: Arc::clone(self),
            lot: Some(lot),
        })
    }

    /// Calls the service: enters (the request is not delivered if the wait fails), then runs
    /// the handler to completion — on the runtime if the caller's future is dropped meanwhile.
    pub(crate) fn call(self: Arc<Self>, request: Req, timeout: Option<Duration>) -> Call<Req, Resp> {
        Call {
            slot: self,
            step: Step::Enter { request, timeout },
        }
    }

    /// The end of a call: the instance goes back (or, after a panic, the service is Failed and
    /// the instance is gone) and the slot is released.
    #[inline]
    fn settle(&self, mut lot: Box<Lot<Req, Resp>>, served: Served<Resp>) -> Result<Resp, CallError> {
        match served {
            Ok(response) => {
                self.gate.release(lot);
                Ok(response)
            }
            Err(panic) => {
                let error = self.panicked(&*panic);
                lot.instance = None;
                self.gate.release(lot);
                Err(error)
            }
        }
    }

    /// The call cannot be served (the service is not running, or was lost): release the slot.
    #[cold]
    fn refuse(&self, lot: Box<Lot<Req, Resp>>, status: Status) -> CallError {
        self.gate.release(lot);
        CallError::NotRunning {
            service: self.core.name.to_string(),
            status,
        }
    }

    #[cold]
    fn panicked(&self, panic: &(dyn std::any::Any + Send)) -> CallError {
        self.core.set_status(Status::Failed);
        let message = panic_message(panic);
        tracing::error!(service = %self.core.name, %message, "async handler panicked; service marked failed");
        if let Some(kernel) = self.ctx.shared().upgrade() {
            kernel.report_failure(&self.core.name, self.core.epoch());
        }
        CallError::Panicked {
            service: self.core.name.to_string(),
            message,
        }
    }

    /// Waits, from synchronous code, for `future` on this slot's runtime.
    pub(crate) fn wait<T>(&self, future: impl std::future::Future<Output = T>) -> Result<T, WouldBlockRuntime> {
        chain::block_on(&self.runtime, future)
    }

    fn would_block(&self) -> CallError {
        CallError::WouldBlockRuntime {
            service: self.core.name.to_string(),
        }
    }

    /// Calls the service from synchronous code.
    pub(crate) fn call_blocking(self: &Arc<Self>, request: Req, timeout: Option<Duration>) -> Result<Resp, CallError> {
        let me = crate::runtime::caller::current_sync();
        let call = Arc::clone(self).call(request, timeout);
        self.wait(chain::within(me, call))
            .unwrap_or_else(|WouldBlockRuntime| Err(self.would_block()))
    }

    /// Enters from synchronous code, for the lifecycle.
    pub(crate) fn enter_blocking(
        self: &Arc<Self>,
        operation: &'static str,
    ) -> Result<AsyncEntered<Req, Resp>, LifecycleError> {
        let me = crate::runtime::caller::current_sync();
        match self.wait(self.enter(me, None)) {
            Ok(Ok(entered)) => Ok(entered),
            Ok(Err(blocked)) => Err(blocked.into_lifecycle_error(&self.core.name, operation)),
            Err(WouldBlockRuntime) => Err(LifecycleError::WouldBlockRuntime {
                service: self.core.name.to_string(),
            }),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Held for AsyncSlot<Req, Resp> {
    fn holder(&self) -> u64 {
        self.gate.owner()
    }

    fn service(&self) -> &str {
        &self.core.name
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> HeldSlot for AsyncEntered<Req, Resp> {
    type Instance = Option<BoxAsyncInstance<Req, Resp>>;

    fn core(&self) -> &SlotCore {
        &self.slot.core
    }

    fn plumbing(&self) -> Option<&dyn Plumbing> {
        AsyncEntered::plumbing(self)
    }

    /// The hook's future, waited for on this thread (the blocking pool, or a thread outside
    /// the runtime: the slot was entered here, so waiting here is allowed).
    fn invoke(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        let runtime = self.slot.runtime.clone();
        let service = Arc::clone(&self.slot.core.name);
        chain::block_on(&runtime, self.invoke_async(hook)).unwrap_or_else(|WouldBlockRuntime| {
            Err(LifecycleError::WouldBlockRuntime {
                service: service.to_string(),
            })
        })
    }

    fn swap(&mut self, instance: Self::Instance) -> Self::Instance {
        AsyncEntered::swap(self, instance)
    }
}

impl<S: AsyncHandler> Installs<S> for AsyncEntered<S::Request, S::Response> {
    fn instance_of(&self, service: S) -> Self::Instance {
        Some(super::handler::boxed(service, self.slot.ctx.clone()))
    }
}

impl CallsByName for AsyncSlot<Event, Reply> {
    fn call(self: Arc<Self>, event: Event, timeout: Option<Duration>) -> Result<Reply, CallError> {
        self.call_blocking(event, timeout)
    }
}
