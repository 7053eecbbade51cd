//! Socket activation: the sockets a service manager (systemd) passed to this process, by the
//! names it gave them (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`; see `sd_listen_fds(3)`).
//! (Why `listenfd`: the [module docs](super).)

use std::collections::VecDeque;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener};

use super::TakeoverError;

/// The most sockets taken from `LISTEN_FDS` (systemd passes far fewer).
const MAX_ACTIVATED: usize = 1024;

/// One socket passed by the service manager.
#[derive(Debug)]
#[non_exhaustive]
pub enum ActivatedSocket {
    /// A TCP socket (IPv4 or IPv6), listening.
    Tcp(TcpListener),
    /// A Unix stream socket, listening.
    Unix(UnixListener),
    /// A UDP socket.
    Udp(UdpSocket),
    /// A Unix datagram socket.
    UnixDatagram(UnixDatagram),
}

impl AsFd for ActivatedSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(socket) => socket.as_fd(),
            Self::Unix(socket) => socket.as_fd(),
            Self::Udp(socket) => socket.as_fd(),
            Self::UnixDatagram(socket) => socket.as_fd(),
        }
    }
}

impl From<ActivatedSocket> for OwnedFd {
    /// The socket as a descriptor, for [`HandoverBuilder::listener`](super::HandoverBuilder::listener).
    fn from(socket: ActivatedSocket) -> Self {
        match socket {
            ActivatedSocket::Tcp(socket) => socket.into(),
            ActivatedSocket::Unix(socket) => socket.into(),
            ActivatedSocket::Udp(socket) => socket.into(),
            ActivatedSocket::UnixDatagram(socket) => socket.into(),
        }
    }
}

/// The sockets passed by the service manager, by name ([`activated_sockets`]). Sockets never
/// taken are closed when it is dropped.
#[derive(Debug, Default)]
pub struct ActivatedSockets {
    sockets: VecDeque<(String, ActivatedSocket)>,
}

impl ActivatedSockets {
    /// The names of the sockets not taken yet, in the order they were passed (a socket without
    /// a name is `unknown`, as `sd_listen_fds_with_names(3)` says; several may share a name).
    pub fn names(&self) -> Vec<&str> {
        self.sockets.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// How many sockets are left to take.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether no socket is left (none was passed, or all were taken).
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Takes the first socket named `name`, whatever its kind.
    pub fn take(&mut self, name: &str) -> Option<ActivatedSocket> {
        let at = self.sockets.iter().position(|(n, _)| n == name)?;
        self.sockets.remove(at).map(|(_, socket)| socket)
    }

    /// Takes the first TCP listener named `name`; `None` if there is none (a socket of that
    /// name of another kind stays).
    pub fn take_tcp_listener(&mut self, name: &str) -> Option<TcpListener> {
        let at = self
            .sockets
            .iter()
            .position(|(n, socket)| n == name && matches!(socket, ActivatedSocket::Tcp(_)))?;
        match self.sockets.remove(at) {
            Some((_, ActivatedSocket::Tcp(listener))) => Some(listener),
            _ => None,
        }
    }

    /// Takes the first Unix stream listener named `name`; `None` if there is none.
    pub fn take_unix_listener(&mut self, name: &str) -> Option<UnixListener> {
        let at = self
            .sockets
            .iter()
            .position(|(n, socket)| n == name && matches!(socket, ActivatedSocket::Unix(_)))?;
        match self.sockets.remove(at) {
            Some((_, ActivatedSocket::Unix(listener))) => Some(listener),
            _ => None,
        }
    }
}

/// The sockets the service manager passed to this process (socket activation), by name; none
/// if it passed none, or passed them to another process (`LISTEN_PID` is not this process's
/// id). Call it once, early in `main`, before starting threads: like `sd_listen_fds(3)`, it
/// unsets `LISTEN_PID` and `LISTEN_FDS` (so processes this one starts do not take the sockets
/// for theirs), and a second call finds none. Each socket is made close-on-exec.
///
/// Hand the listeners on to [`HandoverBuilder::listener`](super::HandoverBuilder::listener)
/// under the same names, as any other: a successor takes them over with the rest, though it
/// was not started by the service manager.
///
/// Fails with [`TakeoverError::Activation`] if the variables are malformed
/// (`LISTEN_FDNAMES` naming more or fewer sockets than `LISTEN_FDS`, say) or a descriptor is
/// not a socket of a known kind.
pub fn activated_sockets() -> Result<ActivatedSockets, TakeoverError> {
    let var = |name: &str| std::env::var(name).ok();
    let Some(names) = planned(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?
    else {
        return Ok(ActivatedSockets::default());
    };
    // Reads LISTEN_FDS again (and unsets it with LISTEN_PID).
    let mut passed = listenfd::ListenFd::from_env();
    if passed.len() != names.len() {
        return Err(problem(format!(
            "{} socket(s) found, {} announced",
            passed.len(),
            names.len()
        )));
    }
    let mut sockets = VecDeque::with_capacity(names.len());
    for (index, name) in names.into_iter().enumerate() {
        let socket =
            take(&mut passed, index).map_err(|kind| problem(format!("socket {index} (`{name}`) is {kind}")))?;
        rustix::io::fcntl_setfd(&socket, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| problem(format!("cannot make socket {index} (`{name}`) close-on-exec: {e}")))?;
        sockets.push_back((name, socket));
    }
    tracing::info!(sockets = ?sockets.iter().map(|(name, _)| name).collect::<Vec<_>>(), "sockets passed by the service manager");
    Ok(ActivatedSockets { sockets })
}

/// Takes passed socket `index` as the first kind it is; what it is not, otherwise.
fn take(passed: &mut listenfd::ListenFd, index: usize) -> Result<ActivatedSocket, &'static str> {
    let taken = if let Ok(Some(socket)) = passed.take_tcp_listener(index) {
        ActivatedSocket::Tcp(socket)
    } else if let Ok(Some(socket)) = passed.take_unix_listener(index) {
        ActivatedSocket::Unix(socket)
    } else if let Ok(Some(socket)) = passed.take_udp_socket(index) {
        ActivatedSocket::Udp(socket)
    } else if let Ok(Some(socket)) = passed.take_unix_datagram(index) {
        ActivatedSocket::UnixDatagram(socket)
    } else {
        return Err("not a TCP, UDP or Unix socket");
    };
    Ok(taken)
}

/// The names of the sockets passed to the process `our_pid`, from the variables' values;
/// `None` if none was passed to it.
fn planned(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    our_pid: u32,
) -> Result<Option<Vec<String>>, TakeoverError> {
    let (Some(pid), Some(count)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| problem(format!("LISTEN_PID `{pid}` is not a process id")))?;
    if pid != our_pid {
        tracing::debug!(listen_pid = pid, "sockets passed to another process; none taken");
        return Ok(None);
    }
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| problem(format!("LISTEN_FDS `{count}` is not a number")))?;
    if count > MAX_ACTIVATED {
        return Err(problem(format!(
            "LISTEN_FDS is {count}, over the limit of {MAX_ACTIVATED}"
        )));
    }
    let names: Vec<String> = match listen_fdnames {
        Some(names) if count > 0 => names.split(':').map(str::to_owned).collect(),
        _ => vec!["unknown".to_owned(); count],
    };
    if names.len() != count {
        return Err(problem(format!(
            "LISTEN_FDNAMES names {} socket(s), LISTEN_FDS says {count}",
            names.len()
        )));
    }
    Ok(Some(names))
}

fn problem(problem: String) -> TakeoverError {
    TakeoverError::Activation { problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_for_this_process_are_named() {
        let names = planned(Some("42"), Some("2"), Some("http:admin"), 42).unwrap();
        assert_eq!(names.unwrap(), ["http", "admin"]);
        let unnamed = planned(Some("42"), Some("1"), None, 42).unwrap();
        assert_eq!(unnamed.unwrap(), ["unknown"]);
        assert_eq!(planned(Some("42"), Some("0"), None, 42).unwrap().unwrap().len(), 0);
    }

    #[test]
    fn sockets_for_another_process_or_none_are_not_taken() {
        assert!(planned(Some("41"), Some("1"), Some("http"), 42).unwrap().is_none());
        assert!(planned(None, Some("1"), Some("http"), 42).unwrap().is_none());
        assert!(planned(Some("42"), None, None, 42).unwrap().is_none());
    }

    #[test]
    fn malformed_variables_are_refused_naming_them() {
        for (pid, fds, names, says) in [
            ("x", "1", None, "LISTEN_PID"),
            ("42", "one", None, "LISTEN_FDS"),
            ("42", "2", Some("http"), "LISTEN_FDNAMES names 1"),
            ("42", "100000", None, "over the limit"),
        ] {
            let error = planned(Some(pid), Some(fds), names, 42).unwrap_err();
            assert!(matches!(error, TakeoverError::Activation { .. }));
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn sockets_are_taken_by_name_and_kind() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, _b) = UnixDatagram::pair().unwrap();
        let mut sockets = ActivatedSockets {
            sockets: [
                ("dgram".to_owned(), ActivatedSocket::UnixDatagram(a)),
                ("http".to_owned(), ActivatedSocket::Tcp(tcp)),
            ]
            .into(),
        };
        assert_eq!(sockets.names(), ["dgram", "http"]);
        assert!(sockets.take_tcp_listener("dgram").is_none(), "not TCP: left in place");
        assert!(sockets.take_unix_listener("http").is_none());
        assert!(sockets.take_tcp_listener("http").is_some());
        assert!(matches!(sockets.take("dgram"), Some(ActivatedSocket::UnixDatagram(_))));
        assert!(sockets.is_empty());
    }
}
