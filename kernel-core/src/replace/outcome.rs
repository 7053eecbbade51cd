//! What a replacement reports: the step that failed ([`Step`], [`ReplaceError`]) or what it
//! did ([`Replaced`]).

use crate::boxed::ServiceFault;
use crate::runtime::error::{CallError, LifecycleError};
use crate::seal::SealError;
use crate::state::{MigrationError, StateError, StateTag};

/// A step of a replacement, as named in [`ReplaceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Taking the service's slot.
    Enter,
    /// Checking the new version's dependencies.
    Dependencies,
    /// The old instance lending its state.
    Export,
    /// Converting the old state to its previous version (rollback).
    Downgrade,
    /// Encoding the old state.
    Encode,
    /// Sealing the encoded state.
    Seal,
    /// Opening the sealed state.
    Open,
    /// Decoding the state (and walking the chain) into the new version's type.
    Decode,
    /// An upgrade conversion along the chain.
    Upgrade,
    /// The new instance taking the state.
    Import,
    /// Stopping the old instance.
    StopOld,
    /// Starting the new instance.
    StartNew,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Enter => "enter",
            Step::Dependencies => "dependency check",
            Step::Export => "export",
            Step::Downgrade => "downgrade",
            Step::Encode => "encode",
            Step::Seal => "seal",
            Step::Open => "open",
            Step::Decode => "decode",
            Step::Upgrade => "upgrade",
            Step::Import => "import",
            Step::StopOld => "stop of the old version",
            Step::StartNew => "start of the new version",
        })
    }
}

/// Why a replacement failed: match on it to tell the causes apart (no downcast needed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplaceCause {
    /// The new version's name is not the service's.
    #[error("the new version is named `{new_name}`")]
    WrongName {
        /// The name the new version gave.
        new_name: String,
    },
    /// The service and the new version are of different kinds: `service_is` says which the
    /// registered service is (`"a synchronous"` or `"an async"`); replace it with the matching call
    /// (`Kernel::replace` for synchronous services, `Kernel::replace_async` for async ones).
    #[error("it is {service_is} service; use the replacement call for that kind")]
    WrongKind {
        /// `"a synchronous"` or `"an async"`.
        service_is: &'static str,
    },
    /// An async service's handler did not finish within the drain timeout
    /// ([`KernelBuilder::drain_timeout`](crate::KernelBuilder::drain_timeout)).
    #[error("a handler did not finish within the drain timeout of {timeout:?} (KernelBuilder::drain_timeout)")]
    DrainTimeout {
        /// The drain timeout.
        timeout: std::time::Duration,
    },
    /// The service could not be reached (unknown name, or no handle of that kind).
    #[error(transparent)]
    Call(#[from] CallError),
    /// A lifecycle rule refused a step (busy, a cycle, a dependency, a hook that failed).
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The state could not be encoded or decoded (wrong chain, newer version, bad bytes).
    #[error(transparent)]
    State(#[from] StateError),
    /// A conversion of the chain failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// Sealing or opening the state failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// No key to seal the crossing with: the kernel's ephemeral key could not be generated.
    #[error(transparent)]
    Key(#[from] crate::seal::KeyError),
    /// The service's own code failed or panicked: `export_state`, `import_state`, a hook, or
    /// its state's serde code (a conversion of its chain is [`Migration`](Self::Migration)).
    #[error(transparent)]
    Service(#[from] ServiceFault),
}

/// A replacement failed; the old version is still in place with its state unchanged (unless
/// [`old_restarted`](Self::old_restarted) says its restart failed too).
#[derive(Debug, thiserror::Error)]
#[error("replacing `{service}` failed at {step}: {source}")]
pub struct ReplaceError {
    /// The service.
    pub service: String,
    /// The step that failed.
    pub step: Step,
    /// `false` only when the old version was stopped (at [`Step::StopOld`] or
    /// [`Step::StartNew`]) and starting it again failed too: it is then Failed. `true` in
    /// every other case — the old version is in its slot in the status it had (a service that
    /// was not running was not started).
    pub old_restarted: bool,
    /// What went wrong: an enum to match on (boxed: a `Result` carrying this error stays
    /// small); [`cause`](Self::cause) borrows it.
    #[source]
    pub source: Box<ReplaceCause>,
}

impl ReplaceError {
    pub(crate) fn new(service: &str, step: Step, source: impl Into<ReplaceCause>) -> Self {
        Self {
            service: service.to_owned(),
            step,
            old_restarted: true,
            source: Box::new(source.into()),
        }
    }

    /// The step that failed.
    pub fn step(&self) -> Step {
        self.step
    }

    /// Why it failed.
    pub fn cause(&self) -> &ReplaceCause {
        &self.source
    }
}

/// What a successful [`Kernel::replace`](crate::Kernel::replace) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replaced {
    /// The new version took over the slot; `from` is the state the old one held, `to` what the
    /// new one imported (on a rollback, `from` is the newer version).
    Swapped {
        /// Version and fingerprint of the old instance's state.
        from: StateTag,
        /// Version and fingerprint imported.
        to: StateTag,
        /// Whether the state crossed sealed.
        sealed: bool,
    },
}
