//! Who holds what in async code: a token per chain of calls (set on the thread around every
//! poll of a handler or hook, so a nested call knows the slots its chain holds, whatever thread
//! it is on), panics caught as they unwind out of a poll, work that finishes even if its caller
//! goes away, and the one place synchronous code waits for a future.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::runtime::caller::{Scope, current, current_sync};

/// Runs `future` as part of chain `token`.
pub(crate) async fn within<F: Future>(token: u64, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(move |cx| {
        let _scope = Scope::enter(token);
        future.as_mut().poll(cx)
    })
    .await
}

/// A future whose panics are caught: `Err` carries the panic's payload.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Why synchronous code could not wait for an async service.
pub(crate) struct WouldBlockRuntime;

std::thread_local! {
    /// Whether this thread runs kernel work handed off the runtime's workers ([`off_workers`]).
    static OFF_WORKERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as running kernel work off the workers until dropped (also when the work
/// panics): tokio may later run a worker on the same pool thread, which must not inherit it.
struct OffWorkers;

impl OffWorkers {
    fn mark() -> Self {
        OFF_WORKERS.with(|flag| flag.set(true));
        OffWorkers
    }
}

impl Drop for OffWorkers {
    fn drop(&mut self) {
        OFF_WORKERS.with(|flag| flag.set(false));
    }
}

/// Runs `work` on the runtime's blocking pool, marked as kernel work that may wait: how every
/// async lifecycle operation keeps the workers free. The work runs as part of the caller's
/// chain of calls, so that a cycle through it (a handler stopping its own service, a handler
/// waiting for a synchronous service whose holder waits for it) is refused, not hung. A task
/// outside any handler starts a chain of its own here: never the worker thread's token, which
/// every other task polled on that worker would share (and so look like the same caller).
///
/// Dropping the returned future does not cancel the work: it runs to its end.
pub(crate) async fn off_workers<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let chain = current();
    let joined = tokio::task::spawn_blocking(move || {
        let _marked = OffWorkers::mark();
        let _scope = Scope::enter(chain);
        work()
    })
    .await;
    match joined {
        Ok(output) => output,
        // The work's panics are the kernel's (user code is guarded inside): pass them on.
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Whether this thread may wait: it is outside any runtime, or on the blocking pool doing
/// kernel work.
pub(crate) fn may_block() -> bool {
    OFF_WORKERS.with(std::cell::Cell::get) || Handle::try_current().is_err()
}

/// Waits for `future` from synchronous code without blocking an async runtime's worker: on a
/// thread outside any runtime, or on the blocking pool, it is driven here with `runtime`; on a
/// worker (or the `block_on` thread) of a multi-thread runtime the thread first hands its other
/// tasks off (`block_in_place`); on a single-threaded runtime's own thread waiting would stop
/// that runtime, so it is refused.
///
/// The future runs as part of the waiting code's chain (its handler's, else this thread's, which
/// holds whatever this synchronous code holds), so async work it waits for is not taken for a
/// caller of its own.
pub(crate) fn block_on<F: Future>(runtime: &Handle, future: F) -> Result<F::Output, WouldBlockRuntime> {
    let future = within(current_sync(), future);
    let off_workers = OFF_WORKERS.with(std::cell::Cell::get);
    match Handle::try_current() {
        Ok(current) if !off_workers => match current.runtime_flavor() {
            RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(|| current.block_on(future))),
            _ => Err(WouldBlockRuntime),
        },
        _ => Ok(runtime.block_on(future)),
    }
}
