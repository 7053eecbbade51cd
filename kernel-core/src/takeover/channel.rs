//! The handover channel: a Unix stream socket in a directory only this user can enter, the
//! peer's credentials checked on both ends, and length-prefixed frames on it.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TakeoverError;

/// The socket's name in the handover directory.
pub(crate) const SOCKET: &str = "handover.sock";

/// The protocol spoken on the socket; a peer speaking another is refused.
pub(crate) const PROTOCOL: u32 = 1;

/// The largest frame either side accepts: a sealed state up to the directory store's limit,
/// plus room for its envelope.
pub(crate) const MAX_FRAME: u64 = crate::store::DEFAULT_MAX_STATE_BYTES + 64 * 1024;

/// What the new process says to the old one.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) enum ToOld {
    /// The first message: the protocol it speaks.
    Hello { protocol: u32 },
    /// The state of a service, sealed (the old process stops serving first).
    Load { service: String },
    /// Everything is registered and started: the old process lets go.
    Commit,
    /// The new process gives up; the old one serves on.
    Abort { reason: String },
    /// Not a takeover: another process asks the old one to start its new binary and answer
    /// with the outcome (`Upgraded`, `UpgradeFailed` or `Refused`). Only ever a first message.
    Upgrade { protocol: u32 },
}

/// What the old process answers.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) enum ToNew {
    /// The takeover may go on: the listeners' names, in the order their descriptors follow.
    Welcome { listeners: Vec<String>, pid: u32 },
    /// The takeover is refused, and why (another one runs, another protocol, …).
    Refused { reason: String },
    /// The service's state, sealed, follows in a raw frame.
    State { generation: u64 },
    /// The old process has no service of that name.
    NoState,
    /// The old process could not stop its services or export the state; it serves on.
    Failed { reason: String },
    /// The old process let go of its services: the new one serves from now on.
    Committed,
    /// The upgrade asked for succeeded: the new binary took over.
    Upgraded {
        services: Vec<String>,
        states_sent: Vec<String>,
        successor_pid: u32,
    },
    /// The upgrade asked for failed; the old process serves on.
    UpgradeFailed { failure: Failure },
}

/// Why an upgrade failed, as it crosses to the process that asked: the cases a requester acts
/// on keep their variant, the rest their message (none carries a key or a state).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) enum Failure {
    Aborted { reason: String },
    PeerGone,
    TimedOut,
    Refused { reason: String },
    NoSuccessor,
    SuccessorExited { code: Option<i32>, signal: Option<i32> },
    Other { reason: String },
}

impl From<&TakeoverError> for Failure {
    fn from(error: &TakeoverError) -> Self {
        match error {
            TakeoverError::Aborted { reason } => Self::Aborted { reason: reason.clone() },
            TakeoverError::PeerGone => Self::PeerGone,
            TakeoverError::TimedOut => Self::TimedOut,
            TakeoverError::Refused { reason } => Self::Refused { reason: reason.clone() },
            TakeoverError::NoSuccessor => Self::NoSuccessor,
            TakeoverError::SuccessorExited { code, signal } => Self::SuccessorExited {
                code: *code,
                signal: *signal,
            },
            other => Self::Other {
                reason: other.to_string(),
            },
        }
    }
}

impl Failure {
    /// The error it stands for; one that crossed as its message is [`TakeoverError::Failed`].
    pub(crate) fn into_error(self) -> TakeoverError {
        match self {
            Self::Aborted { reason } => TakeoverError::Aborted { reason },
            Self::PeerGone => TakeoverError::PeerGone,
            Self::TimedOut => TakeoverError::TimedOut,
            Self::Refused { reason } => TakeoverError::Refused { reason },
            Self::NoSuccessor => TakeoverError::NoSuccessor,
            Self::SuccessorExited { code, signal } => TakeoverError::SuccessorExited { code, signal },
            Self::Other { reason } => TakeoverError::Failed { reason },
        }
    }
}

/// One end of the handover socket.
#[derive(Debug)]
pub(crate) struct Channel {
    stream: UnixStream,
    /// When the whole exchange must be over; reads and writes fail after it.
    deadline: Instant,
}

impl Channel {
    pub(crate) fn new(stream: UnixStream, timeout: Duration) -> Self {
        Self {
            stream,
            deadline: Instant::now() + timeout,
        }
    }

    /// Moves the deadline to `timeout` from now.
    pub(crate) fn extend(&mut self, timeout: Duration) {
        self.deadline = Instant::now() + timeout;
    }

    pub(crate) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Sets the socket's timeouts to what is left before the deadline.
    pub(crate) fn arm(&self) -> Result<(), TakeoverError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TakeoverError::TimedOut);
        }
        self.stream
            .set_read_timeout(Some(left))
            .and_then(|()| self.stream.set_write_timeout(Some(left)))
            .map_err(|source| TakeoverError::Io {
                op: "set the socket's timeout",
                source,
            })
    }

    /// Sends one message.
    pub(crate) fn send<T: Serialize>(&mut self, message: &T) -> Result<(), TakeoverError> {
        let bytes = postcard::to_allocvec(message).map_err(|e| TakeoverError::Protocol(e.to_string()))?;
        self.send_raw(&bytes)
    }

    /// Sends one frame of bytes as they are (a sealed state).
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> Result<(), TakeoverError> {
        self.arm()?;
        let len = bytes.len() as u64;
        if len > MAX_FRAME {
            return Err(TakeoverError::TooLarge { len, max: MAX_FRAME });
        }
        self.stream
            .write_all(&len.to_le_bytes())
            .and_then(|()| self.stream.write_all(bytes))
            .map_err(|source| io_error("send", source))
    }

    /// Receives one message.
    pub(crate) fn recv<T: DeserializeOwned>(&mut self) -> Result<T, TakeoverError> {
        let bytes = self.recv_raw()?;
        postcard::from_bytes(&bytes).map_err(|e| TakeoverError::Protocol(e.to_string()))
    }

    /// Receives one frame of bytes.
    pub(crate) fn recv_raw(&mut self) -> Result<Vec<u8>, TakeoverError> {
        self.arm()?;
        let mut len = [0u8; 8];
        self.stream
            .read_exact(&mut len)
            .map_err(|source| io_error("receive", source))?;
        let len = u64::from_le_bytes(len);
        if len > MAX_FRAME {
            return Err(TakeoverError::TooLarge { len, max: MAX_FRAME });
        }
        let mut bytes = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut bytes)
            .map_err(|source| io_error("receive", source))?;
        Ok(bytes)
    }
}

/// A closed connection is the peer gone (crashed, killed, or it dropped its end); a timed-out
/// one is a peer too slow; anything else is an I/O error.
fn io_error(op: &'static str, source: io::Error) -> TakeoverError {
    match source.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            TakeoverError::PeerGone
        }
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TakeoverError::TimedOut,
        _ => TakeoverError::Io { op, source },
    }
}

/// Connects to the handover socket in `dir`, checking that the directory is private and that
/// the process listening runs as this user. [`TakeoverError::NoOldProcess`] if none listens.
pub(crate) fn connect(dir: &Path) -> Result<(UnixStream, PathBuf), TakeoverError> {
    let socket = dir.join(SOCKET);
    // A socket in a directory others may write could be anyone's.
    check_private_dir(dir).map_err(|error| match error {
        TakeoverError::Dir { ref problem, .. } if problem.starts_with("cannot read") => {
            TakeoverError::NoOldProcess { socket: socket.clone() }
        }
        other => other,
    })?;
    let stream = UnixStream::connect(&socket).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            TakeoverError::NoOldProcess { socket: socket.clone() }
        }
        _ => TakeoverError::Io {
            op: "connect to the handover socket",
            source,
        },
    })?;
    let (uid, _) = peer_credentials(&stream)?;
    check_peer(uid, our_uid())?;
    Ok((stream, socket))
}

/// The effective user id of this process.
pub(crate) fn our_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The effective user id of the process at the other end of `stream`, as the kernel recorded
/// it when the connection was made (`SO_PEERCRED`): the peer cannot lie about it.
pub(crate) fn peer_credentials(stream: &UnixStream) -> Result<(u32, u32), TakeoverError> {
    let credentials = rustix::net::sockopt::socket_peercred(stream).map_err(|e| TakeoverError::Io {
        op: "read the peer's credentials",
        source: e.into(),
    })?;
    let pid = u32::try_from(credentials.pid.as_raw_nonzero().get()).unwrap_or(0);
    Ok((credentials.uid.as_raw(), pid))
}

/// Refuses a peer running as another user than `ours`.
pub(crate) fn check_peer(peer_uid: u32, ours: u32) -> Result<(), TakeoverError> {
    if peer_uid == ours {
        Ok(())
    } else {
        Err(TakeoverError::PeerNotSameUser {
            peer_uid,
            our_uid: ours,
        })
    }
}

/// Makes `dir` (mode 0700) if it is missing; refuses one owned by another user or that others
/// may enter or write, since whoever can enter it can reach the socket.
pub(crate) fn private_dir(dir: &Path) -> Result<(), TakeoverError> {
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(source) => {
            return Err(TakeoverError::Dir {
                dir: dir.to_owned(),
                problem: format!("cannot create it: {source}"),
            });
        }
    }
    check_private_dir(dir)
}

/// `dir` is a directory owned by this user, which no one else may enter or write.
pub(crate) fn check_private_dir(dir: &Path) -> Result<(), TakeoverError> {
    let meta = fs::symlink_metadata(dir).map_err(|source| TakeoverError::Dir {
        dir: dir.to_owned(),
        problem: format!("cannot read it: {source}"),
    })?;
    let problem = if !meta.is_dir() {
        Some("it is not a directory".to_owned())
    } else if meta.uid() != our_uid() {
        Some(format!("it is owned by uid {}, not by this user", meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!(
            "its mode is {:o}; others must have no access (0700)",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(TakeoverError::Dir {
            dir: dir.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Binds the handover socket in `dir` (mode 0600). A socket left by a process that is gone is
/// replaced; one a live process listens on is refused.
pub(crate) fn bind(dir: &Path) -> Result<(UnixListener, PathBuf), TakeoverError> {
    private_dir(dir)?;
    let path = dir.join(SOCKET);
    if fs::symlink_metadata(&path).is_ok() {
        if UnixStream::connect(&path).is_ok() {
            return Err(TakeoverError::AlreadyListening { socket: path });
        }
        fs::remove_file(&path).map_err(|source| TakeoverError::Io {
            op: "remove a stale handover socket",
            source,
        })?;
    }
    let listener = UnixListener::bind(&path).map_err(|source| TakeoverError::Io {
        op: "bind the handover socket",
        source,
    })?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(|source| TakeoverError::Io {
        op: "restrict the handover socket to its owner",
        source,
    })?;
    Ok((listener, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_user_is_refused() {
        assert!(check_peer(1000, 1000).is_ok());
        let error = check_peer(1001, 1000).unwrap_err();
        assert!(matches!(
            error,
            TakeoverError::PeerNotSameUser {
                peer_uid: 1001,
                our_uid: 1000
            }
        ));
        assert!(error.to_string().contains("uid 1001"), "{error}");
    }

    #[test]
    fn a_connected_peer_is_this_user() {
        let (a, _b) = UnixStream::pair().unwrap();
        let (uid, pid) = peer_credentials(&a).unwrap();
        assert_eq!(uid, our_uid());
        assert_eq!(pid, std::process::id());
    }

    #[test]
    fn an_open_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("mk-takeover-open-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let error = private_dir(&dir).unwrap_err();
        assert!(error.to_string().contains("755"), "{error}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(private_dir(&dir).is_ok());
        fs::remove_dir(&dir).unwrap();
    }
}
