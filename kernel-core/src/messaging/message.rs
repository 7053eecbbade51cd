//! The default message pair, a small text protocol kept for the demo and for calls by name:
//! [`Event`] in, [`Reply`] out.
//!
//! Text fields are [`Text`] (`Cow<'static, str>`): a literal costs nothing to clone, which keeps a
//! call as cheap as the handler it runs, while runtime strings are simply owned.

use std::borrow::Cow;
use std::fmt;

use crate::state::{DataModelType, NamedType, NamedValue, Schema};

/// Text carried by messages: a `'static` literal or an owned string.
pub type Text = Cow<'static, str>;

/// Name of the kernel itself as an event target: `push` answers such events without a service.
pub const KERNEL: &str = "kernel";

/// A request addressed to a service (or to the [`KERNEL`]).
///
/// ```
/// use microkernel::Event;
/// let ev = Event::new("echo", "main", "greet", "Hello, Log!");
/// assert_eq!(ev.to, "echo");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// The service (or [`KERNEL`]) the event is for.
    pub to: Text,
    /// Who sent it.
    pub from: Text,
    /// What kind of event it is; free for services to interpret.
    pub kind: Text,
    /// The payload.
    pub content: Text,
}

impl Event {
    /// Builds an event; each argument may be a `&'static str` or a `String`.
    pub fn new(to: impl Into<Text>, from: impl Into<Text>, kind: impl Into<Text>, content: impl Into<Text>) -> Self {
        Self {
            to: to.into(),
            from: from.into(),
            kind: kind.into(),
            content: content.into(),
        }
    }
}

/// The answer to an [`Event`] in the `Event`/`Reply` text protocol. `code` is HTTP-like (see
/// [`code`]): 0 is success, 404 is an unknown or stopped target, 408 a timeout, 5xx a failure
/// inside the kernel or the service.
///
/// Its `Display` is `{code message data}`: `{0 echo service handled from microKernel: Hello, Log!}`.
///
/// ```
/// use microkernel::Reply;
/// let r = Reply::new(0, "echo service handled", "from microKernel: Hello, Log!");
/// assert_eq!(r.to_string(), "{0 echo service handled from microKernel: Hello, Log!}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    /// 0 on success; an HTTP-like status otherwise.
    pub code: u16,
    /// A short, human-readable outcome.
    pub message: Text,
    /// The payload.
    pub data: Text,
}

impl Reply {
    /// Builds a reply.
    pub fn new(code: u16, message: impl Into<Text>, data: impl Into<Text>) -> Self {
        Self {
            code,
            message: message.into(),
            data: data.into(),
        }
    }

    /// A successful reply (code 0).
    pub fn ok(message: impl Into<Text>, data: impl Into<Text>) -> Self {
        Self::new(0, message, data)
    }

    /// Whether the code is 0.
    pub fn is_ok(&self) -> bool {
        self.code == 0
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{} {} {}}}", self.code, self.message, self.data)
    }
}

/// Reply codes used by the kernel.
pub mod code {
    /// Success.
    pub const OK: u16 = 0;
    /// The service named by `to` is not registered or not running.
    pub const NOT_FOUND: u16 = 404;
    /// The reply did not come within the push timeout.
    pub const TIMEOUT: u16 = 408;
    /// The service does not speak the `Event`/`Reply` protocol (it declared its own types).
    pub const UNSUPPORTED: u16 = 415;
    /// The call would wait on itself (a service calling itself, or A → B → A on one thread).
    pub const LOOP: u16 = 508;
    /// The service failed while handling the event.
    pub const FAILED: u16 = 500;
    /// The kernel is shutting down or gone.
    pub const UNAVAILABLE: u16 = 503;
}

/// A text field in a message's schema.
const TEXT: &NamedType = <String as Schema>::SCHEMA;

/// `Event` crosses processes (calls between nodes) encoded with postcard; its schema names the
/// shape a node accepts.
impl Schema for Event {
    const SCHEMA: &'static NamedType = &NamedType {
        name: "Event",
        ty: &DataModelType::Struct(&[
            &NamedValue { name: "to", ty: TEXT },
            &NamedValue { name: "from", ty: TEXT },
            &NamedValue { name: "kind", ty: TEXT },
            &NamedValue {
                name: "content",
                ty: TEXT,
            },
        ]),
    };
}

/// `Reply` crosses processes as `Event` does.
impl Schema for Reply {
    const SCHEMA: &'static NamedType = &NamedType {
        name: "Reply",
        ty: &DataModelType::Struct(&[
            &NamedValue {
                name: "code",
                ty: <u16 as Schema>::SCHEMA,
            },
            &NamedValue {
                name: "message",
                ty: TEXT,
            },
            &NamedValue { name: "data", ty: TEXT },
        ]),
    };
}
