//! The kernel's errors, each naming what was wrong and with which service, and the words
//! they use: a service's [`Status`] and its [`Hook`]s.

use std::fmt;

use crate::boxed::BoxError;
use crate::messaging::message::{Reply, code};

/// A service hook, as named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hook {
    /// `Handler::start`.
    Start,
    /// `Handler::stop`.
    Stop,
    /// `Handler::handle`.
    Handle,
}

impl Hook {
    /// The hook's name: `start`, `stop` or `handle`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Start => "start",
            Hook::Stop => "stop",
            Hook::Handle => "handle",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a service is in its lifecycle: Created → Running → Stopped (→ Running again), or Failed
/// when a hook returned an error or panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Registered, never started.
    Created,
    /// Started and serving.
    Running,
    /// Stopped; can be started again.
    Stopped,
    /// A hook or the handler failed; can be started again.
    Failed,
}

impl Status {
    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => Status::Created,
            1 => Status::Running,
            2 => Status::Stopped,
            _ => Status::Failed,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
        })
    }
}

/// A dependency cycle, shown as the whole chain: `a -> b -> c -> a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<String>);

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" -> "))
    }
}

/// Registering, starting or stopping a service failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// A service with this name is already registered.
    #[error("a service named `{name}` is already registered")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// No service has this name.
    #[error("no service named `{name}` is registered")]
    NotFound {
        /// The name.
        name: String,
    },
    /// A service depends on a name that is not registered.
    #[error("service `{service}` depends on `{dependency}`, which is not registered")]
    UnknownDependency {
        /// The dependant.
        service: String,
        /// The missing dependency.
        dependency: String,
    },
    /// The dependencies form a cycle.
    #[error("dependency cycle: {0}")]
    Cycle(Cycle),
    /// A dependency is registered but not running.
    #[error("service `{service}` needs `{dependency}` running, but it is {status}")]
    DependencyNotRunning {
        /// The dependant.
        service: String,
        /// The dependency.
        dependency: String,
        /// The dependency's status.
        status: Status,
    },
    /// Running services depend on the one asked to stop. Stop them first, or use
    /// [`Kernel::stop_cascade`](crate::Kernel::stop_cascade).
    #[error("cannot stop `{service}`: running services depend on it: {}", .dependants.join(", "))]
    HasRunningDependants {
        /// The service asked to stop.
        service: String,
        /// The running services that depend on it.
        dependants: Vec<String>,
    },
    /// A hook returned an error; the service is now Failed.
    #[error("service `{service}` failed in {hook}: {source}")]
    HookFailed {
        /// The service.
        service: String,
        /// The hook.
        hook: Hook,
        /// The hook's error.
        source: BoxError,
    },
    /// A hook panicked; the service is now Failed.
    #[error("service `{service}` panicked in {hook}: {message}")]
    HookPanicked {
        /// The service.
        service: String,
        /// The hook.
        hook: Hook,
        /// The panic message.
        message: String,
    },
    /// The service's state file could not be used; the service is not registered.
    #[error("cannot restore `{service}` from the store: {source}")]
    Restore {
        /// The service.
        service: String,
        /// Why (names the file).
        source: crate::store::StoreError,
    },
    /// The service stopped but its state could not be saved.
    #[error("cannot save the state of `{service}`: {source}")]
    Save {
        /// The service.
        service: String,
        /// Why (names the file).
        source: crate::store::StoreError,
    },
    /// The service's state could not be exported: its own code failed or panicked.
    #[error("cannot export the state of `{service}`: {source}")]
    Export {
        /// The service.
        service: String,
        /// What its code did.
        source: crate::boxed::ServiceFault,
    },
    /// An async service's instance was lost when its handler panicked (the handler's future
    /// owned it): there is no state to export or hook to run; restart or replace the service.
    #[error("the instance of `{service}` was lost when its handler panicked; restart or replace the service")]
    InstanceLost {
        /// The service.
        service: String,
    },
    /// The `stop` hook did not return within the stop timeout; the service is marked Failed.
    #[error("service `{service}` did not stop within {timeout:?}; marked failed")]
    StopTimeout {
        /// The service.
        service: String,
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// A checkpoint was asked for but the kernel has no store.
    #[error("cannot save `{service}`: the kernel has no state store (KernelBuilder::store)")]
    NoStore {
        /// The service.
        service: String,
    },
    /// A lifecycle change (start, stop, save, replace, ...) would wait for a service (or the
    /// kernel's lifecycle lock) whose holder waits, through the services named, for one this
    /// chain of calls holds: refused instead of deadlocking. Retry it after the handler returns
    /// (e.g. from another thread or task).
    #[error("{operation} would deadlock: it would wait for what a chain of calls holds while that chain waits for it ({})", cycle.join(" -> "))]
    WouldDeadlock {
        /// The operation refused.
        operation: &'static str,
        /// The services (and the lifecycle lock) along the cycle of waits.
        cycle: Vec<String>,
    },
    /// The service's name cannot be registered (empty, or too long or not a file name for the
    /// configured store or sealer); the first 64 characters are given.
    #[error("service name `{service}` cannot be registered: {reason}")]
    InvalidName {
        /// The name (its first 64 characters).
        service: String,
        /// Why, naming the limit.
        reason: NameRefusal,
    },
    /// A dependency is listed twice.
    #[error("service `{service}` lists `{dependency}` twice in its dependencies; list each once")]
    DuplicateDependency {
        /// The service.
        service: String,
        /// The dependency listed twice.
        dependency: String,
    },
    /// A stop hook that outlived its `stop_timeout` is still running and holds the service:
    /// starting, replacing, restarting or saving it would wait for that hook.
    #[error("`{service}` is still running a stop hook that outlived its timeout; try again once it returns")]
    StopInProgress {
        /// The service.
        service: String,
    },
    /// Synchronous code on a single-threaded tokio runtime's own thread asked for a lifecycle
    /// change of an async service; use the async kernel operations (`start_all_async`,
    /// `shutdown`, …), which run it off the runtime's thread.
    #[error(
        "a lifecycle change of async service `{service}` from a single-threaded tokio runtime's thread would block it; use the async kernel operations (start_all_async, shutdown)"
    )]
    WouldBlockRuntime {
        /// The service.
        service: String,
    },
    /// An async service was registered outside a tokio runtime.
    #[error("async service `{service}` must be registered from within a tokio runtime")]
    NoRuntime {
        /// The service.
        service: String,
    },
    /// A supervisor's factory panicked while building a new instance for a restart.
    #[error("the factory of `{service}` panicked while building a restart: {message}")]
    FactoryPanicked {
        /// The service.
        service: String,
        /// The panic's message.
        message: String,
    },
    /// The operation was made from inside the service itself (its own hook or handler, or a
    /// call it is making): this chain of calls already holds the service.
    #[error(
        "service `{service}` is already busy in this chain of calls (a lifecycle change from its own hook or handler)"
    )]
    Reentrant {
        /// The service.
        service: String,
    },
    /// The kernel's load policy is [`LoadPolicy::RequireStored`](crate::LoadPolicy::RequireStored)
    /// and the store holds no state for the registering service.
    #[error(
        "no stored state for `{service}` at {location}, and the load policy requires one (LoadPolicy::RequireStored): check the store's path"
    )]
    NoStoredState {
        /// The service.
        service: String,
        /// Where the state was looked for.
        location: String,
    },
    /// The operation is for the other kind of service: `service_is` says which the service is
    /// (`"a synchronous"` or `"an async"`); use the operation's spelling for that kind.
    #[error("`{service}` is {service_is} service; use the operation for that kind of service")]
    WrongKind {
        /// The service.
        service: String,
        /// `"a synchronous"` or `"an async"`.
        service_is: &'static str,
    },
    /// Only a service that is not running can be unregistered.
    #[error("cannot unregister `{service}`: it is {status}; stop it first")]
    NotStopped {
        /// The service.
        service: String,
        /// Its status.
        status: Status,
    },
}

/// `stop_all` went on past failures; these are all of them.
#[derive(Debug, thiserror::Error)]
#[error("{} service(s) failed to stop: {}", .0.len(), join(.0))]
pub struct StopAllError(pub Vec<LifecycleError>);

fn join(errors: &[LifecycleError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why a service's name was refused at registration ([`LifecycleError::InvalidName`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NameRefusal {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// Longer than a sealed state's header holds (every replacement seals its state, and the
    /// header carries the name).
    #[error("{len} bytes; a sealed state's header holds at most {max} bytes of service name")]
    TooLongToSeal {
        /// The name's length in bytes.
        len: usize,
        /// The longest name a sealed header holds.
        max: usize,
    },
    /// The configured store cannot keep a state under it (too long for a file name, a `/`, a
    /// leading `.`).
    #[error(transparent)]
    Store(crate::store::StoreError),
}

/// A call was not answered by the service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No service has this name.
    #[error("no service named `{service}` is registered")]
    NotFound {
        /// The name called.
        service: String,
    },
    /// The service exists but is not running.
    #[error("service `{service}` is not running (it is {status})")]
    NotRunning {
        /// The service.
        service: String,
        /// Its status.
        status: Status,
    },
    /// The call would wait on itself: the service is already handling a call further up this
    /// thread's stack (a self-call, or A → B → A), or the thread holding it waits, directly or
    /// through other services, for one this thread holds (A → B on one thread while B → A on
    /// another).
    #[error(
        "call to `{service}` would deadlock: `{service}` is busy with a call that waits, directly or through other services, on this chain of calls"
    )]
    WouldDeadlock {
        /// The service.
        service: String,
    },
    /// The service stayed busy longer than the caller's `call_timeout` allowed; the request
    /// was not delivered.
    #[error(
        "service `{service}` stayed busy for longer than the call's timeout of {timeout:?}; the request was not delivered"
    )]
    Timeout {
        /// The service.
        service: String,
        /// The bound the caller gave.
        timeout: std::time::Duration,
    },
    /// The handler panicked; the service is now Failed.
    #[error("service `{service}` panicked while handling a call: {message}")]
    Panicked {
        /// The service.
        service: String,
        /// The panic message.
        message: String,
    },
    /// A handle of one kind was asked for a service of the other: `service_is` says which the
    /// service is (`"an async"`: use `Kernel::async_handle`; `"a synchronous"`).
    #[error("`{service}` is {service_is} service; take a handle of that kind")]
    WrongKind {
        /// The service.
        service: String,
        /// `"a synchronous"` or `"an async"`.
        service_is: &'static str,
    },
    /// A call asked for other request and response types than the ones the service was
    /// registered with: a typed call or handle (`call_typed`, `handle_typed`, …) with other
    /// types, or an `Event` call, handle, send or push to a service with its own protocol
    /// (`register_typed`): reach that one with `call_typed::<Req, Resp>(name, request)`.
    #[error("service `{service}` speaks {registered}, not {requested}")]
    WrongTypes {
        /// The service.
        service: String,
        /// Its request and response types, as `Request -> Response`.
        registered: String,
        /// The types the call asked for, as `Request -> Response`.
        requested: String,
    },
    /// The kernel has been dropped.
    #[error("the kernel is gone")]
    KernelGone,
    /// The service runs on another node (or nowhere): the call could not reach it there, or a
    /// synchronous call would have had to wait on the network.
    #[error("service `{service}` is not served on this node: {reason}")]
    Remote {
        /// The service.
        service: String,
        /// Why the call did not reach it.
        reason: String,
    },
    /// Synchronous code on a single-threaded tokio runtime's own thread called an async
    /// service: waiting would stop the runtime that must run it. Await the call instead
    /// (`Kernel::call_async`, `AsyncHandle::call`), or use a multi-thread runtime.
    #[error(
        "a synchronous call to async service `{service}` from a single-threaded tokio runtime would block the runtime it needs; await it (Kernel::call_async) instead"
    )]
    WouldBlockRuntime {
        /// The service.
        service: String,
    },
}

impl CallError {
    /// This failure as a [`Reply`] of the `Event`/`Reply` text protocol: 404 for an unknown or
    /// stopped target, 508 for a call loop, 408 for a call timeout, 500 for a panic, 415 for a
    /// protocol mismatch, 503 when the kernel is gone.
    pub fn to_reply(&self) -> Reply {
        let (code, message) = match self {
            CallError::NotFound { .. } => (code::NOT_FOUND, "Not found service"),
            CallError::NotRunning { .. } => (code::NOT_FOUND, "Handler not running"),
            CallError::WouldDeadlock { .. } => (code::LOOP, "Call loop detected"),
            CallError::Timeout { .. } => (code::TIMEOUT, "Handler busy past the timeout"),
            CallError::Panicked { .. } => (code::FAILED, "Handler failed"),
            CallError::WrongTypes { .. } | CallError::WrongKind { .. } => {
                (code::UNSUPPORTED, "Unsupported request type")
            }
            CallError::KernelGone => (code::UNAVAILABLE, "Kernel unavailable"),
            CallError::WouldBlockRuntime { .. } => (code::UNAVAILABLE, "Would block the runtime"),
            CallError::Remote { .. } => (code::UNAVAILABLE, "Remote service unavailable"),
        };
        Reply::new(code, message, self.to_string())
    }
}

pub(crate) use crate::panic::panic_message;

/// A hook's outcome, panics caught, as the lifecycle reports it: the same for every kind of
/// slot.
pub(crate) fn hook_outcome(
    service: &str,
    hook: Hook,
    outcome: Result<Result<(), BoxError>, Box<dyn std::any::Any + Send>>,
) -> Result<(), LifecycleError> {
    // The name is copied only for an error: a replacement runs two hooks.
    let service = || service.to_owned();
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(LifecycleError::HookFailed {
            service: service(),
            hook,
            source,
        }),
        Err(panic) => Err(LifecycleError::HookPanicked {
            service: service(),
            hook,
            message: panic_message(&*panic),
        }),
    }
}
