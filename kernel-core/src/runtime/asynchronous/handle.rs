//! A typed handle to call a service from async code, whether the service is async or not.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use super::handler::BoxFuture;
use super::slot::{AsyncSlot, Call};
use crate::messaging::message::{Event, Reply};
use crate::runtime::error::CallError;
use crate::runtime::error::Status;
use crate::runtime::handle::{Handle, SlotOfKind};
use crate::runtime::route::Route;
use crate::runtime::slot::Slot;

/// A typed handle to a service, for async code: `handle.call(request).await`. Obtained once
/// ([`Kernel::register_async`](crate::Kernel::register_async),
/// [`Kernel::async_handle`](crate::Kernel::async_handle), or `AsyncHandle::from(handle)` for a
/// synchronous service), it stays valid across replacements and skips the name lookup. Cheap to
/// clone.
///
/// A call to an async service waits as a future, in arrival order, and once the service has
/// taken the request the kernel drives it to completion even if the caller's future is dropped.
/// A call to a synchronous service runs its handler at once when it is free, and otherwise waits
/// on the runtime's blocking pool, never on a worker.
///
/// **Dropping a call's future** (a `tokio::time::timeout`, a `select!`, tower's `Timeout`), for
/// either kind of service: a request still waiting for the service is withdrawn and never
/// handled; a request the handler already has is handled to its end, and its response dropped.
pub struct AsyncHandle<Req = Event, Resp = Reply> {
    target: Target<Req, Resp>,
}

enum Target<Req, Resp> {
    Async(Arc<AsyncSlot<Req, Resp>>),
    Sync(Arc<Slot<Req, Resp>>),
}

impl<Req, Resp> Clone for Target<Req, Resp> {
    fn clone(&self) -> Self {
        match self {
            Target::Async(slot) => Target::Async(Arc::clone(slot)),
            Target::Sync(slot) => Target::Sync(Arc::clone(slot)),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> AsyncHandle<Req, Resp> {
    pub(crate) fn new_async(slot: Arc<AsyncSlot<Req, Resp>>) -> Self {
        Self {
            target: Target::Async(slot),
        }
    }

    /// A handle to the slot behind `route`, of either kind, if it speaks `Req` and `Resp`.
    pub(crate) fn of(route: &Route, service: &str) -> Result<Self, CallError> {
        Ok(match SlotOfKind::of(route, service)? {
            SlotOfKind::Sync(slot) => Self::from(Handle::new(slot)),
            SlotOfKind::Async(slot) => Self::new_async(slot),
        })
    }

    /// Calls the service and awaits its response.
    ///
    /// Fails with [`CallError::NotRunning`] if it is not running, [`CallError::WouldDeadlock`]
    /// if this chain of calls already holds it (or waiting would close a cycle), and
    /// [`CallError::Panicked`] if its handler panicked (the service is then Failed).
    pub fn call(&self, request: Req) -> impl Future<Output = Result<Resp, CallError>> + Send + 'static {
        self.call_within(request, None)
    }

    /// [`call`](Self::call), waiting at most `timeout` to enter the service (tokio's timer):
    /// past it [`CallError::Timeout`], and the request was not delivered. A handler that has
    /// started is not interrupted.
    pub fn call_timeout(
        &self,
        request: Req,
        timeout: Duration,
    ) -> impl Future<Output = Result<Resp, CallError>> + Send + 'static {
        self.call_within(request, Some(timeout))
    }

    fn call_within(
        &self,
        request: Req,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Resp, CallError>> + Send + 'static {
        match &self.target {
            Target::Async(slot) => Calling::Async(Arc::clone(slot).call(request, timeout)),
            Target::Sync(slot) => Calling::Sync(Some((Arc::clone(slot), request, timeout))),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        match &self.target {
            Target::Async(slot) => slot.name(),
            Target::Sync(slot) => slot.name(),
        }
    }

    /// The service's status.
    pub fn status(&self) -> Status {
        match &self.target {
            Target::Async(slot) => slot.status(),
            Target::Sync(slot) => slot.status(),
        }
    }

    pub(crate) fn async_slot(&self) -> Option<&Arc<AsyncSlot<Req, Resp>>> {
        match &self.target {
            Target::Async(slot) => Some(slot),
            Target::Sync(_) => None,
        }
    }
}

/// A call to a synchronous service: the service, the request, the timeout.
type SyncCall<Req, Resp> = (Arc<Slot<Req, Resp>>, Req, Option<Duration>);

/// The future of a call through a handle: to an async service, or to a synchronous one.
enum Calling<Req: Send + 'static, Resp: Send + 'static> {
    Async(Call<Req, Resp>),
    /// Not polled yet.
    Sync(Option<SyncCall<Req, Resp>>),
    /// The synchronous service was busy: the wait (and the handler) run on the blocking pool.
    OffWorkers(BoxFuture<'static, Result<Resp, CallError>>),
}

// Nothing in it is pinned structurally (the futures it holds are `Unpin`).
impl<Req: Send + 'static, Resp: Send + 'static> Unpin for Calling<Req, Resp> {}

impl<Req: Send + 'static, Resp: Send + 'static> Future for Calling<Req, Resp> {
    type Output = Result<Resp, CallError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut *self {
            Calling::Async(call) => Pin::new(call).poll(cx),
            Calling::Sync(start) => {
                let Some((slot, request, timeout)) = start.take() else {
                    panic!("a call's future polled after it completed")
                };
                let mut waiting = match call_sync(slot, request, timeout) {
                    Ok(waiting) => waiting,
                    Err(answered) => return Poll::Ready(answered),
                };
                let polled = waiting.as_mut().poll(cx);
                *self = Calling::OffWorkers(waiting);
                polled
            }
            Calling::OffWorkers(waiting) => waiting.as_mut().poll(cx),
        }
    }
}

/// A synchronous service called from async code: at once if it is free (`Err` carries the
/// answer); else the wait (and the handler) run on the blocking pool. A caller that goes away
/// before the slot is free withdraws its request ([`Withdrawable`]); once the handler has the
/// request, it runs to its end.
fn call_sync<Req: Send + 'static, Resp: Send + 'static>(
    slot: Arc<Slot<Req, Resp>>,
    request: Req,
    timeout: Option<Duration>,
) -> Result<BoxFuture<'static, Result<Resp, CallError>>, Result<Resp, CallError>> {
    let request = match slot.call_now(request) {
        Ok(answered) => return Err(answered),
        Err(busy) => busy,
    };
    let withdrawn = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&withdrawn);
    let name = slot.name().to_string();
    let waiting = super::chain::off_workers(move || slot.call_unless_withdrawn(request, timeout, &flag));
    Ok(Box::pin(Withdrawable {
        waiting: Box::pin(async move {
            // `None` only when the caller went away first, and then nobody reads this.
            waiting.await.unwrap_or(Err(CallError::Timeout {
                service: name,
                timeout: Duration::ZERO,
            }))
        }),
        withdrawn,
    }))
}

/// A call waiting for a busy synchronous service; dropping it withdraws the request unless the
/// handler has it already.
struct Withdrawable<Resp> {
    waiting: BoxFuture<'static, Result<Resp, CallError>>,
    withdrawn: Arc<AtomicBool>,
}

impl<Resp> Future for Withdrawable<Resp> {
    type Output = Result<Resp, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.waiting.as_mut().poll(cx)
    }
}

impl<Resp> Drop for Withdrawable<Resp> {
    fn drop(&mut self) {
        self.withdrawn.store(true, Ordering::Release);
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> From<Handle<Req, Resp>> for AsyncHandle<Req, Resp> {
    fn from(handle: Handle<Req, Resp>) -> Self {
        Self {
            target: Target::Sync(handle.slot),
        }
    }
}

impl<Req, Resp> Clone for AsyncHandle<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            target: self.target.clone(),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> std::fmt::Debug for AsyncHandle<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncHandle")
            .field("service", &self.name())
            .field("status", &self.status())
            .finish()
    }
}

/// `tower::Service` (feature `tower`): always ready; each call is one [`AsyncHandle::call`].
/// Usable under tower's layers (timeout, concurrency limit, buffer) and as an axum handler's
/// backend.
#[cfg(feature = "tower")]
impl<Req: Send + 'static, Resp: Send + 'static> tower_service::Service<Req> for AsyncHandle<Req, Resp> {
    type Response = Resp;
    type Error = CallError;
    type Future = super::CallFuture<Resp>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), CallError>> {
        // Calls queue in the service itself, in arrival order: there is no capacity to reserve.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        Box::pin(AsyncHandle::call(self, request))
    }
}
