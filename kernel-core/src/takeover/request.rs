//! Asking a running process for an upgrade from another process — a `reload` command, or
//! systemd's `ExecReload=` — and hearing how it went.

use std::path::Path;
use std::time::Duration;

use super::channel::{self, Channel, PROTOCOL, ToNew, ToOld};
use super::{DEFAULT_TIMEOUT, HandedOver, TakeoverError};

/// Asks the process listening in `dir` ([`Handover`](super::Handover)) to start its new binary
/// ([`HandoverBuilder::successor`](super::HandoverBuilder::successor)) and waits for the
/// outcome: `Ok` once the new binary has taken over (its process id in
/// [`HandedOver::successor_pid`]), or why it did not — the old process then serves on:
///
/// - [`TakeoverError::UpgradeFailed`] — the upgrade was tried and failed; its `source` says
///   why: the new process aborted (with its reason, such as a state it could not open), died
///   ([`PeerGone`](TakeoverError::PeerGone)), exited before connecting
///   ([`SuccessorExited`](TakeoverError::SuccessorExited)), or timed out;
/// - [`TakeoverError::Refused`] — an upgrade or a takeover is under way already, or the
///   process has handed over;
/// - [`TakeoverError::NoOldProcess`], [`TakeoverError::PeerNotSameUser`],
///   [`TakeoverError::Dir`] — nothing (acceptable) to ask;
/// - [`TakeoverError::PeerGone`] — the old process closed the connection without an answer (it
///   died, or runs a version without upgrade requests).
///
/// Waits at most twice [`DEFAULT_TIMEOUT`] and ten seconds (the new binary's start, then a
/// whole takeover); see [`request_upgrade_timeout`].
pub fn request_upgrade(dir: impl AsRef<Path>) -> Result<HandedOver, TakeoverError> {
    request_upgrade_timeout(dir, DEFAULT_TIMEOUT * 2 + Duration::from_secs(10))
}

/// [`request_upgrade`], waiting at most `timeout` for the answer ([`TakeoverError::TimedOut`]
/// past it: the upgrade may still be under way, and the old process's log tells its end).
pub fn request_upgrade_timeout(dir: impl AsRef<Path>, timeout: Duration) -> Result<HandedOver, TakeoverError> {
    let (stream, socket) = channel::connect(dir.as_ref())?;
    let mut channel = Channel::new(stream, timeout);
    channel.send(&ToOld::Upgrade { protocol: PROTOCOL })?;
    tracing::info!(socket = %socket.display(), "asked for an upgrade");
    match channel.recv::<ToNew>()? {
        ToNew::Upgraded {
            services,
            states_sent,
            successor_pid,
        } => Ok(HandedOver {
            services,
            states_sent,
            successor_pid,
        }),
        ToNew::UpgradeFailed { failure } => Err(TakeoverError::UpgradeFailed {
            source: Box::new(failure.into_error()),
        }),
        ToNew::Refused { reason } => Err(TakeoverError::Refused { reason }),
        other => Err(TakeoverError::Protocol(format!(
            "expected the outcome of the upgrade, got {other:?}"
        ))),
    }
}
