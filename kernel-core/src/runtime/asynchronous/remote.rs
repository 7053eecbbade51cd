//! The seam to services on other nodes: a kernel given a [`RemoteCalls`] sends the async calls
//! it cannot serve itself there (the NATS implementation is `kernel_nats::NatsCalls`).

use std::time::Duration;

use super::CallFuture;
use crate::messaging::message::{Event, Reply};

/// Reaches services that run on other nodes. `Kernel::call_async` (and `AsyncContext::call`)
/// use it for a name no local service has; synchronous calls never do (they get
/// [`CallError::Remote`](crate::CallError::Remote) instead of a hidden wait on the network).
pub trait RemoteCalls: Send + Sync + 'static {
    /// Calls `event.to` on whichever node serves it, within `timeout` if one is given (else the
    /// implementation's own bound).
    fn call(&self, event: Event, timeout: Option<Duration>) -> CallFuture<Reply>;
}
