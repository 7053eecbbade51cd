//! A new process of the same application takes over a running one on the same machine
//! (feature `takeover`, Linux): the listening sockets are inherited, so no connection is
//! refused, and each service's state crosses **sealed** over a Unix socket only the same user
//! can open, upgraded through its [`Migratable`](crate::Migratable) chain as any restore is.
//! If the new process fails at any step, the old one serves on with its state.
//!
//! # How it goes
//!
//! The **old** process listens for a successor once it serves:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let kernel = microkernel::Kernel::new();
//! # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! use microkernel::takeover::Handover;
//!
//! let handover = Handover::builder(&kernel, "/run/user/1000/myapp")
//!     .listener("http", listener.try_clone()?)
//!     .on_pause(|| { /* stop accepting; return once every accepted request is answered */ })
//!     .on_resume(|| { /* the takeover failed: accept again */ })
//!     .listen()?;
//! let handed_over = handover.wait(); // blocks until a successor committed
//! println!("handed {:?} over to process {}", handed_over.services, handed_over.successor_pid);
//! # Ok(()) }
//! ```
//!
//! The **new** process connects, takes the listeners, builds its kernel with a store that
//! loads each service's state from the old process, registers and starts its services, and
//! commits; only then does it accept on the listeners:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
//! # let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm)?));
//! use microkernel::takeover::TakeOver;
//!
//! let mut take_over = TakeOver::connect("/run/user/1000/myapp")?;
//! let http = std::net::TcpListener::from(take_over.take_listener("http").ok_or("no listener")?);
//! let kernel = microkernel::Kernel::builder().sealer(sealer).store(take_over.store()).build()?;
//! // kernel.register(...)?: each service's state comes from the old process, sealed, and is
//! // upgraded through its chain; kernel.start_all()?;
//! take_over.commit()?; // the old process lets go; serve on `http` from now on
//! # drop((http, kernel)); Ok(()) }
//! ```
//!
//! Step by step:
//!
//! 1. The new process connects to `<dir>/handover.sock`. Both ends check the other's user
//!    with `SO_PEERCRED` (recorded by the kernel at `connect`, so it cannot be forged): only a
//!    process of the same effective user may take over, and the directory must be owned by
//!    that user with no access for others (the socket itself is `0600`). One takeover runs at
//!    a time: a second connection is refused ([`TakeoverError::Refused`]).
//! 2. The old process sends its listening sockets (`SCM_RIGHTS`). It keeps accepting on them.
//! 3. At the new process's first state request (its first `register`), the old process
//!    **pauses**: its `on_pause` hook stops accepting and waits for the requests already
//!    accepted to be answered, then every running service is stopped, dependants first (a
//!    stop waits for the calls the service admitted). From here until the commit, new
//!    connections wait in the listening sockets' backlog: none is refused, none is answered
//!    twice. In-process callers in the old process get [`CallError::NotRunning`](crate::CallError::NotRunning)
//!    meanwhile.
//!    All services pause together, at the first request, rather than one by one: the new
//!    process serves nothing before its commit anyway (so pausing one by one would gain no
//!    availability), and pausing them together hands over one consistent cut of the states.
//! 4. For each service the new process registers, the old exports its state at its next
//!    generation, seals it with its sealer and sends it. The new process opens it with its own
//!    sealer (the same keyring), decodes it and upgrades it through the chain. A process
//!    without the key cannot open it — and cannot make one the new process would accept.
//! 5. The new process starts its services and calls [`TakeOver::commit`]. On receiving it the
//!    old process unregisters its services, removes its socket and closes its copies of the
//!    listeners, answers, and reports success ([`Handover::wait`]): it may exit. The new
//!    process accepts on the listeners once `commit` returns.
//!
//! # When something fails
//!
//! Until the old process receives the commit, it can take everything back: if the connection
//! closes (the new process crashed, was killed, or dropped its [`TakeOver`] after a failed
//! `register` or `start`), the new process sends [`TakeOver::abort`], or the takeover
//! outlives its timeout ([`HandoverBuilder::timeout`], 60 s by default, counted from the
//! connection), the old process starts again every service it stopped, in dependency order,
//! calls `on_resume`, and serves on with the states it had (nothing was handed over: the
//! new process had no listener open to clients before the commit). The failure is reported
//! by [`Handover::next_outcome`] and logged. A new process that cannot open a state (another
//! key) fails its `register` with an error naming the service, never the key or the state.
//!
//! Whom it trusts: the socket admits processes of the same user only, which could signal or
//! trace this process anyway; such a process may start a takeover and commit it (the old
//! process then stops serving), but without the key it can neither read a state nor make one the
//! new process would open.
//!
//! The commit is the one point of no return: once the old process has received it, it will
//! not serve again, and the new process is on its own. A new process that dies right after
//! is like any server that dies: connections wait in the (still open) listening sockets
//! until a supervisor starts it again.
//!
//! # Under systemd
//!
//! ```ini
//! [Service]
//! Type=notify
//! NotifyAccess=all
//! ExecStart=/usr/bin/myapp
//! # The old process, on SIGHUP, starts the binary at its own path (the new one, once
//! # installed), which takes over; `examples/binary_upgrade` does so.
//! ExecReload=/bin/kill -HUP $MAINPID
//! KillMode=mixed
//! ```
//!
//! The new process, once its [`TakeOver::commit`] returned, tells systemd it is the main
//! process now (`MAINPID=<its pid>` then `READY=1` on `$NOTIFY_SOCKET`, with `NotifyAccess=all`
//! so that a process other than the main one may say so); then the old one exits, and systemd
//! neither kills the new process nor starts a second instance. This crate does not send those
//! messages itself (the application owns its notifications; the `sd-notify` crate sends them
//! in one line, and nothing is sent when `NOTIFY_SOCKET` is unset). The result of a reload is in
//! the log (the journal): the old process logs why a takeover failed, and the new one its own
//! error. Sockets systemd passed in (socket activation) are listeners like the others: give
//! them to [`HandoverBuilder::listener`] (this crate does not read `LISTEN_FDS` itself; a crate
//! such as `listenfd` turns them into listeners).
//!
//! # Why `rustix`
//!
//! Passing descriptors needs `sendmsg`/`recvmsg` with `SCM_RIGHTS`, and the peer check
//! `SO_PEERCRED`; the standard library's versions are unstable. `rustix` offers both as safe
//! functions (`sendmsg` with `SendAncillaryBuffer`, `recvmsg` with `RecvAncillaryBuffer`,
//! `sockopt::socket_peercred`), so this crate keeps `#![forbid(unsafe_code)]`; it is
//! maintained by the Bytecode Alliance, used by `std`-adjacent crates (`tempfile`, `wasmtime`),
//! and with only `net` and `process` it adds one small crate (and its syscall table) to the
//! tree. The graceful-restart crates (`shellflip`, `ecdysis`) fork or exec the process
//! themselves and carry their own protocol; here the application starts the new process
//! however it likes, and the kernel's states cross with the sockets.

mod channel;
mod fds;
mod new;
mod old;

use std::path::PathBuf;
use std::time::Duration;

pub use fds::MAX_LISTENERS;
pub use new::{HandoverStore, TakeOver};
pub use old::{HandedOver, Handover, HandoverBuilder};

use crate::runtime::error::LifecycleError;
use crate::seal::SealError;

/// How long a takeover may take, from the new process's connection to its commit, unless
/// [`HandoverBuilder::timeout`] or [`TakeOver::connect_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong in a takeover, on either side. None of them carries a key or a state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TakeoverError {
    /// A system call on the handover socket failed.
    #[error("cannot {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The handover directory cannot be used: anyone who can enter it can reach the socket.
    #[error("handover directory `{}` cannot be used: {problem}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A live process already listens for a takeover on this socket.
    #[error("a process already listens for a takeover on `{}`", socket.display())]
    AlreadyListening {
        /// The socket.
        socket: PathBuf,
    },
    /// No process listens on the socket: there is nothing to take over (start afresh).
    #[error("no process to take over: nothing listens on `{}`", socket.display())]
    NoOldProcess {
        /// The socket.
        socket: PathBuf,
    },
    /// The process at the other end runs as another user.
    #[error("refused a peer running as uid {peer_uid}: only this user (uid {our_uid}) may take over")]
    PeerNotSameUser {
        /// The peer's effective user id.
        peer_uid: u32,
        /// Ours.
        our_uid: u32,
    },
    /// The other process closed the connection before the takeover was over (it crashed, was
    /// killed, or gave up).
    #[error("the other process closed the connection before the takeover was over")]
    PeerGone,
    /// The takeover outlived its timeout.
    #[error("the takeover timed out")]
    TimedOut,
    /// The other process said something this one does not understand.
    #[error("handover protocol error: {0}")]
    Protocol(String),
    /// A frame over the size limit.
    #[error("a handover frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// More listeners than one message can pass.
    #[error("{count} listening sockets; at most {MAX_LISTENERS} can be handed over")]
    TooManyListeners {
        /// How many were given.
        count: usize,
    },
    /// The old process refused the takeover (another one is running, or it has handed over
    /// already, or it speaks another protocol).
    #[error("the old process refused the takeover: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// The old process could not stop a service or export its state; it serves on.
    #[error("the old process could not hand over: {reason}")]
    Failed {
        /// Why.
        reason: String,
    },
    /// The new process gave up the takeover ([`TakeOver::abort`]); the old one serves on.
    #[error("the new process aborted the takeover: {reason}")]
    Aborted {
        /// Why, as the new process said.
        reason: String,
    },
    /// The kernel has no sealer ([`KernelBuilder::sealer`](crate::KernelBuilder::sealer)):
    /// states cross sealed, with a key both processes hold.
    #[error("the kernel has no sealer: states cross sealed, with a keyring both processes share")]
    NoSealer,
    /// The old process could not stop a service to hand it over.
    #[error("cannot stop `{service}` to hand it over: {source}")]
    Stop {
        /// The service.
        service: String,
        /// Why.
        source: Box<LifecycleError>,
    },
    /// A service's state could not be exported.
    #[error("cannot export the state of `{service}`: {source}")]
    Export {
        /// The service.
        service: String,
        /// Why.
        source: Box<LifecycleError>,
    },
    /// A service's state could not be sealed.
    #[error("cannot seal the state of `{service}`: {source}")]
    Seal {
        /// The service.
        service: String,
        /// Why.
        source: SealError,
    },
    /// The takeover was committed or aborted already.
    #[error("the takeover is over already")]
    Over,
}
