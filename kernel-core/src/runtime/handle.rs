//! Typed handles: a service reached without a name lookup, across replacements; and the typed
//! ways to a service by name, which find its slot behind its route.

use std::sync::Arc;
use std::time::Duration;

use crate::messaging::message::{Event, Reply};
use crate::runtime::error::{CallError, Status};
use crate::runtime::kernel::Kernel;
use crate::runtime::route::{Route, wrong_types};
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

/// The slot behind a route, of the kind and protocol asked for.
pub(crate) enum SlotOfKind<Req, Resp> {
    Sync(Arc<Slot<Req, Resp>>),
    #[cfg(feature = "tokio")]
    Async(Arc<crate::runtime::asynchronous::AsyncSlot<Req, Resp>>),
}

impl<Req: Send + 'static, Resp: Send + 'static> SlotOfKind<Req, Resp> {
    /// The slot behind `route` if it speaks `Req` and `Resp`; else [`CallError::WrongTypes`]
    /// naming both protocols.
    pub(crate) fn of(route: &Route, service: &str) -> Result<Self, CallError> {
        let (slot, speaks) = route.slot();
        let _other = match Arc::downcast::<Slot<Req, Resp>>(slot) {
            Ok(slot) => return Ok(SlotOfKind::Sync(slot)),
            Err(other) => other,
        };
        #[cfg(feature = "tokio")]
        if let Ok(slot) = Arc::downcast::<crate::runtime::asynchronous::AsyncSlot<Req, Resp>>(_other) {
            return Ok(SlotOfKind::Async(slot));
        }
        Err(wrong_types::<Req, Resp>(service, speaks))
    }
}

impl Kernel {
    /// A handle to the synchronous `Event`/`Reply` service `name`, to call it without a name
    /// lookup. An async service (feature `tokio`) is reached with `Kernel::async_handle`
    /// ([`CallError::WrongKind`] here), a service with its own protocol with
    /// [`handle_typed`](Self::handle_typed) ([`CallError::WrongTypes`] here).
    pub fn handle(&self, name: &str) -> Result<Handle, CallError> {
        self.handle_typed(name)
    }

    /// A typed handle to the synchronous service `name`, whatever protocol it speaks: `Req` and
    /// `Resp` are checked against the types it was registered with, and a mismatch is
    /// [`CallError::WrongTypes`] naming both. An async service (feature `tokio`) is reached with
    /// `Kernel::async_handle_typed`, or called with [`call_typed`](Self::call_typed).
    pub fn handle_typed<Req: Send + 'static, Resp: Send + 'static>(
        &self,
        name: &str,
    ) -> Result<Handle<Req, Resp>, CallError> {
        match SlotOfKind::<Req, Resp>::of(&self.shared().route(name)?, name)? {
            SlotOfKind::Sync(slot) => Ok(Handle::new(slot)),
            #[cfg(feature = "tokio")]
            SlotOfKind::Async(_) => Err(CallError::WrongKind {
                service: name.to_owned(),
                service_is: "an async",
            }),
        }
    }

    /// Calls the service `name` on this thread with a typed request, whatever protocol it was
    /// registered with (`register_typed`, or `Event`/`Reply`): `Req` and `Resp` are checked
    /// against its types at run time, and a mismatch is [`CallError::WrongTypes`], never a
    /// reply. An async service is waited for as [`call`](Self::call) waits for one.
    ///
    /// ```
    /// use microkernel::{CallError, Context, Handler, Kernel};
    ///
    /// #[derive(microkernel::Service)]
    /// #[service(name = "adder")]
    /// struct Adder;
    /// impl Handler for Adder {
    ///     type Request = (u32, u32);
    ///     type Response = u32;
    ///     fn handle(&mut self, (a, b): (u32, u32), _: &Context<'_>) -> u32 { a + b }
    /// }
    ///
    /// let kernel = Kernel::new();
    /// kernel.register_typed(Adder)?;
    /// kernel.start_all()?;
    /// assert_eq!(kernel.call_typed::<(u32, u32), u32>("adder", (2, 3))?, 5);
    /// let wrong = kernel.call_typed::<String, u32>("adder", "2 + 3".into());
    /// assert!(matches!(wrong, Err(CallError::WrongTypes { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_typed<Req: Send + 'static, Resp: Send + 'static>(
        &self,
        name: &str,
        request: Req,
    ) -> Result<Resp, CallError> {
        match SlotOfKind::<Req, Resp>::of(
            &self
                .shared()
                .local_route(name, crate::runtime::kernel::TYPED_STAYS_HERE)?,
            name,
        )? {
            SlotOfKind::Sync(slot) => slot.call(request),
            #[cfg(feature = "tokio")]
            SlotOfKind::Async(slot) => slot.call_blocking(request, None),
        }
    }
}
