//! A service's slot: the one place its current instance lives.
//!
//! Callers, lifecycle changes and replacements all go through the slot's mutex, so one handler
//! runs at a time with `&mut self`, and a replacement that holds the mutex makes calls wait (not
//! fail) until the new instance is in. Handles keep an `Arc` of the slot, so they survive a
//! replacement and skip the name lookup.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::runtime::context::Context;
use crate::runtime::error::{CallError, Hook, LifecycleError, panic_message};
use crate::runtime::kernel::Shared;
use crate::runtime::service::{Handler, Status};
use crate::runtime::sync::caller_token;
use crate::runtime::wait::{self, Held};

mod held;
mod instance;
mod lifecycle;

#[cfg(feature = "tokio")]
pub(crate) use held::status_after;
pub(crate) use held::{HeldSlot, Installs};
pub(crate) use instance::{BoxInstance, ExportError, Plumbing};
#[cfg(feature = "tokio")]
pub(crate) use lifecycle::{ExportForSave, export_for_save_now};
pub(crate) use lifecycle::{Exported, Lifecycle, StopRace, export_now};

/// The slot a service of type `S` lives in.
pub(crate) type SlotOf<S> = Slot<<S as Handler>::Request, <S as Handler>::Response>;

/// Where one service lives.
/// Aligned to its own cache lines: slots of different services, allocated side by side, must
/// not share one (two threads calling two services would otherwise slow each other down).
#[repr(align(128))]
pub(crate) struct Slot<Req, Resp> {
    name: Arc<str>,
    /// Token of the thread inside the slot's mutex, so that a thread calling back into a slot it
    /// already holds gets an error instead of deadlocking. On a cache line of its own: the holder
    /// writes it twice per call, and on the lock's line each write would take the line away from
    /// the callers waiting on the lock.
    owner: OwnLine<AtomicU64>,
    /// A `Status`, written only with the mutex held; readable without it.
    status: AtomicU8,
    instance: Mutex<BoxInstance<Req, Resp>>,
    kernel: Weak<Shared>,
    /// The slot itself, for the wait table when a caller has to wait (see `wait`).
    this: Weak<Self>,
    /// The generation of the last state exported (saved or moved across a replacement): each
    /// export takes the next one, under the slot's mutex, so generations follow export order.
    generation: AtomicU64,
    /// Which instance the slot holds: one more at every swap (replacement, restart), so that a
    /// restart planned for a failed instance can tell it is no longer there.
    epoch: AtomicU64,
    /// A stop hook outlived its timeout and still holds the slot: lifecycle changes are refused
    /// (instead of waiting for it) until it returns.
    late_stop: std::sync::atomic::AtomicBool,
    /// Saves exported (under the mutex) and not yet written: a restart waits for them.
    saves_in_flight: Arc<std::sync::atomic::AtomicU32>,
}

/// A value alone on its cache lines (128 bytes: x86 fetches lines in pairs).
#[repr(align(128))]
struct OwnLine<T>(T);

/// A save exported from a slot and not yet written; dropping it says the write is over.
pub(crate) struct SaveInFlight(Arc<std::sync::atomic::AtomicU32>);

impl SaveInFlight {
    /// Counts a save in `counter` until the returned guard drops.
    pub(crate) fn begin(counter: &Arc<std::sync::atomic::AtomicU32>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(counter))
    }
}

impl Drop for SaveInFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes the next generation from a slot's counter, the slot held (so a load and a store suffice,
/// and generations follow the order of exports). Saturating: a store that claimed `u64::MAX`
/// (see SECURITY.md) makes saves refused as stale, not wrap to 0 or panic.
pub(crate) fn next_generation(counter: &AtomicU64) -> u64 {
    let next = counter.load(Ordering::Relaxed).saturating_add(1);
    counter.store(next, Ordering::Relaxed);
    next
}

/// Why a thread cannot take a slot.
#[derive(Debug)]
pub(crate) enum Blocked {
    /// This thread already holds it (a self-call, or A → B → A on one thread).
    Reentry,
    /// Waiting would close a cycle of threads each waiting for a slot another holds; the
    /// services along it.
    Cycle(Vec<String>),
    /// The caller's bound on the wait passed.
    TimedOut(Duration),
}

impl Blocked {
    /// The error a lifecycle operation (named by `operation`) gets for it.
    #[cold]
    pub(crate) fn into_lifecycle_error(self, service: &str, operation: &'static str) -> LifecycleError {
        match self {
            Blocked::Reentry => LifecycleError::Reentrant {
                service: service.to_owned(),
            },
            Blocked::Cycle(cycle) => LifecycleError::WouldDeadlock { operation, cycle },
            Blocked::TimedOut(timeout) => LifecycleError::StopTimeout {
                service: service.to_owned(),
                timeout,
            },
        }
    }

    /// The error a caller gets for it.
    #[cold]
    pub(crate) fn into_call_error(self, service: &str) -> CallError {
        let service = service.to_owned();
        match self {
            Blocked::Reentry => CallError::WouldDeadlock { service },
            Blocked::Cycle(cycle) => {
                tracing::warn!(
                    service,
                    cycle = %cycle.join(" -> "),
                    "call refused: its holder waits, through the services named, for one this caller holds"
                );
                CallError::WouldDeadlock { service }
            }
            Blocked::TimedOut(timeout) => CallError::Timeout { service, timeout },
        }
    }
}

/// How long a waiting caller waits before it registers its wait in the wait-for table.
const GRACE: Duration = Duration::from_micros(200);

/// The slot's mutex, held by the current thread; clears the owner when dropped.
pub(crate) struct Entered<'a, Req, Resp> {
    slot: &'a Slot<Req, Resp>,
    pub(crate) instance: MutexGuard<'a, BoxInstance<Req, Resp>>,
}

impl<Req, Resp> Drop for Entered<'_, Req, Resp> {
    fn drop(&mut self) {
        self.slot.owner.0.store(0, Ordering::Relaxed);
    }
}

impl<Req, Resp> Entered<'_, Req, Resp> {
    /// The generation of a state exported now: one more than the last (the mutex is held, so
    /// generations follow the order of exports).
    pub(crate) fn next_generation(&self) -> u64 {
        next_generation(&self.slot.generation)
    }

    pub(crate) fn status(&self) -> Status {
        Status::from_u8(self.slot.status.load(Ordering::Acquire))
    }

    /// Puts `instance` in the slot and returns the one it replaces.
    pub(crate) fn swap(&mut self, instance: BoxInstance<Req, Resp>) -> BoxInstance<Req, Resp> {
        self.slot.epoch.fetch_add(1, Ordering::Release);
        std::mem::replace(&mut *self.instance, instance)
    }

    /// Which instance the slot holds (see `Slot::epoch`).
    pub(crate) fn epoch(&self) -> u64 {
        self.slot.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.slot.status.store(status.to_u8(), Ordering::Release);
    }

    /// Runs `start` or `stop` on the current instance, panics caught, leaving the status as it
    /// is: a replacement swaps instances inside one Running period, so that nobody reading the
    /// status without the mutex sees the service stopped in between.
    pub(crate) fn invoke(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        let ctx = Context::new(&self.slot.kernel, &self.slot.name);
        let instance = &mut **self.instance;
        let _span = tracing::info_span!("hook", service = %self.slot.name, %hook).entered();
        let outcome = catch_unwind(AssertUnwindSafe(|| match hook {
            Hook::Stop => instance.stop(&ctx),
            _ => instance.start(&ctx),
        }));
        crate::runtime::error::hook_outcome(self.slot.name.to_string(), hook, outcome)
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Slot<Req, Resp> {
    /// A slot for `instance`, whose state was last saved at `generation` (0 if never).
    pub(crate) fn new(
        name: Arc<str>,
        instance: BoxInstance<Req, Resp>,
        kernel: Weak<Shared>,
        generation: u64,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            generation: AtomicU64::new(generation),
            epoch: AtomicU64::new(0),
            late_stop: std::sync::atomic::AtomicBool::new(false),
            saves_in_flight: Arc::default(),
            name,
            owner: OwnLine(AtomicU64::new(0)),
            status: AtomicU8::new(Status::Created.to_u8()),
            instance: Mutex::new(instance),
            kernel,
            this: Weak::clone(this),
        })
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Refuses a lifecycle change while a stop hook that outlived its timeout holds the slot.
    pub(crate) fn check_no_late_stop(&self) -> Result<(), LifecycleError> {
        if self.late_stop.load(Ordering::Acquire) {
            return Err(LifecycleError::StopInProgress {
                service: self.name.to_string(),
            });
        }
        Ok(())
    }

    /// Waits until every save exported from this slot has been written (or failed). Call with
    /// the slot held, so that no new export can begin; saves never wait for the slot to finish.
    pub(crate) fn wait_for_saves(&self) {
        while self.saves_in_flight.load(Ordering::Acquire) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Which instance the slot holds: one more at every swap.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The kernel the slot belongs to.
    pub(crate) fn kernel(&self) -> &Weak<Shared> {
        &self.kernel
    }

    pub(crate) fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Acquire))
    }

    /// Takes the slot's mutex for the lifecycle operation `operation`: a refusal says whether
    /// this chain holds the slot already or waiting would close a cycle.
    pub(crate) fn enter_for(&self, operation: &'static str) -> Result<Entered<'_, Req, Resp>, LifecycleError> {
        self.try_enter()
            .map_err(|blocked| blocked.into_lifecycle_error(&self.name, operation))
    }

    /// Takes the slot's mutex, unless this chain of calls already holds it or waiting for it
    /// would deadlock. Waits while another caller holds it (a running handler, a lifecycle
    /// change or a replacement).
    #[inline]
    pub(crate) fn try_enter(&self) -> Result<Entered<'_, Req, Resp>, Blocked> {
        self.try_enter_within(None)
    }

    /// [`try_enter`](Self::try_enter), waiting at most `timeout` for another holder to leave.
    #[inline]
    pub(crate) fn try_enter_within(&self, timeout: Option<Duration>) -> Result<Entered<'_, Req, Resp>, Blocked> {
        let me = caller_token();
        // The lock first, the owner only when it is taken: a thread calling back into a slot
        // it holds always finds it taken, and reading the owner before the lock would cost
        // every contended caller one more transfer of the cache line they share.
        let instance = match self.instance.try_lock() {
            Some(instance) => instance,
            None if self.owner.0.load(Ordering::Relaxed) == me => return Err(Blocked::Reentry),
            None => self.wait_to_enter(me, timeout)?,
        };
        self.owner.0.store(me, Ordering::Relaxed);
        Ok(Entered { slot: self, instance })
    }

    /// The contended path: retry briefly, then register the wait (refused if it would close a
    /// cycle) and block until the holder leaves or the timeout passes.
    #[cold]
    #[inline(never)]
    fn wait_to_enter(
        &self,
        me: u64,
        timeout: Option<Duration>,
    ) -> Result<MutexGuard<'_, BoxInstance<Req, Resp>>, Blocked> {
        let started = Instant::now();
        // A short wait, unregistered: under contention most holders leave within it, and the
        // wait-for table (one process-wide lock) is only for waits that could be a cycle. A
        // cycle cannot resolve by itself, so every thread in one still registers after this
        // grace, and the last to register still sees it.
        let grace = match timeout {
            None => GRACE,
            Some(timeout) => GRACE.min(timeout),
        };
        if let Some(instance) = self.instance.try_lock_for(grace) {
            return Ok(instance);
        }
        let Some(this) = self.this.upgrade() else {
            // Unreachable while a caller holds a reference: the slot lives in an `Arc`.
            return Ok(self.instance.lock());
        };
        let waiting = match wait::begin(me, this) {
            Ok(waiting) => waiting,
            // The walk may have read a holder that was just leaving: one last try.
            Err(cycle) => return self.instance.try_lock().ok_or(Blocked::Cycle(cycle)),
        };
        let instance = match timeout {
            None => self.instance.lock(),
            Some(timeout) => {
                let left = timeout.saturating_sub(started.elapsed());
                self.instance.try_lock_for(left).ok_or(Blocked::TimedOut(timeout))?
            }
        };
        drop(waiting);
        Ok(instance)
    }

    /// Serves one request on the caller's thread. The failure paths live in cold functions so
    /// that this one stays small enough to inline into the caller.
    #[inline]
    pub(crate) fn call(&self, request: Req) -> Result<Resp, CallError> {
        match self.try_enter() {
            Ok(entered) => self.serve(entered, request),
            Err(blocked) => Err(self.refused(blocked)),
        }
    }

    /// Calls the service if it is free right now; hands the request back if another caller
    /// holds it (for async callers, which must not wait on this thread).
    #[cfg(feature = "tokio")]
    pub(crate) fn call_now(&self, request: Req) -> Result<Result<Resp, CallError>, Req> {
        let me = caller_token();
        match self.instance.try_lock() {
            Some(instance) => {
                self.owner.0.store(me, Ordering::Relaxed);
                Ok(self.serve(Entered { slot: self, instance }, request))
            }
            None if self.owner.0.load(Ordering::Relaxed) == me => Ok(Err(self.refused(Blocked::Reentry))),
            None => Err(request),
        }
    }

    /// [`call`](Self::call) for an async caller waiting off the runtime's workers: once the
    /// slot is entered, the request is delivered only if the caller is still there (`withdrawn`
    /// unset); a caller that went away while waiting delivers nothing (`None`).
    #[cfg(feature = "tokio")]
    pub(crate) fn call_unless_withdrawn(
        &self,
        request: Req,
        timeout: Option<Duration>,
        withdrawn: &std::sync::atomic::AtomicBool,
    ) -> Option<Result<Resp, CallError>> {
        let entered = match self.try_enter_within(timeout) {
            Ok(entered) => entered,
            Err(blocked) => return Some(Err(self.refused(blocked))),
        };
        // Checked with the slot held: from here on the request is admitted, and a caller that
        // goes away now still has it handled (as a call whose handler already runs).
        if withdrawn.load(Ordering::Acquire) {
            return None;
        }
        Some(self.serve(entered, request))
    }

    /// [`call`](Self::call), waiting at most `timeout` to enter the service (a handler that is
    /// already running is not interrupted).
    pub(crate) fn call_within(&self, request: Req, timeout: Duration) -> Result<Resp, CallError> {
        match self.try_enter_within(Some(timeout)) {
            Ok(entered) => self.serve(entered, request),
            Err(blocked) => Err(self.refused(blocked)),
        }
    }

    /// Runs the handler on the entered slot, its panics caught.
    #[inline]
    fn serve(&self, mut entered: Entered<'_, Req, Resp>, request: Req) -> Result<Resp, CallError> {
        if self.status.load(Ordering::Acquire) != Status::Running.to_u8() {
            return Err(self.not_running());
        }
        let ctx = Context::new(&self.kernel, &self.name);
        let instance = &mut **entered.instance;
        // A DEBUG span: a user's events inside the handler carry the service's name; with DEBUG
        // off (the usual INFO subscriber, or none) it costs one relaxed load.
        let _span = tracing::debug_span!("handle", service = %self.name).entered();
        match catch_unwind(AssertUnwindSafe(|| instance.handle(request, &ctx))) {
            Ok(response) => Ok(response),
            Err(panic) => Err(self.panicked(&entered, &*panic)),
        }
    }

    #[cold]
    #[inline(never)]
    fn refused(&self, blocked: Blocked) -> CallError {
        blocked.into_call_error(&self.name)
    }

    #[cold]
    #[inline(never)]
    fn not_running(&self) -> CallError {
        CallError::NotRunning {
            service: self.name.to_string(),
            status: self.status(),
        }
    }

    #[cold]
    #[inline(never)]
    fn panicked(&self, entered: &Entered<'_, Req, Resp>, panic: &(dyn std::any::Any + Send)) -> CallError {
        entered.set_status(Status::Failed);
        let message = panic_message(panic);
        tracing::error!(service = %self.name, %message, "handler panicked; service marked failed");
        if let Some(kernel) = self.kernel.upgrade() {
            kernel.report_failure(&self.name, entered.epoch());
        }
        CallError::Panicked {
            service: self.name.to_string(),
            message,
        }
    }

    /// Runs a lifecycle hook with the slot held.
    pub(crate) fn run_hook(&self, hook: Hook) -> Result<(), LifecycleError> {
        self.check_no_late_stop()?;
        let mut entered = self.enter_for(hook.as_str())?;
        entered.run_hook(hook)
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Held for Slot<Req, Resp> {
    fn holder(&self) -> u64 {
        self.owner.0.load(Ordering::Relaxed)
    }

    fn service(&self) -> &str {
        &self.name
    }
}
