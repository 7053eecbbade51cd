//! Notices: what the kernel tells an observer the application installed.

use crate::messaging::message::Event;
use crate::state::StateTag;

/// Something that happened in the kernel, given to the observer set with
/// [`KernelBuilder::observer`](crate::KernelBuilder::observer). The observer runs on the thread
/// that made it happen, right after it happened; it should be quick.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Notice<'a> {
    /// A service was registered.
    Registered {
        /// Its name.
        service: &'a str,
    },
    /// A registering service's state was restored from the kernel's store (sent before
    /// [`Registered`](Self::Registered)).
    Restored {
        /// Its name.
        service: &'a str,
        /// Where the state was read.
        location: &'a crate::store::Location,
        /// The generation of the state restored.
        generation: u64,
    },
    /// A registering service found no stored state in the kernel's store where it looked, and
    /// starts from the state it was given (sent before [`Registered`](Self::Registered)).
    /// [`LoadPolicy::RequireStored`](crate::LoadPolicy::RequireStored) refuses the registration
    /// instead.
    NoStoredState {
        /// Its name.
        service: &'a str,
        /// Where the state was looked for.
        location: &'a crate::store::Location,
    },
    /// A service started.
    Started {
        /// Its name.
        service: &'a str,
    },
    /// A service stopped.
    Stopped {
        /// Its name.
        service: &'a str,
    },
    /// A service's hook failed; it is now Failed.
    Failed {
        /// Its name.
        service: &'a str,
    },
    /// An event was pushed to the kernel (before it is answered or routed).
    Pushed {
        /// The event.
        event: &'a Event,
    },
    /// A replacement moved a service's state into the new version, and the new version serves:
    /// sent only once the replacement succeeded, just before [`Replaced`](Self::Replaced); a
    /// failed replacement sends none (the old version serves on with its state).
    StateMigrated {
        /// The service.
        service: &'a str,
        /// Version and fingerprint of the state the old instance held (on a rollback, the newer
        /// version; it crosses downgraded).
        from: StateTag,
        /// Version and fingerprint the new instance imported.
        to: StateTag,
        /// Whether the state crossed sealed.
        sealed: bool,
    },
    /// The state's `#[precopy]` map crossed before the replacement's pause (see
    /// [`state::precopy`](crate::state::precopy)): sent once the replacement succeeded, just
    /// before [`StateMigrated`](Self::StateMigrated). A replacement that crossed stop-the-world
    /// sends none.
    Precopied {
        /// The service.
        service: &'a str,
        /// Rounds before the pause (the first carries the whole map).
        rounds: u32,
        /// Entries the map had when it was put into the new version.
        entries: usize,
        /// Entries that crossed in the pause (the last round's changes).
        in_pause: usize,
        /// How long the slot was held for the pause, from taking it after the last round to
        /// releasing it to the calls that waited (the new version serving).
        pause: std::time::Duration,
    },
    /// A service that `service` depends on failed (its handler panicked).
    DependencyFailed {
        /// The running dependant being told.
        service: &'a str,
        /// The dependency that failed.
        dependency: &'a str,
    },
    /// A supervisor restarted a failed service.
    Restarted {
        /// The service.
        service: &'a str,
    },
    /// A planned restart was not carried out: the failed instance was replaced or started
    /// meanwhile, `stop_all` ran since the failure, or the service is no longer supervised.
    RestartDropped {
        /// The service.
        service: &'a str,
        /// Why, in words.
        reason: &'static str,
    },
    /// A restart was tried and failed (a dependency not running, the factory or the import
    /// failing); it is tried again after the next backoff, within the policy's limit.
    RestartFailed {
        /// The service.
        service: &'a str,
        /// The error, in words.
        error: &'a str,
    },
    /// A supervisor gave up: more failures than its policy allows within its window.
    GaveUp {
        /// The service.
        service: &'a str,
    },
    /// User code panicked where the kernel could not return an error to a caller (dropping a
    /// replaced instance, a periodic checkpoint, a supervisor's factory); the kernel went on.
    Panicked {
        /// The service whose code panicked.
        service: &'a str,
        /// What the kernel was doing: `"drop"`, `"checkpoint"`, `"restart"`.
        during: &'static str,
        /// The panic's message.
        message: &'a str,
    },
    /// A replacement ended the supervision of the service: the supervisor's factory builds the
    /// old version. `Kernel::replace_supervised` carries supervision over instead.
    SupervisionEnded {
        /// The service.
        service: &'a str,
    },
    /// A replacement completed: the new version serves.
    Replaced {
        /// The service.
        service: &'a str,
    },
}

pub(crate) type Observer = Box<dyn Fn(&Notice<'_>) + Send + Sync>;

/// The kernel's part that tells: the observer it was built with, if any.
pub(crate) struct Notices(Option<Observer>);

impl Notices {
    pub(crate) fn new(observer: Option<Observer>) -> Self {
        Self(observer)
    }

    /// Tells the observer; a panicking observer (user code) is logged and the kernel goes on.
    pub(crate) fn notify(&self, notice: &Notice<'_>) {
        if let Some(observer) = &self.0
            && let Err(message) = crate::panic::catch(|| observer(notice))
        {
            tracing::error!(%message, ?notice, "the observer panicked");
        }
    }
}
