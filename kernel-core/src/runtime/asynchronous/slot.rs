//! An async service's slot: the one place its current instance lives, behind tokio's fair
//! mutex. Callers (async ones awaiting, synchronous ones waiting off the workers) take it in the
//! order they arrived; a replacement that holds it makes them wait, and they are served by the
//! new version.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::Handle as Runtime;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tracing::Instrument;

use super::AsyncContext;
use super::chain::{self, CatchUnwind, WouldBlockRuntime};
use super::handler::BoxAsyncInstance;
use super::handler::BoxFuture;
use crate::boxed::BoxError;
use crate::runtime::error::{CallError, Hook, LifecycleError, panic_message};
use crate::runtime::kernel::Shared;
use crate::runtime::service::Status;
use crate::runtime::slot::{
    Blocked, ExportForSave, Exported, Lifecycle, Plumbing, SaveInFlight, StopRace, export_for_save_now, export_now,
};
use crate::runtime::wait::{self, Held};
use crate::state::EncodedState;

/// Where one async service lives.
pub(crate) struct AsyncSlot<Req, Resp> {
    name: Arc<str>,
    /// The instance; `None` while a call has it out (the mutex is held then), or for good if its
    /// handler panicked (its future, which owned it, unwound): restart or replace it.
    instance: Arc<Mutex<Option<BoxAsyncInstance<Req, Resp>>>>,
    status: AtomicU8,
    /// The chain token of the holder, 0 when free.
    owner: AtomicU64,
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

/// A call the service has taken: its handler's work, which owns the instance, and the slot,
/// held. Awaited by the caller; if the caller goes away first, the rest of the work is spawned
/// onto the runtime, which puts the instance back and releases the slot — so a taken request is
/// always completed, once.
struct InFlight<'r, Req: Send + 'static, Resp: Send + 'static> {
    work: Option<CatchUnwind<Serving<Req, Resp>>>,
    entered: Option<AsyncEntered<Req, Resp>>,
    runtime: &'r Runtime,
}

/// A handler's work, owning the instance it hands back.
type Serving<Req, Resp> = BoxFuture<'static, (BoxAsyncInstance<Req, Resp>, Resp)>;

type Served<Req, Resp> = Result<(BoxAsyncInstance<Req, Resp>, Resp), Box<dyn std::any::Any + Send>>;

/// The end of a call: the instance goes back (or, after a panic, the service is Failed) and the
/// slot is released.
fn settle<Req: Send + 'static, Resp: Send + 'static>(
    entered: AsyncEntered<Req, Resp>,
    served: Served<Req, Resp>,
) -> Result<Resp, CallError> {
    match served {
        Ok((instance, response)) => {
            let mut entered = entered;
            *entered.instance = Some(instance);
            Ok(response)
        }
        Err(panic) => Err(entered.slot.panicked(&entered, &*panic)),
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> std::future::Future for InFlight<'_, Req, Resp> {
    type Output = Result<Resp, CallError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let Some(work) = self.work.as_mut() else {
            unreachable!("a call is not polled after it completed")
        };
        let served = std::task::ready!(std::pin::Pin::new(work).poll(cx));
        self.work = None;
        let Some(entered) = self.entered.take() else {
            unreachable!("the slot is held until the call completes")
        };
        std::task::Poll::Ready(settle(entered, served))
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for InFlight<'_, Req, Resp> {
    fn drop(&mut self) {
        if let (Some(work), Some(entered)) = (self.work.take(), self.entered.take()) {
            drop(self.runtime.spawn(async move {
                let _ = settle(entered, work.await);
            }));
        }
    }
}

/// The slot, held by a chain of calls; clears the owner when dropped.
pub(crate) struct AsyncEntered<Req, Resp> {
    slot: Arc<AsyncSlot<Req, Resp>>,
    pub(crate) instance: OwnedMutexGuard<Option<BoxAsyncInstance<Req, Resp>>>,
}

impl<Req, Resp> Drop for AsyncEntered<Req, Resp> {
    fn drop(&mut self) {
        self.slot.owner.store(0, Ordering::Relaxed);
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> AsyncEntered<Req, Resp> {
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
        std::mem::replace(&mut *self.instance, instance)
    }

    /// The instance, for its state plumbing; an error if a panic of its handler lost it.
    pub(crate) fn plumbing(&self) -> Result<&dyn Plumbing, BoxError> {
        match self.instance.as_deref() {
            Some(instance) => Ok(instance),
            None => Err(LOST.into()),
        }
    }

    /// Runs `start` or `stop` on the current instance, panics caught, leaving the status as it
    /// is (see the synchronous slot's `invoke`).
    pub(crate) async fn invoke(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        let slot = Arc::clone(&self.slot);
        let ctx = slot.ctx.clone();
        let span = tracing::info_span!("hook", service = %slot.name, %hook);
        let token = slot.owner.load(Ordering::Relaxed);
        let service = slot.name.to_string();
        let Some(instance) = self.instance.as_deref_mut() else {
            return Err(LifecycleError::HookFailed {
                service,
                hook,
                source: LOST.into(),
            });
        };
        let hook_future = match hook {
            Hook::Stop => instance.stop(&ctx),
            _ => instance.start(&ctx),
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

impl<Req: Send + 'static, Resp: Send + 'static> AsyncSlot<Req, Resp> {
    pub(crate) fn new(
        name: Arc<str>,
        instance: BoxAsyncInstance<Req, Resp>,
        kernel: Weak<Shared>,
        generation: u64,
        runtime: Runtime,
    ) -> Arc<Self> {
        Arc::new(Self {
            ctx: AsyncContext::new(kernel.clone(), Arc::clone(&name)),
            name,
            instance: Arc::new(Mutex::new(Some(instance))),
            status: AtomicU8::new(Status::Created.to_u8()),
            owner: AtomicU64::new(0),
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
        if self.owner.load(Ordering::Relaxed) == me {
            return Err(Blocked::Reentry);
        }
        let instance = match Arc::clone(&self.instance).try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                let waiting = wait::begin(me, Arc::clone(self) as Arc<dyn Held>).map_err(Blocked::Cycle)?;
                let lock = Arc::clone(&self.instance).lock_owned();
                let guard = match timeout {
                    None => lock.await,
                    Some(bound) => tokio::time::timeout(bound, lock)
                        .await
                        .map_err(|_| Blocked::TimedOut(bound))?,
                };
                drop(waiting);
                guard
            }
        };
        self.owner.store(me, Ordering::Relaxed);
        Ok(AsyncEntered {
            slot: Arc::clone(self),
            instance,
        })
    }

    /// Calls the service: enters (the request is not delivered if the wait fails), then runs
    /// the handler to completion — on the runtime if the caller's future is dropped meanwhile.
    pub(crate) async fn call(self: &Arc<Self>, request: Req, timeout: Option<Duration>) -> Result<Resp, CallError> {
        let me = chain::current();
        let mut entered = self
            .enter(me, timeout)
            .await
            .map_err(|blocked| blocked.into_call_error(&self.name))?;
        if entered.status() != Status::Running {
            return Err(CallError::NotRunning {
                service: self.name.to_string(),
                status: entered.status(),
            });
        }
        let Some(instance) = entered.instance.take() else {
            return Err(CallError::NotRunning {
                service: self.name.to_string(),
                status: Status::Failed,
            });
        };
        let work = CatchUnwind(instance.serve(request, self.ctx.clone(), me));
        InFlight {
            work: Some(work),
            entered: Some(entered),
            runtime: &self.runtime,
        }
        .await
    }

    #[cold]
    fn panicked(&self, entered: &AsyncEntered<Req, Resp>, panic: &(dyn std::any::Any + Send)) -> CallError {
        entered.set_status(Status::Failed);
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
        let slot = Arc::clone(self);
        self.wait(chain::within(me, async move { slot.call(request, timeout).await }))
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
        self.owner.load(Ordering::Relaxed)
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
        let of = |instance: &Option<BoxAsyncInstance<Req, Resp>>| {
            instance.as_deref().map(|i| i.dependencies()).unwrap_or_default()
        };
        if let Ok(instance) = self.0.instance.try_lock() {
            return of(&instance);
        }
        match self.0.enter_blocking() {
            Ok(entered) => of(&entered.instance),
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
        self.0.owner.load(Ordering::Relaxed) == chain::current_sync()
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
