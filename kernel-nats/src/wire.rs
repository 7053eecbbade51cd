//! What a call looks like on the wire, shared by the calling side (`calls`) and the serving
//! side (`serve`): the subject per service and the headers every request and reply carry.

use kernel_core::state::{Schema, fingerprint};
use kernel_core::{Event, Reply};

/// The subject a service is called on.
pub fn subject(service: &str) -> String {
    format!("mk.call.{service}")
}

/// The subject a call is sent to again after an attempt timed out: every node serving the
/// service under a claim subscribes to it outside the queue group, and only the valid owner
/// answers.
pub(crate) fn retry_subject(service: &str) -> String {
    format!("mk.retry.{service}")
}

/// The schema fingerprint of the message's type (hex): a node refuses a message of another shape.
pub(crate) const SHAPE: &str = "Mk-Shape";
/// The caller's deadline, Unix milliseconds.
pub(crate) const DEADLINE: &str = "Mk-Deadline";
/// The call id: every attempt of one call carries the same.
pub(crate) const CALL_ID: &str = "Mk-Call";

/// The `Mk-Shape` header of a message carrying a `T`: its schema fingerprint in hex.
fn shape_of<T: Schema>() -> String {
    format!("{:016x}", fingerprint(T::SCHEMA, 1).0)
}

/// The shapes of the two messages that cross nodes, computed once.
pub(crate) fn event_shape() -> &'static str {
    static SHAPE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHAPE.get_or_init(shape_of::<Event>)
}

/// See [`event_shape`].
pub(crate) fn reply_shape() -> &'static str {
    static SHAPE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHAPE.get_or_init(shape_of::<Reply>)
}

/// The reply codes a serving node gives besides its service's own replies and those of
/// [`kernel_core::code`] (which it also uses: 415 for a request of another shape or a call id
/// too long, 404 for a request on another service's subject, 503 when its record of answers is
/// full, and 503 "Not handled: the service moved to another node" when a write-through save
/// was fenced off by the service's next owner, so that the call's effect on this node's copy
/// will never be saved — none of these took effect, and sending the call again is safe).
pub mod code {
    /// The call was handled — the service answered with success, and the reply carries the
    /// service's message and data — but the write-through save after it
    /// ([`NodeOptions::write_through`](crate::NodeOptions::write_through)) failed: the call's
    /// effect is in the service's memory on the serving node, not yet in the store. The next
    /// save of the service that succeeds (the next call's, a checkpoint, a handover) makes it
    /// durable; a crash of that node before then, or its loss of the service to another node,
    /// loses it.
    ///
    /// **Do not send the call again** as a new call: its effect would be applied twice (a
    /// save that failed because another node took the service over is not answered with this
    /// code, but with 503: that effect will never be saved). The
    /// answer is recorded under the call id like any other, so a retry of the same call (as
    /// [`call`](crate::calls::call) makes) gets this same reply and is not handled again. A 2xx code:
    /// the call succeeded, its durability is what is not confirmed.
    pub const HANDLED_NOT_SAVED: u16 = 202;
}
