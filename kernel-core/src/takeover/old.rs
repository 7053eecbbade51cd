//! The handing-over side: the running process listens for a successor, pauses, hands each
//! service's state over sealed, and lets go on commit — or takes everything back.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::channel::{self, Channel, PROTOCOL, ToNew, ToOld};
use super::fds::{MAX_LISTENERS, send_fds};
use super::{DEFAULT_TIMEOUT, TakeoverError};
use crate::runtime::kernel::Kernel;
use crate::runtime::service::Status;

/// How often the listening thread looks whether it should end.
const POLL: Duration = Duration::from_millis(20);

type Hook = Box<dyn FnMut() + Send>;

/// Builds a [`Handover`]: the kernel, the directory of the socket, the listening sockets to
/// pass, and the hooks that pause and resume the application's own intake.
#[must_use = "call listen() to listen for a takeover"]
pub struct HandoverBuilder {
    kernel: Kernel,
    dir: PathBuf,
    listeners: Vec<(String, OwnedFd)>,
    pause: Option<Hook>,
    resume: Option<Hook>,
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

    /// How long a takeover may take, from the successor's connection to its commit (default
    /// [`DEFAULT_TIMEOUT`]); past it, the services are taken back. Connections that arrive
    /// during a takeover wait at most about this long.
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
    timeout: Duration,
    /// A takeover is under way: another is refused.
    busy: AtomicBool,
    handed_over: AtomicBool,
    /// The `Handover` was dropped: stop listening, take back a takeover under way.
    closing: AtomicBool,
    socket: PathBuf,
    outcomes: Sender<Result<HandedOver, TakeoverError>>,
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
        if shared.busy.swap(true, Ordering::SeqCst) {
            tracing::warn!(peer_pid = pid, "refused a second takeover while one runs");
            refuse(stream, shared.timeout, "another takeover is under way");
            continue;
        }
        tracing::info!(peer_pid = pid, peer_uid = uid, "a new process connected to take over");
        let session_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("microkernel-handover-session".into())
            .spawn(move || {
                let outcome = Session::new(&session_shared, pid).run(stream);
                match &outcome {
                    Ok(done) => tracing::info!(
                        successor_pid = done.successor_pid,
                        services = ?done.services,
                        "handed over to the new process"
                    ),
                    Err(error) => tracing::warn!(%error, "takeover failed; this process serves on"),
                }
                session_shared.busy.store(false, Ordering::SeqCst);
                let _ = session_shared.outcomes.send(outcome);
            });
        // The session runs to its end on its own (it is bounded by the timeout).
        match spawned {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "no thread for a takeover; refused");
                shared.busy.store(false, Ordering::SeqCst);
            }
        }
    }
}

/// Tells a peer why it is refused, best effort.
fn refuse(stream: UnixStream, timeout: Duration, reason: &str) {
    let mut channel = Channel::new(stream, timeout.min(Duration::from_secs(1)));
    let _ = channel.recv::<ToOld>();
    let _ = channel.send(&ToNew::Refused { reason: reason.into() });
}

/// One takeover, on the old process's side.
struct Session<'a> {
    shared: &'a Shared,
    peer_pid: u32,
    /// The services stopped for the handover, in the order they stopped; `None` until paused.
    stopped: Option<Vec<String>>,
    states_sent: Vec<String>,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, peer_pid: u32) -> Self {
        Self {
            shared,
            peer_pid,
            stopped: None,
            states_sent: Vec::new(),
        }
    }

    fn run(mut self, stream: UnixStream) -> Result<HandedOver, TakeoverError> {
        let mut channel = Channel::new(stream, self.shared.timeout);
        let outcome = self.exchange(&mut channel);
        if outcome.is_err() {
            self.take_back();
        }
        outcome
    }

    fn exchange(&mut self, channel: &mut Channel) -> Result<HandedOver, TakeoverError> {
        match channel.recv::<ToOld>()? {
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
                    if let Err(error) = self.pause() {
                        let _ = channel.send(&ToNew::Failed {
                            reason: error.to_string(),
                        });
                        return Err(error);
                    }
                    if self.shared.kernel.status(&service).is_none() {
                        channel.send(&ToNew::NoState)?;
                        continue;
                    }
                    match self.shared.kernel.export_for_handover(&service) {
                        Ok((sealed, generation)) => {
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
            }
        }
    }

    /// Pauses the application's intake and stops every running service, dependants first —
    /// once per takeover.
    fn pause(&mut self) -> Result<(), TakeoverError> {
        if self.stopped.is_some() {
            return Ok(());
        }
        if let Some(pause) = &mut self.shared.hooks.lock().unwrap_or_else(PoisonError::into_inner).pause {
            pause();
        }
        let stopped = self.stopped.insert(Vec::new());
        let kernel = &self.shared.kernel;
        let order = kernel.start_order().map_err(|source| TakeoverError::Stop {
            service: "(dependency order)".into(),
            source: Box::new(source),
        })?;
        for service in order.iter().rev() {
            if kernel.status(service) != Some(Status::Running) {
                continue;
            }
            kernel.stop(service).map_err(|source| TakeoverError::Stop {
                service: service.clone(),
                source: Box::new(source),
            })?;
            stopped.push(service.clone());
        }
        tracing::info!(services = ?stopped, "paused for a takeover: services stopped");
        Ok(())
    }

    /// The takeover failed: start again what was stopped, in dependency order, and resume.
    fn take_back(&mut self) {
        let Some(stopped) = self.stopped.take() else { return };
        for service in stopped.iter().rev() {
            if let Err(error) = self.shared.kernel.start(service) {
                tracing::error!(service, %error, "could not start a service again after a failed takeover");
            }
        }
        if let Some(resume) = &mut self.shared.hooks.lock().unwrap_or_else(PoisonError::into_inner).resume {
            resume();
        }
        tracing::info!(services = ?stopped, "took back the services after a failed takeover");
    }

    /// Commit: unregister every service, close the listeners, remove the socket.
    fn let_go(&mut self) -> Vec<String> {
        let stopped = self.stopped.take().unwrap_or_default();
        self.shared.handed_over.store(true, Ordering::SeqCst);
        let kernel = &self.shared.kernel;
        let order = kernel.start_order().unwrap_or_else(|_| kernel.services());
        for service in order.iter().rev() {
            if let Err(error) = kernel.unregister(service) {
                tracing::warn!(service, %error, "could not unregister a handed-over service");
            }
        }
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
