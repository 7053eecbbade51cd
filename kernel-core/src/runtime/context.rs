//! What a service gets in its hooks and handler: a way back to the kernel.

use std::sync::Weak;
use std::time::Duration;

use crate::messaging::message::{Event, Reply};
use crate::runtime::error::CallError;
use crate::runtime::kernel::{Kernel, Shared};

/// Severity of a log line, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Details for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the service handled.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The level's name as the logger prints it: `DEBUG`, `INFO`, `WARN`, `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "DEBUG" => Ok(Level::Debug),
            "INFO" => Ok(Level::Info),
            "WARN" | "WARNING" => Ok(Level::Warn),
            "ERROR" => Ok(Level::Error),
            _ => Err(format!(
                "unknown log level `{s}`; expected one of DEBUG, INFO, WARN, ERROR"
            )),
        }
    }
}

/// The kernel as seen from inside a service's `start`, `stop` or `handle`.
///
/// It borrows what the slot already holds, so making one costs nothing; it reaches the kernel
/// only when used. No kernel-wide lock is held while service code runs, so a service may call,
/// push, register or start other services from here.
pub struct Context<'a> {
    kernel: &'a Weak<Shared>,
    service: &'a str,
}

impl<'a> Context<'a> {
    pub(crate) fn new(kernel: &'a Weak<Shared>, service: &'a str) -> Self {
        Self { kernel, service }
    }

    /// The name of the service this context belongs to.
    pub fn service(&self) -> &str {
        self.service
    }

    /// The kernel, unless it is being dropped.
    pub fn kernel(&self) -> Option<Kernel> {
        self.kernel.upgrade().map(Kernel::from_shared)
    }

    /// Calls the service `to` on this thread and waits for its reply.
    ///
    /// Calling the service this context belongs to, or one that is waiting on it further up
    /// this thread (A → B → A), returns [`CallError::WouldDeadlock`].
    pub fn call(&self, to: &str, event: Event) -> Result<Reply, CallError> {
        self.kernel().ok_or(CallError::KernelGone)?.call(to, event)
    }

    /// [`call`](Self::call), waiting at most `timeout` to enter the service `to` (see
    /// [`Handle::call_timeout`](crate::Handle::call_timeout)).
    pub fn call_timeout(&self, to: &str, event: Event, timeout: Duration) -> Result<Reply, CallError> {
        self.kernel()
            .ok_or(CallError::KernelGone)?
            .call_timeout(to, event, timeout)
    }

    /// Pushes an event to the kernel and waits at most `timeout` for its reply, as
    /// [`Kernel::push`] does. Failures come back as reply codes (404, 408, 500…).
    pub fn push(&self, event: Event, timeout: Duration) -> Reply {
        match self.kernel() {
            Some(kernel) => kernel.push(event, timeout),
            None => CallError::KernelGone.to_reply(),
        }
    }

    /// Logs a line through `tracing`, tagged with the service's name.
    pub fn log(&self, level: Level, message: &str) {
        log(self.service, level, message);
    }
}

/// A service's log line through `tracing`, with its name as the `service` field.
pub(crate) fn log(service: &str, level: Level, message: &str) {
    match level {
        Level::Debug => tracing::debug!(service, "{message}"),
        Level::Info => tracing::info!(service, "{message}"),
        Level::Warn => tracing::warn!(service, "{message}"),
        Level::Error => tracing::error!(service, "{message}"),
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("service", &self.service).finish()
    }
}
