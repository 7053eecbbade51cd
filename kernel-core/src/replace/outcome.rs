//! What a replacement reports: the step that failed ([`Step`], [`ReplaceError`]) or what it
//! did ([`Replaced`]).

use crate::runtime::service::BoxError;
use crate::state::StateTag;

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

/// A replacement failed; the old version is still in place with its state unchanged (unless
/// [`old_restarted`](Self::old_restarted) says its restart failed too).
#[derive(Debug, thiserror::Error)]
#[error("replacing `{service}` failed at {step}: {source}")]
pub struct ReplaceError {
    /// The service.
    pub service: String,
    /// The step that failed.
    pub step: Step,
    /// Whether the old version, stopped before the new one failed to start, is running again.
    /// Always `true` for failures before [`Step::StartNew`].
    pub old_restarted: bool,
    /// What went wrong.
    #[source]
    pub source: BoxError,
}

impl ReplaceError {
    pub(crate) fn new(service: &str, step: Step, source: impl Into<BoxError>) -> Self {
        Self {
            service: service.to_owned(),
            step,
            old_restarted: true,
            source: source.into(),
        }
    }

    /// The step that failed.
    pub fn step(&self) -> Step {
        self.step
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
    /// No service had the name: the new version was registered (status Created).
    Registered,
}
