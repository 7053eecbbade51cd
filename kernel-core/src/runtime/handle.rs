//! Typed handles: a service reached without a name lookup, across replacements.

use std::sync::Arc;
use std::time::Duration;

use crate::messaging::message::{Event, Reply};
use crate::runtime::error::CallError;
use crate::runtime::error::Status;
use crate::runtime::slot::Slot;

/// A typed handle to one service. Obtained once (from `register` or [`Kernel::handle`]), it
/// skips the name lookup and stays valid when the service is replaced: it points at the
/// service's slot, not at an instance.
///
/// [`Kernel::handle`]: crate::Kernel::handle
pub struct Handle<Req = Event, Resp = Reply> {
    pub(crate) slot: Arc<Slot<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Handle<Req, Resp> {
    pub(crate) fn new(slot: Arc<Slot<Req, Resp>>) -> Self {
        Self { slot }
    }

    /// Calls the service on this thread and waits for its reply.
    #[inline]
    pub fn call(&self, request: Req) -> Result<Resp, CallError> {
        self.slot.call(request)
    }

    /// Like [`call`](Self::call), but waits at most `timeout` to enter the service while
    /// another caller, a lifecycle change or a replacement holds it; past it the request is not
    /// delivered and [`CallError::Timeout`] is returned. The bound is on entering: a handler that
    /// has started is not interrupted, so the whole call can take longer than `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # use microkernel::{Context, Event, Kernel, Reply, Handler};
    /// # #[derive(microkernel::Service)]
    /// # #[service(name = "echo")]
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Request = Event;
    /// #     type Response = Reply;
    /// #     fn handle(&mut self, ev: Event, _: &Context<'_>) -> Reply { Reply::ok("echo", ev.content) }
    /// # }
    /// let kernel = Kernel::new();
    /// let echo = kernel.register(Echo)?;
    /// kernel.start_all()?;
    /// let reply = echo.call_timeout(Event::new("echo", "me", "say", "hi"), Duration::from_millis(50))?;
    /// assert_eq!(reply.data, "hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_timeout(&self, request: Req, timeout: Duration) -> Result<Resp, CallError> {
        self.slot.call_within(request, timeout)
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        self.slot.name()
    }

    /// The service's lifecycle status.
    pub fn status(&self) -> Status {
        self.slot.status()
    }
}

impl Handle<Event, Reply> {
    /// Like [`call`](Self::call), but any failure becomes a reply with its code (the Go
    /// design's `Send`).
    pub fn send(&self, event: Event) -> Reply {
        self.call(event).unwrap_or_else(|e| e.to_reply())
    }
}

impl<Req, Resp> Clone for Handle<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> std::fmt::Debug for Handle<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("service", &self.name())
            .field("status", &self.status())
            .finish()
    }
}
