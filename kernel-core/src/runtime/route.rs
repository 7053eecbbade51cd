//! How an event addressed by name reaches its service.

use std::sync::Arc;
use std::time::Duration;

use crate::messaging::message::{Event, Reply};
use crate::runtime::error::CallError;
use crate::runtime::slot::Slot;

/// Where the registry sends events for a service.
#[derive(Clone)]
pub(crate) enum Route {
    /// A synchronous service speaking `Event`/`Reply`.
    Sync(Arc<Slot<Event, Reply>>),
    /// An async service speaking `Event`/`Reply`.
    #[cfg(feature = "tokio")]
    Async(Arc<crate::runtime::asynchronous::AsyncSlot<Event, Reply>>),
    /// A service with its own request type: only its typed handle reaches it.
    Typed,
}

impl Route {
    /// Calls the service on this thread (an async one without blocking a runtime's worker).
    pub(crate) fn call(&self, service: &str, event: Event, timeout: Option<Duration>) -> Result<Reply, CallError> {
        match (self, timeout) {
            (Route::Sync(slot), None) => slot.call(event),
            (Route::Sync(slot), Some(timeout)) => slot.call_within(event, timeout),
            #[cfg(feature = "tokio")]
            (Route::Async(slot), _) => slot.call_blocking(event, timeout),
            (Route::Typed, _) => Err(CallError::Unsupported {
                service: service.to_owned(),
            }),
        }
    }
}
