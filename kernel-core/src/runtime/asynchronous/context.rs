//! What an async service gets in its hooks and handler: a way back to the kernel, with calls to
//! await.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::messaging::message::{Event, Reply};
use crate::runtime::context::{Level, log};
use crate::runtime::error::CallError;
use crate::runtime::kernel::{Kernel, Shared};

/// The kernel as seen from inside an async service's `start`, `stop` or `handle`. Cheap to
/// clone; it keeps the kernel alive only while a call through it runs.
#[derive(Clone)]
pub struct AsyncContext {
    /// Shared: a call hands the handler a clone, one reference count.
    inner: Arc<Inner>,
}

struct Inner {
    kernel: Weak<Shared>,
    service: Arc<str>,
}

impl AsyncContext {
    pub(crate) fn new(kernel: Weak<Shared>, service: Arc<str>) -> Self {
        Self {
            inner: Arc::new(Inner { kernel, service }),
        }
    }

    /// The name of the service this context belongs to.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The kernel this context reaches, held weakly.
    pub(crate) fn shared(&self) -> &Weak<Shared> {
        &self.inner.kernel
    }

    /// The kernel, unless it is being dropped.
    pub fn kernel(&self) -> Option<Kernel> {
        self.inner.kernel.upgrade().map(Kernel::from_shared)
    }

    /// Calls the service `to` (async or not) and awaits its reply.
    ///
    /// Calling the service this context belongs to, or one that waits on it further up this
    /// chain of calls (A → B → A), returns [`CallError::WouldDeadlock`], whichever threads the
    /// chain has run on.
    pub async fn call(&self, to: &str, event: Event) -> Result<Reply, CallError> {
        self.kernel().ok_or(CallError::KernelGone)?.call_async(to, event).await
    }

    /// [`call`](Self::call), waiting at most `timeout` to enter the service `to`; a handler
    /// that has started is not interrupted.
    pub async fn call_timeout(&self, to: &str, event: Event, timeout: Duration) -> Result<Reply, CallError> {
        let kernel = self.kernel().ok_or(CallError::KernelGone)?;
        kernel.call_async_timeout(to, event, timeout).await
    }

    /// Pushes an event to the kernel and awaits its reply for at most `timeout` (tokio's
    /// timer), as [`Kernel::push`](crate::Kernel::push) does. The event is handled even if the
    /// wait ends first.
    pub async fn push(&self, event: Event, timeout: Duration) -> Reply {
        match self.kernel() {
            Some(kernel) => kernel.push_async(event, timeout).await,
            None => CallError::KernelGone.to_reply(),
        }
    }

    /// Logs a line through `tracing`, tagged with the service's name.
    pub fn log(&self, level: Level, message: &str) {
        log(&self.inner.service, level, message);
    }
}

impl std::fmt::Debug for AsyncContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncContext")
            .field("service", &self.service())
            .finish()
    }
}
