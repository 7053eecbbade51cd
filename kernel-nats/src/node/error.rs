//! What fails when a node takes a service over or hands it over.

use std::time::Duration;

use kernel_core::LifecycleError;

use super::Owned;
use crate::calls::RemoteCallError;
use crate::ownership::ClaimError;

/// Taking a service over, or handing it over, failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TakeOverError {
    /// The claim could not be made (another node kept it past the wait, or the server failed).
    Claim(ClaimError),
    /// Registering, restoring, the fencing write, the start or the stop failed; on taking
    /// over, the claim was released.
    Lifecycle(LifecycleError),
    /// Serving the service to the other nodes failed.
    Serve(RemoteCallError),
    /// The requests taken were not all answered within the drain timeout (a handler that does
    /// not return): the handover did not happen.
    Drain {
        /// The service.
        service: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The record of answered calls could not be moved (written by the old owner, or read and
    /// opened by the new one).
    Answers {
        /// The service.
        service: String,
        /// What was wrong.
        reason: String,
    },
}

impl std::fmt::Display for TakeOverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TakeOverError::Claim(e) => write!(f, "moving the service failed: {e}"),
            TakeOverError::Lifecycle(e) => write!(f, "moving the service failed: {e}"),
            TakeOverError::Serve(e) => write!(f, "moving the service failed: {e}"),
            TakeOverError::Drain { service, timeout } => write!(
                f,
                "moving `{service}` failed: the requests it took were not answered within {timeout:?}"
            ),
            TakeOverError::Answers { service, reason } => {
                write!(f, "moving the record of answered calls of `{service}` failed: {reason}")
            }
        }
    }
}

impl std::error::Error for TakeOverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TakeOverError::Claim(e) => Some(e),
            TakeOverError::Lifecycle(e) => Some(e),
            TakeOverError::Serve(e) => Some(e),
            TakeOverError::Answers { .. } | TakeOverError::Drain { .. } => None,
        }
    }
}

/// A handover failed; [`into_owned`](Self::into_owned) gives the service back if it is served
/// here again.
#[derive(Debug)]
pub struct HandOverError {
    pub(super) error: TakeOverError,
    pub(super) owned: Option<Owned>,
}

impl HandOverError {
    /// What failed.
    pub fn error(&self) -> &TakeOverError {
        &self.error
    }

    /// The service, served by this node again, if the claim was still held.
    pub fn into_owned(self) -> Option<Owned> {
        self.owned
    }
}

impl std::fmt::Display for HandOverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let still = if self.owned.is_some() {
            "still served here"
        } else {
            "no longer served here"
        };
        write!(f, "handing the service over failed ({still}): {}", self.error)
    }
}

impl std::error::Error for HandOverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
