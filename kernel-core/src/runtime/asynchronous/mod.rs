//! Async services on tokio (feature `tokio`): an [`AsyncHandler`] is written with `async fn`
//! hooks and handler, derived with the same `#[derive(Service, Migratable)]`, and moves its
//! typed, versioned, sealed state across a replacement like a synchronous service.
//!
//! - **Calls** are futures: `handle.call(request).await`, `kernel.call_async(name, event)
//!   .await`, `ctx.call(name, event).await`. A service runs one hook or handler at a time with
//!   `&mut self`; callers waiting for it, async and synchronous alike, are served in the order
//!   they arrived (one FIFO queue per service: nobody overtakes a caller already waiting).
//!   Synchronous services are callable from async code (at once when free, otherwise waiting
//!   on the blocking pool) and async services from synchronous code (the caller's thread
//!   waits; on a multi-thread runtime's worker it first hands its tasks off with
//!   `block_in_place`; on a single-threaded runtime's own thread the call is refused with
//!   [`CallError::WouldBlockRuntime`](crate::CallError::WouldBlockRuntime)).
//! - **No kernel wait blocks a worker**: lifecycle operations from async code
//!   (`start_all_async`, `shutdown`, `replace_async`, `checkpoint_async`, `blocking`) run on
//!   the blocking pool, and so does the crossing of a state (encode, seal, open, decode).
//! - **Deadlocks** are detected along the chain of calls, not the thread: a task-local token
//!   names the chain a handler runs in (and follows it onto the blocking pool), so two tasks on
//!   one worker are never confused, a handler that calls its own service after moving threads
//!   — or stops it with `stop_async` — is refused, and a cycle through synchronous services is
//!   refused with [`CallError::WouldDeadlock`](crate::CallError::WouldDeadlock) as among
//!   synchronous ones. **Limit:** the calls one handler makes share its chain's token, so two
//!   calls it makes *at once* to the same service (`tokio::join!`) are refused as a loop
//!   although the second could wait; make them one after the other, or from a spawned task.
//! - **Cancellation**, for async and synchronous services alike: a request still waiting for
//!   its service when the caller's future is dropped is withdrawn and never handled; once the
//!   handler has the request it runs to its end (an async one driven by the kernel), and the
//!   response is dropped.
//! - **Panics**: a panicking handler fails its service only ([`CallError::Panicked`](crate::CallError::Panicked), the
//!   service Failed, its dependants told, its supervisor restarting it). The handler's future
//!   owned the instance while it ran, so the panic drops it: a supervised restart or a
//!   replacement by a fresh version brings the service back, and a replacement of the failed
//!   service itself fails at `Step::Export` (there is no state left to move).
//! - **Replacement** (`kernel.replace_async(new).await`): the four steps of a synchronous
//!   replacement; a handler mid-`.await` when it starts may finish within
//!   [`KernelBuilder::drain_timeout`](crate::KernelBuilder::drain_timeout) (past it the
//!   replacement fails and the old version keeps serving); calls arriving meanwhile wait as
//!   futures and are served by the new version. The lock is fair, so the drain timeout covers
//!   the callers queued before the replacement too, not one handler; it does not bound the old
//!   version's `stop` or the new one's `start`.
//! - **Dropping the future of an async kernel operation** (`replace_async`, `start_all_async`,
//!   `shutdown`, …) does not cancel it: the work runs on the blocking pool to its end, and its
//!   effects (a replacement, the supervision carried over) happen as if it had been awaited.
//! - Shut down with `kernel.shutdown().await`. Dropping the last kernel on a runtime's thread
//!   does not wait for async services (their stops are spawned onto the runtime, best effort);
//!   it still takes the lifecycle lock and joins the supervisor's thread, so drop it there only
//!   when no lifecycle operation or restart is running.
//!
//! The runtime needs tokio's timer (`enable_time`, or `enable_all` as `#[tokio::main]` does).

pub(crate) mod chain;
mod context;
mod gate;
mod handle;
mod handler;
mod kernel;
mod remote;
mod slot;

use std::future::Future;
use std::pin::Pin;

pub use context::AsyncContext;
pub use handle::AsyncHandle;
pub use handler::AsyncHandler;
pub use remote::RemoteCalls;
pub(crate) use slot::{AsyncLifecycle, AsyncSlot};

use crate::runtime::error::CallError;

/// The future of a call, boxed (what `tower::Service::call` returns).
pub type CallFuture<T> = Pin<Box<dyn Future<Output = Result<T, CallError>> + Send + 'static>>;
