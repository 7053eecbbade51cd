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
