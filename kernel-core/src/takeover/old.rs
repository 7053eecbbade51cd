//! The handing-over side: the running process listens for a successor, pauses, hands each
//! service's state over sealed, and lets go on commit — or takes everything back.

use std::cell::OnceCell;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::channel::{self, Channel, Failure, PROTOCOL, ToNew, ToOld};
use super::fds::{MAX_LISTENERS, send_fds};
use super::{DEFAULT_TIMEOUT, TakeoverError};
use crate::runtime::kernel::{Kernel, Paused};
use crate::runtime::lifecycle::Lifecycle;

/// How often the listening thread looks whether it should end.
const POLL: Duration = Duration::from_millis(20);

/// How long a finished takeover waits for its outcome to reach whoever asked for the upgrade
/// ([`request_upgrade`](super::request_upgrade)) before [`Handover::wait`] hears of it (and the
/// process, typically, exits).
const REPORT_BOUND: Duration = Duration::from_secs(5);

type Hook = Box<dyn FnMut() + Send>;
type StartSuccessor = Box<dyn FnMut() -> io::Result<Child> + Send>;

/// Builds a [`Handover`]: the kernel, the directory of the socket, the listening sockets to
/// pass, and the hooks that pause and resume the application's own intake.
#[must_use = "call listen() to listen for a takeover"]
pub struct HandoverBuilder {
    kernel: Kernel,
    dir: PathBuf,
    listeners: Vec<(String, OwnedFd)>,
    pause: Option<Hook>,
    resume: Option<Hook>,
    successor: Option<StartSuccessor>,
    timeout: Duration,
}

impl std::fmt::Debug for HandoverBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoverBuilder")
            .field("dir", &self.dir)
            .field(
                "listeners",
                &self.listeners.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("successor", &self.successor.is_some())
            .finish_non_exhaustive()
    }
}

impl HandoverBuilder {
    /// A listening socket (TCP or Unix) to pass to the successor under `name`, which it asks
    /// for with [`TakeOver::take_listener`](super::TakeOver::take_listener). Give a duplicate
    /// (`listener.try_clone()?`) and keep accepting on yours: the descriptor given here is
    /// closed on commit.
    pub fn listener(mut self, name: impl Into<String>, listener: impl Into<OwnedFd>) -> Self {
        self.listeners.push((name.into(), listener.into()));
        self
    }

    /// Called when a successor asks for the first state: stop accepting on the listeners and
    /// return once every request accepted so far has been answered (bound the wait: a client
    /// that never finishes its request must not hold up the takeover). Until the commit, new
    /// connections wait in the listeners' backlog. Without it, the application must not be
    /// serving requests that call the kernel.
    pub fn on_pause(mut self, pause: impl FnMut() + Send + 'static) -> Self {
        self.pause = Some(Box::new(pause));
        self
    }

    /// Called when a takeover failed after `on_pause`: the services run again; accept again.
    pub fn on_resume(mut self, resume: impl FnMut() + Send + 'static) -> Self {
        self.resume = Some(Box::new(resume));
        self
    }

    /// How to start the new binary when an upgrade is asked for — by
    /// [`Handover::upgrade`] (on a signal, say) or by another process through
    /// [`request_upgrade`](super::request_upgrade) (a `reload` command): typically
    /// `Command::new(path_of_the_binary).args(...).spawn()`. The process started must take
    /// over ([`TakeOver::connect`](super::TakeOver::connect) on the same directory) within the
    /// [`timeout`](Self::timeout); its outcome is reported to whoever asked. Without it,
    /// upgrades asked for fail with [`TakeoverError::NoSuccessor`] (a new process started by
    /// other means may still take over).
    pub fn successor(mut self, start: impl FnMut() -> io::Result<Child> + Send + 'static) -> Self {
        self.successor = Some(Box::new(start));
        self
    }

    /// How long a takeover may take, from the successor's connection to its commit (default
    /// [`DEFAULT_TIMEOUT`]); past it, the services are taken back. Connections that arrive
    /// during a takeover wait at most about this long, and so do in-process calls to the
    /// services (or less, with their own timeout: [`Handle::call_timeout`](crate::Handle::call_timeout)).
    /// An upgrade asked for ([`Handover::upgrade`]) also gives the new binary this long, from
    /// its start, to connect.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Binds `<dir>/handover.sock` (creating `dir` mode 0700 if missing; refusing one others
    /// may enter) and listens for a successor on a thread of its own.
    pub fn listen(self) -> Result<Handover, TakeoverError> {
        if self.listeners.len() > MAX_LISTENERS {
            return Err(TakeoverError::TooManyListeners {
                count: self.listeners.len(),
            });
        }
        if self.kernel.sealer().is_none() {
            return Err(TakeoverError::NoSealer);
        }
        let (listener, socket) = channel::bind(&self.dir)?;
        listener.set_nonblocking(true).map_err(|source| TakeoverError::Io {
            op: "make the handover socket non-blocking",
            source,
        })?;
        let (outcomes_tx, outcomes) = mpsc::channel();
        let shared = Arc::new(Shared {
            kernel: self.kernel,
            listeners: Mutex::new(self.listeners),
            hooks: Mutex::new(Hooks {
                pause: self.pause,
                resume: self.resume,
            }),
            successor: Mutex::new(self.successor),
            upgrading: AtomicBool::new(false),
            watch: Mutex::new(None),
            timeout: self.timeout,
            busy: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            socket: socket.clone(),
            outcomes: outcomes_tx,
        });
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("microkernel-handover".into())
            .spawn(move || accept_loop(&thread_shared, &listener))
            .map_err(|source| TakeoverError::Io {
                op: "start the handover thread",
                source,
            })?;
        tracing::info!(socket = %socket.display(), "listening for a takeover");
        Ok(Handover {
            shared,
            outcomes: Mutex::new(outcomes),
            thread: Some(thread),
        })
    }
}

/// A running process's readiness to be taken over by a new one (see the [module](super)).
///
/// Dropping it stops listening and removes the socket; a takeover under way is taken back.
pub struct Handover {
    shared: Arc<Shared>,
    outcomes: Mutex<Receiver<Result<HandedOver, TakeoverError>>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("socket", &self.shared.socket)
            .field("handed_over", &self.shared.handed_over.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// A takeover that succeeded, as the old process saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandedOver {
    /// The services the old process stopped and unregistered, in the order they stopped.
    pub services: Vec<String>,
    /// The services whose state the successor took.
    pub states_sent: Vec<String>,
    /// The successor's process id.
    pub successor_pid: u32,
}

impl Handover {
    /// Starts building a handover for `kernel`, with its socket in `dir`.
    pub fn builder(kernel: &Kernel, dir: impl AsRef<Path>) -> HandoverBuilder {
        HandoverBuilder {
            kernel: kernel.clone(),
            dir: dir.as_ref().to_owned(),
            listeners: Vec::new(),
            pause: None,
            resume: None,
            successor: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The socket a successor connects to.
    pub fn socket(&self) -> &Path {
        &self.shared.socket
    }

    /// Whether a successor has taken over (this process serves nothing any more).
    pub fn is_handed_over(&self) -> bool {
        self.shared.handed_over.load(Ordering::SeqCst)
    }

    /// The outcome of the next takeover attempt to end — success, or why it failed (this
    /// process then serves on) — waiting at most `timeout` (`None`: for ever). `None` if none
    /// ended in time.
    pub fn next_outcome(&self, timeout: Option<Duration>) -> Option<Result<HandedOver, TakeoverError>> {
        let outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        match timeout {
            Some(timeout) => outcomes.recv_timeout(timeout).ok(),
            None => outcomes.recv().ok(),
        }
    }

    /// Starts the new binary (as [`HandoverBuilder::successor`] says) and waits until it has
    /// taken over — `Ok` with what was handed over and its process id; this process then
    /// serves nothing and may exit (as [`wait`](Self::wait) also learns) — or until the attempt
    /// failed, saying why: the takeover's own error (the new process aborted, naming what it
    /// could not do; it was killed; the takeover timed out), or
    /// [`TakeoverError::SuccessorExited`] if it exited before connecting,
    /// [`TakeoverError::TimedOut`] if it did not connect within the timeout (it is killed),
    /// [`TakeoverError::NoSuccessor`] without a way to start one, [`TakeoverError::Refused`] if
    /// an upgrade or a takeover is under way already or this process has handed over. (A
    /// takeover error other than `Aborted`, `PeerGone` and `TimedOut` comes as
    /// [`TakeoverError::Failed`] with its message, as [`request_upgrade`](super::request_upgrade)
    /// reports it; [`next_outcome`](Self::next_outcome) has it whole.) After a failure this
    /// process serves on, with its state.
    ///
    /// Blocks for up to about twice the [timeout](HandoverBuilder::timeout): call it off an
    /// async runtime's workers (`spawn_blocking`).
    pub fn upgrade(&self) -> Result<HandedOver, TakeoverError> {
        self.shared.upgrade().0
    }

    /// Waits until a successor has taken over, past any failed attempts (each logged); then
    /// this process may exit.
    pub fn wait(&self) -> HandedOver {
        loop {
            match self.next_outcome(None) {
                Some(Ok(handed_over)) => return handed_over,
                Some(Err(_)) => {}
                // The sender lives in `shared`, which this holds: never closed.
                None => thread::sleep(POLL),
            }
        }
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if !self.shared.handed_over.load(Ordering::SeqCst) {
            let _ = fs::remove_file(&self.shared.socket);
        }
    }
}

struct Hooks {
    pause: Option<Hook>,
    resume: Option<Hook>,
}

struct Shared {
    kernel: Kernel,
    listeners: Mutex<Vec<(String, OwnedFd)>>,
    hooks: Mutex<Hooks>,
    /// Starts the new binary for an upgrade asked for.
    successor: Mutex<Option<StartSuccessor>>,
    /// An upgrade asked for is under way: another is refused.
    upgrading: AtomicBool,
    /// Whoever asked for the upgrade under way waits for the outcome of the next takeover
    /// (the one its new binary starts).
    watch: Mutex<Option<Watch>>,
    timeout: Duration,
    /// A takeover is under way: another is refused.
    busy: AtomicBool,
    handed_over: AtomicBool,
    /// The `Handover` was dropped: stop listening, take back a takeover under way.
    closing: AtomicBool,
    socket: PathBuf,
    outcomes: Sender<Result<HandedOver, TakeoverError>>,
}

/// Whoever asked for an upgrade, waiting for the outcome of the takeover it started.
struct Watch {
    /// The outcome, as it can be reported to another process.
    outcome: SyncSender<Result<HandedOver, Failure>>,
    /// Closed once the outcome has been passed on to whoever asked.
    reported: Receiver<()>,
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    while !shared.closing.load(Ordering::SeqCst) && !shared.handed_over.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(POLL);
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "accepting on the handover socket failed");
                thread::sleep(POLL);
                continue;
            }
        };
        if let Err(error) = stream.set_nonblocking(false) {
            tracing::warn!(%error, "handover connection unusable");
            continue;
        }
        // Nobody else is told anything, not even that a takeover runs.
        let (uid, pid) = match channel::peer_credentials(&stream)
            .and_then(|(uid, pid)| channel::check_peer(uid, channel::our_uid()).map(|()| (uid, pid)))
        {
            Ok(peer) => peer,
            Err(error) => {
                tracing::warn!(%error, "refused a takeover connection");
                let _ = shared.outcomes.send(Err(error));
                continue;
            }
        };
        let connection_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("microkernel-handover-session".into())
            .spawn(move || serve_connection(&connection_shared, stream, uid, pid));
        // The connection is served to its end on its own (bounded by the timeout).
        if let Err(error) = spawned {
            tracing::warn!(%error, "no thread for a handover connection; refused");
        }
    }
}

/// One connection of this user: a takeover (`Hello`), or a request for an upgrade.
fn serve_connection(shared: &Shared, stream: UnixStream, uid: u32, pid: u32) {
    let mut channel = Channel::new(stream, shared.timeout);
    let first = match channel.recv::<ToOld>() {
        Ok(first) => first,
        Err(error) => {
            tracing::warn!(peer_pid = pid, %error, "a handover connection closed before saying anything");
            let _ = shared.outcomes.send(Err(error));
            return;
        }
    };
    if let ToOld::Upgrade { protocol } = first {
        serve_upgrade_request(shared, channel, protocol, pid);
        return;
    }
    if shared.busy.swap(true, Ordering::SeqCst) {
        tracing::warn!(peer_pid = pid, "refused a second takeover while one runs");
        let _ = channel.send(&ToNew::Refused {
            reason: "another takeover is under way".into(),
        });
        return;
    }
    tracing::info!(peer_pid = pid, peer_uid = uid, "a new process connected to take over");
    // The first takeover after an upgrade was asked for is the one its new binary started.
    let watch = shared.watch.lock().unwrap_or_else(PoisonError::into_inner).take();
    let outcome = run_session(shared, pid, &mut channel, first);
    drop(channel);
    match &outcome {
        Ok(done) => tracing::info!(
            successor_pid = done.successor_pid,
            services = ?done.services,
            "handed over to the new process"
        ),
        Err(error) => tracing::warn!(%error, "takeover failed; this process serves on"),
    }
    shared.busy.store(false, Ordering::SeqCst);
    if let Some(watch) = watch {
        let report = outcome.as_ref().map(Clone::clone).map_err(Failure::from);
        // Whoever asked hears of it before `wait` does (and this process exits).
        if watch.outcome.send(report).is_ok() {
            let _ = watch.reported.recv_timeout(REPORT_BOUND);
        }
    }
    let _ = shared.outcomes.send(outcome);
}

/// Another process asks for an upgrade ([`request_upgrade`](super::request_upgrade)): start
/// the new binary, and answer with the outcome.
fn serve_upgrade_request(shared: &Shared, mut channel: Channel, protocol: u32, pid: u32) {
    if protocol != PROTOCOL {
        let reason = format!("this process speaks handover protocol {PROTOCOL}, not {protocol}");
        let _ = channel.send(&ToNew::Refused { reason });
        return;
    }
    tracing::info!(peer_pid = pid, "an upgrade was asked for");
    // The upgrade may take the new binary's start plus a whole takeover.
    channel.extend(shared.timeout * 2 + REPORT_BOUND);
    let (outcome, reported) = shared.upgrade();
    let answer = match &outcome {
        Ok(done) => ToNew::Upgraded {
            services: done.services.clone(),
            states_sent: done.states_sent.clone(),
            successor_pid: done.successor_pid,
        },
        Err(TakeoverError::Refused { reason }) => ToNew::Refused { reason: reason.clone() },
        Err(error) => ToNew::UpgradeFailed {
            failure: Failure::from(error),
        },
    };
    if let Err(error) = channel.send(&answer) {
        tracing::warn!(peer_pid = pid, %error, "could not tell the outcome of an upgrade to whoever asked");
    }
    drop(reported);
}

impl Shared {
    /// Starts the new binary and waits for the outcome of its takeover; also returns what to
    /// drop once the outcome has been passed on (until then, [`Handover::wait`] does not hear
    /// of a success).
    fn upgrade(&self) -> (Result<HandedOver, TakeoverError>, Option<Sender<()>>) {
        let refused = |reason: &str| {
            Err(TakeoverError::Refused {
                reason: reason.to_owned(),
            })
        };
        if self.handed_over.load(Ordering::SeqCst) {
            return (refused("this process has handed over already"), None);
        }
        if self.upgrading.swap(true, Ordering::SeqCst) {
            return (refused("an upgrade is under way"), None);
        }
        let _upgrading = ClearOnDrop(&self.upgrading);
        if self.busy.load(Ordering::SeqCst) {
            return (refused("a takeover is under way"), None);
        }
        let (outcome_tx, outcome) = mpsc::sync_channel(1);
        let (reported, reported_rx) = mpsc::channel();
        // Watched before the new binary starts: it may connect at once.
        *self.watch.lock().unwrap_or_else(PoisonError::into_inner) = Some(Watch {
            outcome: outcome_tx,
            reported: reported_rx,
        });
        let started = match self.successor.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            Some(start) => start().map_err(|source| TakeoverError::Io {
                op: "start the new binary",
                source,
            }),
            None => Err(TakeoverError::NoSuccessor),
        };
        let child = match started {
            Ok(child) => child,
            Err(error) => {
                self.unwatch();
                tracing::warn!(%error, "an upgrade was asked for, but no new binary started");
                return (Err(error), None);
            }
        };
        tracing::info!(pid = child.id(), "started the new binary to take over");
        let outcome = self.await_successor(child, &outcome);
        match &outcome {
            Ok(done) => tracing::info!(successor_pid = done.successor_pid, "the upgrade succeeded"),
            Err(error) => tracing::warn!(%error, "the upgrade failed; this process serves on"),
        }
        (outcome, Some(reported))
    }

    /// Waits for the takeover of the new binary `child`, or for its exit before it took over,
    /// or for the timeout.
    fn await_successor(
        &self,
        mut child: Child,
        outcome: &Receiver<Result<HandedOver, Failure>>,
    ) -> Result<HandedOver, TakeoverError> {
        let deadline = Instant::now() + self.timeout;
        let result = loop {
            match outcome.recv_timeout(POLL) {
                Ok(report) => break report.map_err(Failure::into_error),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break Err(TakeoverError::PeerGone),
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    if self.unwatch() {
                        // It never connected.
                        break Err(TakeoverError::SuccessorExited {
                            code: status.code(),
                            signal: std::os::unix::process::ExitStatusExt::signal(&status),
                        });
                    }
                    // Its takeover is under way: the session ends at once (the connection
                    // closed) and says how.
                    break outcome
                        .recv_timeout(self.timeout)
                        .map_err(|_| TakeoverError::PeerGone)
                        .and_then(|report| report.map_err(Failure::into_error));
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot tell whether the new binary still runs"),
            }
            // A takeover under way is bounded by its own timeout; one that never began is not.
            if Instant::now() >= deadline && self.unwatch() {
                tracing::warn!(pid = child.id(), "the new binary did not connect in time; killing it");
                let _ = child.kill();
                let _ = child.wait();
                return Err(TakeoverError::TimedOut);
            }
        };
        // Whether it serves now or is on its way out, it is reaped when it ends.
        let _ = thread::Builder::new()
            .name("microkernel-successor-reaper".into())
            .spawn(move || child.wait());
        result
    }

    /// Stops watching for the next takeover; whether nobody had begun one meanwhile.
    fn unwatch(&self) -> bool {
        self.watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some()
    }
}

/// Clears a flag when dropped.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// One takeover, on the old process's side, from its first message (`Hello`) on; if it fails,
/// everything is taken back.
fn run_session(
    shared: &Shared,
    peer_pid: u32,
    channel: &mut Channel,
    first: ToOld,
) -> Result<HandedOver, TakeoverError> {
    // The services held while paused, which the holds borrow: it outlives the session.
    let services = OnceCell::new();
    let mut session = Session {
        shared,
        peer_pid,
        services: &services,
        paused: None,
        intake_paused: false,
        states_sent: Vec::new(),
    };
    let outcome = session.exchange(channel, first);
    if outcome.is_err() {
        session.take_back();
    }
    outcome
}

/// One takeover, on the old process's side.
struct Session<'a> {
    shared: &'a Shared,
    peer_pid: u32,
    services: &'a OnceCell<Vec<Arc<dyn Lifecycle>>>,
    /// The services held (the running ones stopped) for the handover; `None` until paused.
    paused: Option<Paused<'a>>,
    /// The `on_pause` hook ran: `on_resume` runs if the takeover fails.
    intake_paused: bool,
    states_sent: Vec<String>,
}

impl Session<'_> {
    fn exchange(&mut self, channel: &mut Channel, first: ToOld) -> Result<HandedOver, TakeoverError> {
        match first {
            ToOld::Hello { protocol } if protocol == PROTOCOL => {}
            ToOld::Hello { protocol } => {
                let reason = format!("this process speaks handover protocol {PROTOCOL}, not {protocol}");
                let _ = channel.send(&ToNew::Refused { reason: reason.clone() });
                return Err(TakeoverError::Refused { reason });
            }
            other => return Err(TakeoverError::Protocol(format!("expected Hello, got {other:?}"))),
        }
        if self.shared.handed_over.load(Ordering::SeqCst) {
            let reason = "this process has handed over already".to_owned();
            let _ = channel.send(&ToNew::Refused { reason: reason.clone() });
            return Err(TakeoverError::Refused { reason });
        }
        {
            let listeners = self.shared.listeners.lock().unwrap_or_else(PoisonError::into_inner);
            channel.send(&ToNew::Welcome {
                listeners: listeners.iter().map(|(name, _)| name.clone()).collect(),
                pid: std::process::id(),
            })?;
            let fds: Vec<_> = listeners.iter().map(|(_, fd)| fd.as_fd()).collect();
            channel.arm()?;
            send_fds(channel.stream(), &fds)?;
        }
        loop {
            if self.shared.closing.load(Ordering::SeqCst) {
                return Err(TakeoverError::Aborted {
                    reason: "the old process stopped listening for a takeover".into(),
                });
            }
            match channel.recv::<ToOld>()? {
                ToOld::Load { service } => {
                    let exported = self.pause().and_then(|paused| paused.export(&service));
                    match exported {
                        Ok(None) => channel.send(&ToNew::NoState)?,
                        Ok(Some((sealed, generation))) => {
                            channel.send(&ToNew::State { generation })?;
                            channel.send_raw(&sealed)?;
                            tracing::debug!(service, generation, "state handed over, sealed");
                            self.states_sent.push(service);
                        }
                        Err(error) => {
                            let _ = channel.send(&ToNew::Failed {
                                reason: error.to_string(),
                            });
                            return Err(error);
                        }
                    }
                }
                ToOld::Commit => {
                    if let Err(error) = self.pause() {
                        let _ = channel.send(&ToNew::Failed {
                            reason: error.to_string(),
                        });
                        return Err(error);
                    }
                    let services = self.let_go();
                    // Past this point, this process serves nothing: the new one does.
                    let _ = channel.send(&ToNew::Committed);
                    return Ok(HandedOver {
                        services,
                        states_sent: std::mem::take(&mut self.states_sent),
                        successor_pid: self.peer_pid,
                    });
                }
                ToOld::Abort { reason } => return Err(TakeoverError::Aborted { reason }),
                ToOld::Hello { .. } => return Err(TakeoverError::Protocol("a second Hello".into())),
                ToOld::Upgrade { .. } => {
                    return Err(TakeoverError::Protocol("an upgrade request inside a takeover".into()));
                }
            }
        }
    }

    /// Pauses the application's intake, then holds every service, dependants first, stopping
    /// the running ones (each once the calls it admitted are over) — once per takeover. Calls
    /// arriving from now on wait.
    fn pause(&mut self) -> Result<&Paused<'_>, TakeoverError> {
        if self.paused.is_none() {
            if !self.intake_paused {
                self.intake_paused = true;
                if let Some(pause) = &mut self.shared.hooks.lock().unwrap_or_else(PoisonError::into_inner).pause {
                    pause();
                }
            }
            self.paused = Some(self.shared.kernel.pause_for_handover(self.services)?);
        }
        match &self.paused {
            Some(paused) => Ok(paused),
            None => unreachable!("paused just above"),
        }
    }

    /// The takeover failed: start again what was stopped, in dependency order (the calls that
    /// waited are served), and resume the intake.
    fn take_back(&mut self) {
        let stopped = self.paused.as_ref().map(Paused::stopped).unwrap_or_default();
        if let Some(paused) = self.paused.take() {
            paused.take_back();
        }
        if std::mem::take(&mut self.intake_paused) {
            if let Some(resume) = &mut self.shared.hooks.lock().unwrap_or_else(PoisonError::into_inner).resume {
                resume();
            }
            tracing::info!(services = ?stopped, "took back the services after a failed takeover");
        }
    }

    /// Commit: let every service go (the calls that waited get `NotRunning`), close the
    /// listeners, remove the socket.
    fn let_go(&mut self) -> Vec<String> {
        self.shared.handed_over.store(true, Ordering::SeqCst);
        let stopped = self.paused.take().map(Paused::let_go).unwrap_or_default();
        self.shared
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        // The successor binds its own socket here for the next takeover.
        let _ = fs::remove_file(&self.shared.socket);
        stopped
    }
}
