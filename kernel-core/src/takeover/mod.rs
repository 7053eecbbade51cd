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
//!    accepted to be answered; then the kernel takes its lifecycle lock (no service starts,
//!    stops, is replaced or unregistered meanwhile) and **holds** every service, dependants
//!    first, as an in-process replacement does: holding a service waits for the calls it
//!    admitted, which finish in the old process; then a running service's `stop` hook runs.
//!    From here until the end of the takeover, new connections wait in the listening sockets'
//!    backlog (none is refused, none is answered twice), and **in-process calls** to the
//!    services — synchronous and async alike — **wait**: once the takeover is committed they get
//!    [`CallError::NotRunning`](crate::CallError::NotRunning) (and later calls by name
//!    [`CallError::NotFound`](crate::CallError::NotFound)); if it fails they are served by the
//!    old version, with its state. A call waits at most until the takeover ends — bounded by
//!    [`HandoverBuilder::timeout`] — or less with its own bound
//!    ([`Handle::call_timeout`](crate::Handle::call_timeout), `call_async_timeout`:
//!    [`CallError::Timeout`](crate::CallError::Timeout)). Meanwhile
//!    [`Kernel::status`](crate::Kernel::status) says `Running`, as during a replacement.
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
//! # Asking for an upgrade, and hearing how it went
//!
//! The application starts the new process however it likes. Or it gives the old process a way
//! to start it ([`HandoverBuilder::successor`]) and asks for an upgrade: in the old process with
//! [`Handover::upgrade`] (on SIGHUP, say), from another process with [`request_upgrade`] (a
//! `reload` command). Either returns once the new binary took over — with its process id — or
//! with why it did not: the new process aborted (its reason, such as a state it cannot open),
//! died, exited before connecting ([`TakeoverError::SuccessorExited`]) or did not connect in
//! time (it is killed); the old process then serves on. `request_upgrade` wraps the reason in
//! [`TakeoverError::UpgradeFailed`]; an upgrade or takeover already under way is
//! [`TakeoverError::Refused`]. The one who asked hears of a success before
//! [`Handover::wait`] does (and the old process exits).
//!
//! ```no_run
//! # fn main() -> std::process::ExitCode {
//! // `myapp reload /run/myapp`: exit status 0 once the new binary serves, 1 and why if not.
//! match microkernel::takeover::request_upgrade("/run/myapp") {
//!     Ok(done) => println!("upgraded: process {} serves", done.successor_pid),
//!     Err(error) => {
//!         eprintln!("error: {error}");
//!         return std::process::ExitCode::FAILURE;
//!     }
//! }
//! # std::process::ExitCode::SUCCESS }
//! ```
//!
//! # Under systemd
//!
//! ```ini
//! [Service]
//! Type=notify
//! NotifyAccess=all
//! ExecStart=/usr/bin/myapp serve /run/myapp
//! # The running process starts the binary at its path (the new one, once installed), which
//! # takes over; the command exits 0 once it serves, non-zero with the reason if it failed
//! # (the old process serves on), so `systemctl reload` fails visibly.
//! ExecReload=/usr/bin/myapp reload /run/myapp
//! # Upgrades may take a whole takeover, twice DEFAULT_TIMEOUT at most (`request_upgrade`).
//! TimeoutSec=150
//! KillMode=mixed
//! ```
//!
//! `KillMode=mixed` and `NotifyAccess=all` let the new process, started by the old one, live on
//! in the unit and notify systemd. The old process, once its [`Handover::wait`] returned, tells
//! systemd its successor is the main process (`MAINPID=<successor_pid>` on `$NOTIFY_SOCKET`)
//! *before* it exits, so systemd never sees the main process gone: it neither kills the new
//! process nor starts a second instance. The new process says `READY=1` once its commit
//! returned. This crate does not send those messages itself (the application owns its
//! notifications; the `sd-notify` crate sends each in one line, and nothing when
//! `NOTIFY_SOCKET` is unset); `examples/binary_upgrade` does. `ExecReload=/bin/kill -HUP
//! $MAINPID` with [`Handover::upgrade`] on SIGHUP works too, but `systemctl reload` then learns
//! nothing of a failure: only the log says it.
//!
//! **Socket activation.** With a socket unit (`ListenStream=`, `FileDescriptorName=http`), the
//! first process takes the sockets systemd passed with [`activated_sockets`] (by name) and
//! hands them to
//! [`HandoverBuilder::listener`] like any other: each successor inherits them from its
//! predecessor, though systemd did not start it.
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
//!
//! # Why `listenfd`
//!
//! A socket passed by systemd arrives as a bare descriptor number (3, 4, …), and turning a
//! number into an owned socket is `unsafe` (nothing proves the number is open and unowned).
//! [`activated_sockets`] leaves that one conversion to `listenfd` (maintained, small, depending
//! on `libc` only), which checks each descriptor's type and family before handing out an owned
//! `TcpListener`, `UnixListener`, `UdpSocket` or `UnixDatagram`. `sd-notify`'s `listen_fds`
//! gives raw numbers only, which would need the `unsafe` here. The names (`LISTEN_FDNAMES`,
//! which `listenfd` does not read), the check that the sockets are meant for this process
//! (`LISTEN_PID`) and close-on-exec are done here.

mod activation;
mod channel;
mod fds;
mod new;
mod old;
mod request;

use std::path::PathBuf;
use std::time::Duration;

pub use activation::{ActivatedSocket, ActivatedSockets, activated_sockets};
pub use fds::MAX_LISTENERS;
pub use new::{HandoverStore, TakeOver};
pub use old::{HandedOver, Handover, HandoverBuilder};
pub use request::{request_upgrade, request_upgrade_timeout};

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
    /// An upgrade was asked for, but the old process has no way to start a new binary
    /// ([`HandoverBuilder::successor`]).
    #[error("the old process has no way to start a new binary (HandoverBuilder::successor)")]
    NoSuccessor,
    /// The new binary started for an upgrade exited before it took over (its own error is in
    /// its standard error, or the journal).
    #[error("the new binary {} before taking over", describe_exit(*.code, *.signal))]
    SuccessorExited {
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
    },
    /// The old process tried the upgrade asked for ([`request_upgrade`]) and it failed, for
    /// `source`; the old process serves on.
    #[error("the upgrade failed: {source}")]
    UpgradeFailed {
        /// Why, as the old process reported it: the takeover's own error
        /// ([`Aborted`](Self::Aborted) with the new process's reason, [`PeerGone`](Self::PeerGone)
        /// if it died, [`TimedOut`](Self::TimedOut)), [`SuccessorExited`](Self::SuccessorExited),
        /// [`NoSuccessor`](Self::NoSuccessor), or [`Failed`](Self::Failed) with the message of
        /// any other error.
        source: Box<TakeoverError>,
    },
    /// Sockets passed by the service manager (`LISTEN_FDS`) cannot be taken.
    #[error("socket activation: {problem}")]
    Activation {
        /// What is wrong.
        problem: String,
    },
}

/// "exited with code 1", "was killed by signal 9".
fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "exited".to_owned(),
    }
}
