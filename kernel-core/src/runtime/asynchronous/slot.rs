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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle as Runtime;
use tracing::Instrument;

use super::AsyncContext;
use super::chain::{self, CatchUnwind, WouldBlockRuntime};
use super::gate::{Gate, Ticket};
use super::handler::{AsyncHandler, BoxAsyncInstance, Served};
use crate::boxed::BoxError;
use crate::runtime::error::{CallError, Hook, LifecycleError, panic_message};
use crate::runtime::kernel::Shared;
use crate::runtime::service::Status;
use crate::runtime::slot::{
    Blocked, ExportForSave, Exported, Lifecycle, Plumbing, SaveInFlight, StopRace, export_for_save_now, export_now,
};
use crate::runtime::sync::fresh_token;
use crate::runtime::wait::{self, Held, Waiting};
use crate::state::EncodedState;

/// What the holder of an async slot gets: the instance, `None` for good once a panic of its
/// handler lost it (restart or replace the service then).
pub(crate) struct Lot<Req, Resp> {
    instance: Option<BoxAsyncInstance<Req, Resp>>,
}

/// Where one async service lives.
pub(crate) struct AsyncSlot<Req, Resp> {
    name: Arc<str>,
    /// The instance, moved to whoever holds the slot.
    gate: Gate<Lot<Req, Resp>>,
    status: AtomicU8,
    /// The generation of the last state exported (see the synchronous slot).
    generation: AtomicU64,
    /// Which instance the slot holds: one more at every swap.
    epoch: AtomicU64,
    /// A stop that outlived its timeout is still running.
    late_stop: AtomicBool,
    /// Saves exported and not yet written.
    saves_in_flight: Arc<AtomicU32>,
    kernel: Weak<Shared>,
    /// The runtime the service was registered on: where synchronous callers drive its futures,
    /// and where work whose caller went away is finished.
    runtime: Runtime,
    /// What its hooks and handler are given (made once: a call clones nothing).
    ctx: AsyncContext,
}

/// Why an async slot has no instance.
const LOST: &str = "the instance was lost when its handler panicked; restart or replace the service";

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

    pub(crate) fn status(&self) -> Status {
        self.slot.status()
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.slot.status.store(status.to_u8(), Ordering::Release);
    }

    pub(crate) fn next_generation(&self) -> u64 {
        crate::runtime::slot::next_generation(&self.slot.generation)
    }

    /// Which instance the slot holds.
    pub(crate) fn epoch(&self) -> u64 {
        self.slot.epoch()
    }

    /// Puts `instance` in the slot and returns the one it replaces.
    pub(crate) fn swap(
        &mut self,
        instance: Option<BoxAsyncInstance<Req, Resp>>,
    ) -> Option<BoxAsyncInstance<Req, Resp>> {
        self.slot.epoch.fetch_add(1, Ordering::Release);
        std::mem::replace(&mut self.lot().instance, instance)
    }

    /// Puts a new instance of `service` in the slot and returns the one it replaces.
    pub(crate) fn install<S>(&mut self, service: S) -> Option<BoxAsyncInstance<Req, Resp>>
    where
        S: AsyncHandler<Request = Req, Response = Resp>,
    {
        let instance = super::handler::boxed(service, self.slot.ctx.clone());
        self.swap(Some(instance))
    }

    /// The instance, for its state plumbing; an error if a panic of its handler lost it.
    pub(crate) fn plumbing(&self) -> Result<&dyn Plumbing, BoxError> {
        match self.lot.as_deref().and_then(|lot| lot.instance.as_deref()) {
            Some(instance) => instance.plumbing().ok_or_else(|| LOST.into()),
            None => Err(LOST.into()),
        }
    }

    fn dependencies(&self) -> Vec<String> {
        self.plumbing().map(|p| p.dependencies()).unwrap_or_default()
    }

    /// Runs `start` or `stop` on the current instance, panics caught, leaving the status as it
    /// is (see the synchronous slot's `invoke`).
    pub(crate) async fn invoke(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        let span = tracing::info_span!("hook", service = %self.slot.name, %hook);
        let token = self.slot.gate.owner();
        let service = self.slot.name.to_string();
        let hook_future = match self.lot().instance.as_deref_mut() {
            Some(instance) => match hook {
                Hook::Stop => instance.stop(),
                _ => instance.start(),
            },
            None => None,
        };
        let Some(hook_future) = hook_future else {
            return Err(LifecycleError::HookFailed {
                service,
                hook,
                source: LOST.into(),
            });
        };
        let outcome = CatchUnwind(std::pin::pin!(chain::within(token, hook_future).instrument(span))).await;
        crate::runtime::error::hook_outcome(service, hook, outcome)
    }

    /// Runs a hook and records the outcome: Running or Stopped, Failed on an error or a panic.
    pub(crate) async fn run_hook(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        let result = self.invoke(hook).await;
        self.set_status(match (&result, hook) {
            (Ok(()), Hook::Stop) => Status::Stopped,
            (Ok(()), _) => Status::Running,
            (Err(_), _) => Status::Failed,
        });
        result
    }
}

/// A wait in a slot's queue, in arrival order, at most until its deadline; leaves the queue
/// (passing on the slot if it was granted meanwhile) when dropped.
struct Queued<Req: Send + 'static, Resp: Send + 'static> {
    slot: Arc<AsyncSlot<Req, Resp>>,
    ticket: Option<Ticket>,
    timeout: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    /// The wait, registered for cycle detection (not for a top-level caller, which holds
    /// nothing and so cannot close a cycle).
    _registered: Option<Waiting>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Queued<Req, Resp> {
    /// Queues chain `me` (registered in the wait table first unless `unheld`: refused if
    /// waiting would close a cycle).
    fn new(
        slot: &Arc<AsyncSlot<Req, Resp>>,
        me: u64,
        unheld: bool,
        timeout: Option<Duration>,
        cx: &mut Context<'_>,
    ) -> Result<Self, Blocked> {
        let registered = match unheld {
            true => None,
            false => Some(wait::begin(me, Arc::clone(slot) as Arc<dyn Held>).map_err(Blocked::Cycle)?),
        };
        Ok(Self {
            ticket: Some(slot.gate.enqueue(me, cx.waker())),
            slot: Arc::clone(slot),
            timeout: timeout.map(|bound| (bound, Box::pin(tokio::time::sleep(bound)))),
            _registered: registered,
        })
    }

    fn poll_lot(&mut self, cx: &mut Context<'_>) -> Poll<Result<Box<Lot<Req, Resp>>, Blocked>> {
        let Some(ticket) = &self.ticket else {
            unreachable!("a wait is not polled after it ended")
        };
        if let Some(lot) = self.slot.gate.poll_ticket(ticket, cx) {
            self.ticket = None;
            return Poll::Ready(Ok(lot));
        }
        if let Some((bound, sleep)) = &mut self.timeout
            && sleep.as_mut().poll(cx).is_ready()
        {
            let bound = *bound;
            if let Some(ticket) = self.ticket.take() {
                self.slot.gate.cancel(ticket);
            }
            return Poll::Ready(Err(Blocked::TimedOut(bound)));
        }
        Poll::Pending
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for Queued<Req, Resp> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.slot.gate.cancel(ticket);
        }
    }
}

/// The future of a call to an async service ([`AsyncSlot::call`]).
pub(crate) struct Call<Req: Send + 'static, Resp: Send + 'static> {
    slot: Arc<AsyncSlot<Req, Resp>>,
    step: Step<Req, Resp>,
}

enum Step<Req: Send + 'static, Resp: Send + 'static> {
    /// Not polled yet.
    Enter {
        request: Req,
        timeout: Option<Duration>,
    },
    /// Waiting for the slot, the request not delivered.
    Queued {
        request: Req,
        chain: u64,
        queued: Queued<Req, Resp>,
    },
    /// The handler returned `Pending`: its work, in the lot, goes on.
    Serving {
        lot: Box<Lot<Req, Resp>>,
        chain: u64,
    },
    Done,
}

// The future is never pinned structurally: the handler's work is in the instance's own storage.
impl<Req: Send + 'static, Resp: Send + 'static> Unpin for Call<Req, Resp> {}

impl<Req: Send + 'static, Resp: Send + 'static> Future for Call<Req, Resp> {
    type Output = Result<Resp, CallError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match &mut this.step {
            Step::Enter { .. } => {
                let (chain, unheld) = match chain::joined() {
                    Some(chain) => (chain, false),
                    None => (fresh_token(), true),
                };
                if let Some(lot) = this.slot.gate.try_take(chain) {
                    let Step::Enter { request, .. } = std::mem::replace(&mut this.step, Step::Done) else {
                        unreachable!()
                    };
                    return this.serve(lot, request, chain, cx);
                }
                this.enter_contended(chain, unheld, cx)
            }
            Step::Queued { queued, chain, .. } => {
                let chain = *chain;
                match queued.poll_lot(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(blocked)) => {
                        this.step = Step::Done;
                        Poll::Ready(Err(blocked.into_call_error(&this.slot.name)))
                    }
                    Poll::Ready(Ok(lot)) => {
                        let Step::Queued { request, .. } = std::mem::replace(&mut this.step, Step::Done) else {
                            unreachable!()
                        };
                        this.serve(lot, request, chain, cx)
                    }
                }
            }
            Step::Serving { lot, chain } => {
                let Some(instance) = lot.instance.as_deref_mut() else {
                    unreachable!("a lot being served has its instance")
                };
                let served = std::task::ready!(instance.resume(*chain, cx));
                let Step::Serving { lot, .. } = std::mem::replace(&mut this.step, Step::Done) else {
                    unreachable!()
                };
                Poll::Ready(this.slot.settle(lot, served))
            }
            Step::Done => panic!("a call's future polled after it completed"),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Call<Req, Resp> {
    /// The slot was busy (or others wait): refuse a loop, else queue.
    #[cold]
    #[inline(never)]
    fn enter_contended(&mut self, chain: u64, unheld: bool, cx: &mut Context<'_>) -> Poll<Result<Resp, CallError>> {
        if !unheld && self.slot.gate.owner() == chain {
            self.step = Step::Done;
            return Poll::Ready(Err(Blocked::Reentry.into_call_error(&self.slot.name)));
        }
        let Step::Enter { request, timeout } = std::mem::replace(&mut self.step, Step::Done) else {
            unreachable!()
        };
        match Queued::new(&self.slot, chain, unheld, timeout, cx) {
            Ok(queued) => {
                self.step = Step::Queued { request, chain, queued };
                // Polled at once: the slot may have been granted while queueing.
                Pin::new(self).poll(cx)
            }
            Err(blocked) => Poll::Ready(Err(blocked.into_call_error(&self.slot.name))),
        }
    }

    /// The slot is held: serve the request, polling the handler once here.
    #[inline]
    fn serve(
        &mut self,
        mut lot: Box<Lot<Req, Resp>>,
        request: Req,
        chain: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Resp, CallError>> {
        let status = self.slot.status();
        let instance = match lot.instance.as_deref_mut() {
            Some(instance) if status == Status::Running => instance,
            Some(_) => return Poll::Ready(Err(self.slot.refuse(lot, status))),
            None => return Poll::Ready(Err(self.slot.refuse(lot, Status::Failed))),
        };
        match instance.serve(request, chain, cx) {
            Poll::Ready(served) => Poll::Ready(self.slot.settle(lot, served)),
            Poll::Pending => {
                self.step = Step::Serving { lot, chain };
                Poll::Pending
            }
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for Call<Req, Resp> {
    fn drop(&mut self) {
        if let Step::Serving { .. } = self.step {
            let Step::Serving { lot, chain } = std::mem::replace(&mut self.step, Step::Done) else {
                unreachable!()
            };
            // The caller went away mid-handler: the work, which owns the instance, is finished
            // on the runtime, and the slot released then.
            let finish = Finish {
                slot: Arc::clone(&self.slot),
                lot: Some(lot),
                chain,
            };
            drop(self.slot.runtime.spawn(finish));
        }
    }
}

/// The rest of a call whose caller went away.
struct Finish<Req: Send + 'static, Resp: Send + 'static> {
    slot: Arc<AsyncSlot<Req, Resp>>,
    lot: Option<Box<Lot<Req, Resp>>>,
    chain: u64,
}

impl<Req: Send + 'static, Resp: Send + 'static> Unpin for Finish<Req, Resp> {}

impl<Req: Send + 'static, Resp: Send + 'static> Future for Finish<Req, Resp> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(instance) = this.lot.as_deref_mut().and_then(|lot| lot.instance.as_deref_mut()) else {
            return Poll::Ready(());
        };
        let served = std::task::ready!(instance.resume(this.chain, cx));
        if let Some(lot) = this.lot.take() {
            let _ = this.slot.settle(lot, served);
        }
        Poll::Ready(())
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for Finish<Req, Resp> {
    fn drop(&mut self) {
        // Dropped unfinished (the runtime is shutting down): the work and the instance it owns
        // are gone; the slot is released without it.
        if let Some(mut lot) = self.lot.take() {
            lot.instance = None;
            self.slot.gate.release(lot);
        }
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
            name,
            status: AtomicU8::new(Status::Created.to_u8()),
            generation: AtomicU64::new(generation),
            epoch: AtomicU64::new(0),
            late_stop: AtomicBool::new(false),
            saves_in_flight: Arc::default(),
            kernel,
            runtime,
        })
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(crate) fn kernel(&self) -> &Weak<Shared> {
        &self.kernel
    }

    /// Which instance the slot holds: one more at every swap.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Waits until every save exported from this slot is written.
    pub(crate) fn wait_for_saves(&self) {
        while self.saves_in_flight.load(Ordering::Acquire) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(crate) fn check_no_late_stop(&self) -> Result<(), LifecycleError> {
        if self.late_stop.load(Ordering::Acquire) {
            return Err(LifecycleError::StopInProgress {
                service: self.name.to_string(),
            });
        }
        Ok(())
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
            service: self.name.to_string(),
            status,
        }
    }

    #[cold]
    fn panicked(&self, panic: &(dyn std::any::Any + Send)) -> CallError {
        self.status.store(Status::Failed.to_u8(), Ordering::Release);
        let message = panic_message(panic);
        tracing::error!(service = %self.name, %message, "async handler panicked; service marked failed");
        if let Some(kernel) = self.kernel.upgrade() {
            kernel.report_failure(&self.name, self.epoch.load(Ordering::Acquire));
        }
        CallError::Panicked {
            service: self.name.to_string(),
            message,
        }
    }

    /// Waits, from synchronous code, for `future` on this slot's runtime.
    pub(crate) fn wait<T>(&self, future: impl std::future::Future<Output = T>) -> Result<T, WouldBlockRuntime> {
        chain::block_on(&self.runtime, future)
    }

    fn would_block(&self) -> CallError {
        CallError::WouldBlockRuntime {
            service: self.name.to_string(),
        }
    }

    /// Calls the service from synchronous code.
    pub(crate) fn call_blocking(self: &Arc<Self>, request: Req, timeout: Option<Duration>) -> Result<Resp, CallError> {
        let me = chain::current_sync();
        let call = Arc::clone(self).call(request, timeout);
        self.wait(chain::within(me, call))
            .unwrap_or_else(|WouldBlockRuntime| Err(self.would_block()))
    }

    /// Enters from synchronous code, for the lifecycle.
    pub(crate) fn enter_blocking(self: &Arc<Self>) -> Result<AsyncEntered<Req, Resp>, LifecycleError> {
        let me = chain::current_sync();
        let reentrant = || LifecycleError::Reentrant {
            service: self.name.to_string(),
        };
        match self.wait(self.enter(me, None)) {
            Ok(Ok(entered)) => Ok(entered),
            Ok(Err(Blocked::Cycle(cycle))) => Err(LifecycleError::WouldDeadlock {
                operation: "lifecycle",
                cycle,
            }),
            Ok(Err(_)) => Err(reentrant()),
            Err(WouldBlockRuntime) => Err(LifecycleError::WouldBlockRuntime {
                service: self.name.to_string(),
            }),
        }
    }

    /// Runs a hook, from synchronous code.
    fn run_hook_blocking(self: &Arc<Self>, hook: Hook) -> Result<(), LifecycleError> {
        self.check_no_late_stop()?;
        let mut entered = self.enter_blocking()?;
        self.wait(entered.run_hook(hook)).unwrap_or_else(|WouldBlockRuntime| {
            Err(LifecycleError::WouldBlockRuntime {
                service: self.name.to_string(),
            })
        })
    }

    fn export_entered(&self, entered: &AsyncEntered<Req, Resp>) -> Result<(EncodedState, u64), LifecycleError> {
        let instance = entered.plumbing().map_err(|source| LifecycleError::Export {
            service: self.name.to_string(),
            source,
        })?;
        export_now(&self.name, instance, || entered.next_generation())
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Held for AsyncSlot<Req, Resp> {
    fn holder(&self) -> u64 {
        self.gate.owner()
    }

    fn service(&self) -> &str {
        &self.name
    }
}

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
                        let _ = entered.run_hook(Hook::Stop).await;
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
        let result = self
            .0
            .wait(entered.invoke(Hook::Stop))
            .unwrap_or_else(|WouldBlockRuntime| {
                Err(LifecycleError::WouldBlockRuntime {
                    service: self.0.name.to_string(),
                })
            });
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
