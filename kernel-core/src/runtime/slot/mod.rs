//! A service's slot: the one place its current instance lives.
//!
//! Callers, lifecycle changes and replacements all go through the slot's mutex, so one handler
//! runs at a time with `&mut self`, and a replacement that holds the mutex makes calls wait (not
//! fail) until the new instance is in. Handles keep an `Arc` of the slot, so they survive a
//! replacement and skip the name lookup.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::messaging::message::{Event, Reply};
use crate::runtime::caller::caller_token;
use crate::runtime::context::Context;
use crate::runtime::error::Status;
use crate::runtime::error::{CallError, Hook, LifecycleError, panic_message};
use crate::runtime::kernel::Shared;
use crate::runtime::route::CallsByName;
use crate::runtime::service::Handler;
use crate::runtime::wait::{self, Held};

pub(crate) mod core;
mod held;
mod instance;
mod lifecycle;

/// Re-exported for the replacement's pre-copy, which reaches an instance's state through it.
pub(crate) use crate::runtime::lifecycle::Plumbing;
pub(crate) use core::{SaveInFlight, SlotCore};
#[cfg(feature = "tokio")]
pub(crate) use held::status_after;
pub(crate) use held::{HeldSlot, Installs};
pub(crate) use instance::BoxInstance;
pub(crate) use lifecycle::{HoldForLifecycle, export_encoded, export_now};

/// The slot a service of type `S` lives in.
pub(crate) type SlotOf<S> = Slot<<S as Handler>::Request, <S as Handler>::Response>;

/// Where one service lives.
/// Aligned to its own cache lines: slots of different services, allocated side by side, must
/// not share one (two threads calling two services would otherwise slow each other down).
#[repr(align(128))]
pub(crate) struct Slot<Req, Resp> {
    /// What every kind of slot keeps beside its instance.
    core: SlotCore,
    /// Token of the thread inside the slot's mutex, so that a thread calling back into a slot it
    /// already holds gets an error instead of deadlocking. On a cache line of its own: the holder
    /// writes it twice per call, and on the lock's line each write would take the line away from
    /// the callers waiting on the lock.
    owner: OwnLine<AtomicU64>,
    instance: Mutex<BoxInstance<Req, Resp>>,
    /// The kernel, for the contexts handed to the service and to report its failures.
    kernel: Weak<Shared>,
    /// The slot itself, for the wait table when a caller has to wait (see `wait`).
    this: Weak<Self>,
}

/// A value alone on its cache lines (128 bytes: x86 fetches lines in pairs).
#[repr(align(128))]
struct OwnLine<T>(T);

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
    /// Puts `instance` in the slot and returns the one it replaces.
    pub(crate) fn swap(&mut self, instance: BoxInstance<Req, Resp>) -> BoxInstance<Req, Resp> {
        self.slot.core.swapped();
        std::mem::replace(&mut *self.instance, instance)
    }

    /// Runs `start` or `stop` on the current instance, panics caught, leaving the status as it
    /// is: a replacement swaps instances inside one Running period, so that nobody reading the
    /// status without the mutex sees the service stopped in between.
    pub(crate) fn invoke(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        let ctx = Context::new(&self.slot.kernel, &self.slot.core.name);
        let instance = &mut **self.instance;
        let _span = tracing::info_span!("hook", service = %self.slot.core.name, %hook).entered();
        let outcome = catch_unwind(AssertUnwindSafe(|| match hook {
            Hook::Stop => instance.stop(&ctx),
            _ => instance.start(&ctx),
        }));
        crate::runtime::error::hook_outcome(&self.slot.core.name, hook, outcome)
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
            core: SlotCore::new(name, generation),
            owner: OwnLine(AtomicU64::new(0)),
            instance: Mutex::new(instance),
            kernel,
            this: Weak::clone(this),
        })
    }

    /// What every kind of slot keeps beside its instance.
    pub(crate) fn core(&self) -> &SlotCore {
        &self.core
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.core.name
    }

    pub(crate) fn status(&self) -> Status {
        self.core.status()
    }

    /// Takes the slot's mutex for the lifecycle operation `operation`: a refusal says whether
    /// this chain holds the slot already or waiting would close a cycle.
    pub(crate) fn enter_for(&self, operation: &'static str) -> Result<Entered<'_, Req, Resp>, LifecycleError> {
        self.try_enter()
            .map_err(|blocked| blocked.into_lifecycle_error(&self.core.name, operation))
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
        if self.core.status.load(Ordering::Acquire) != Status::Running.to_u8() {
            return Err(self.not_running());
        }
        let ctx = Context::new(&self.kernel, &self.core.name);
        let instance = &mut **entered.instance;
        // A DEBUG span: a user's events inside the handler carry the service's name; with DEBUG
        // off (the usual INFO subscriber, or none) it costs one relaxed load.
        let _span = tracing::debug_span!("handle", service = %self.core.name).entered();
        match catch_unwind(AssertUnwindSafe(|| instance.handle(request, &ctx))) {
            Ok(response) => Ok(response),
            Err(panic) => Err(self.panicked(&entered, &*panic)),
        }
    }

    #[cold]
    #[inline(never)]
    fn refused(&self, blocked: Blocked) -> CallError {
        blocked.into_call_error(&self.core.name)
    }

    #[cold]
    #[inline(never)]
    fn not_running(&self) -> CallError {
        CallError::NotRunning {
            service: self.core.name.to_string(),
            status: self.status(),
        }
    }

    #[cold]
    #[inline(never)]
    fn panicked(&self, entered: &Entered<'_, Req, Resp>, panic: &(dyn std::any::Any + Send)) -> CallError {
        let _held = entered;
        self.core.set_status(Status::Failed);
        let message = panic_message(panic);
        tracing::error!(service = %self.core.name, %message, "handler panicked; service marked failed");
        if let Some(kernel) = self.kernel.upgrade() {
            kernel.report_failure(&self.core.name, self.core.epoch());
        }
        CallError::Panicked {
            service: self.core.name.to_string(),
            message,
        }
    }
}

impl CallsByName for Slot<Event, Reply> {
    #[inline]
    fn call(self: Arc<Self>, event: Event, timeout: Option<Duration>) -> Result<Reply, CallError> {
        match timeout {
            None => Slot::call(&self, event),
            Some(timeout) => self.call_within(event, timeout),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Held for Slot<Req, Resp> {
    fn holder(&self) -> u64 {
        self.owner.0.load(Ordering::Relaxed)
    }

    fn service(&self) -> &str {
        &self.core.name
    }
}
