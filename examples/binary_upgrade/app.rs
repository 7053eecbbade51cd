//! The binary_upgrade application: an HTTP counter whose v1 and v2 keep different state types,
//! served by axum over a kernel, handing itself over to a new process of itself
//! (`microkernel::takeover`). Shared by the example (`main.rs`) and its test
//! (`tests/binary_takeover.rs`), which run it as child processes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::takeover::{Handover, TakeOver, TakeoverError, activated_sockets};
use microkernel::{Context, Event, Handler, Kernel, Migratable, Reply};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The environment variable holding the sealing key (hex) both versions share.
pub const KEY_VAR: &str = "MICROKERNEL_STATE_KEY";
/// Set to `connected`, `state` or `started` to make a taking-over process kill itself
/// (SIGKILL) at that step, or to `fail:<step>` to make it fail there and exit (its `TakeOver`
/// dropped): the tests' way to end the new process at each step.
pub const DIE_AT_VAR: &str = "BINARY_UPGRADE_DIE_AT";
/// How long a pause waits for the requests already accepted.
const DRAIN_BOUND: Duration = Duration::from_secs(5);

/// Version 1 of the counter's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
pub struct CountV1 {
    /// Hits counted.
    pub count: u32,
}

/// Version 2: a wider count, and how many hits v2 served.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = CountV1)]
pub struct CountV2 {
    /// Hits counted, by either version.
    pub count: u64,
    /// Hits v2 served.
    pub served_by_v2: u64,
}

impl From<CountV1> for CountV2 {
    fn from(v1: CountV1) -> Self {
        Self {
            count: v1.count.into(),
            served_by_v2: 0,
        }
    }
}

/// A table the counter does not use: the large state of the pause's measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
pub struct Table {
    /// Its entries.
    pub entries: HashMap<String, u64>,
}

#[derive(microkernel::Service, Default)]
#[service(name = "counter")]
struct CounterV1 {
    #[state]
    state: CountV1,
}

impl Handler for CounterV1 {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        if event.kind == "hit" {
            self.state.count += 1;
        }
        Reply::ok("v1", self.state.count.to_string())
    }
}

#[derive(microkernel::Service, Default)]
#[service(name = "counter", deps = ["table"])]
struct CounterV2 {
    #[state]
    state: CountV2,
}

impl Handler for CounterV2 {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        if event.kind == "hit" {
            self.state.count += 1;
            self.state.served_by_v2 += 1;
        }
        Reply::ok("v2", self.state.count.to_string())
    }
}

#[derive(microkernel::Service, Default)]
#[service(name = "table")]
struct TableService {
    #[state]
    table: Table,
}

impl Handler for TableService {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("entries", self.table.entries.len().to_string())
    }
}

/// What a server process runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `v1` or `v2`.
    pub version: String,
    /// The handover directory.
    pub dir: PathBuf,
    /// Where to listen when there is no process to take over.
    pub addr: SocketAddr,
    /// Entries of the table when starting afresh.
    pub entries: usize,
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Kills this process with SIGKILL if the test asked for it at `step` (`DIE_AT=<step>`), or
/// fails there (`DIE_AT=fail:<step>`), as a service that does not start would.
fn die_at(step: &str) -> Result<(), AnyError> {
    let Ok(at) = std::env::var(DIE_AT_VAR) else {
        return Ok(());
    };
    if at == step {
        let _ = Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        thread::sleep(Duration::from_secs(10));
    }
    if at.strip_prefix("fail:") == Some(step) {
        return Err(format!("failing at `{step}`, as asked").into());
    }
    Ok(())
}

/// Runs a server: takes over from the process listening in `options.dir` if there is one,
/// else starts afresh; serves until a successor has taken over. Prints `listening on <addr>
/// as <version>` once it serves, and `handed over to process <pid>` at the end.
pub fn serve(options: &Options) -> Result<(), AnyError> {
    let key = Key::from_env(Algorithm::Aes256Gcm, KEY_VAR)?;
    let sealer = Sealer::new(Keyring::new(1, key));
    // Under systemd with a socket unit, the `http` socket it passed (none otherwise; a process
    // taking over gets the old one's instead).
    let activated = activated_sockets()?.take_tcp_listener("http");
    let mut take_over = match TakeOver::connect(&options.dir) {
        Ok(take_over) => Some(take_over),
        Err(TakeoverError::NoOldProcess { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    let started = start(options, sealer, take_over.as_mut(), activated);
    let (kernel, listener) = match (started, take_over) {
        (Ok(started), Some(take_over)) => {
            take_over.commit()?;
            started
        }
        (Ok(started), None) => started,
        // Tell the old process why (it logs it, and serves on).
        (Err(error), Some(take_over)) => {
            take_over.abort(&error.to_string());
            return Err(error);
        }
        (Err(error), None) => return Err(error),
    };
    let addr = listener.local_addr()?;
    let intake = Intake::default();
    let handover = Handover::builder(&kernel, &options.dir)
        .listener("http", listener.try_clone()?)
        // An upgrade asked for (SIGHUP, or `binary_upgrade reload DIR`) starts the binary at
        // this process's path with its arguments.
        .successor(start_successor)
        .on_pause({
            let intake = intake.clone();
            move || intake.pause(DRAIN_BOUND)
        })
        .on_resume({
            let intake = intake.clone();
            move || intake.resume()
        })
        .listen()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // SIGHUP is listened for before this process says it is ready: a reload asked for at once
    // must upgrade it, not kill it (SIGHUP's default action).
    let hangups = {
        let _entered = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    };
    println!("listening on {addr} as {}", options.version);
    std::io::stdout().flush()?;
    // Under systemd (Type=notify, NotifyAccess=all): this process is the main one now, and
    // ready. Nothing is sent when NOTIFY_SOCKET is unset.
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::MainPid(std::process::id()),
        sd_notify::NotifyState::Ready,
    ]);
    listener.set_nonblocking(true)?;
    let handover = Arc::new(handover);
    let handed_over = runtime.block_on(async move {
        tokio::spawn(upgrade_on_hangup(hangups, Arc::clone(&handover)));
        let listener = Gated {
            listener: tokio::net::TcpListener::from_std(listener)?,
            intake,
        };
        let server = tokio::spawn(async move { axum::serve(listener, router(kernel)).await });
        let handed_over = tokio::task::spawn_blocking(move || handover.wait()).await?;
        server.abort();
        Ok::<_, AnyError>(handed_over)
    })?;
    // Under systemd: the successor is the main process now — said by this one, before it
    // exits, so that systemd never sees its main process gone (nothing without NOTIFY_SOCKET).
    let _ = sd_notify::notify(&[sd_notify::NotifyState::MainPid(handed_over.successor_pid)]);
    println!("handed over to process {}", handed_over.successor_pid);
    // Nothing is left to finish (the intake is paused for good).
    runtime.shutdown_background();
    Ok(())
}

/// Set to `v1` or `v2`: the version a successor started for an upgrade runs (by default, the
/// same arguments as this process: a new binary installed at the same path).
pub const NEXT_VERSION_VAR: &str = "BINARY_UPGRADE_NEXT_VERSION";
/// The version a successor was asked to run, in its environment (for a server whose arguments
/// do not name one: the test's).
pub const VERSION_VAR: &str = "BINARY_UPGRADE_VERSION";

/// Starts the binary at this process's path with its arguments (the version replaced by
/// `BINARY_UPGRADE_NEXT_VERSION` if set): a new binary installed there takes over.
fn start_successor() -> std::io::Result<Child> {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .ok_or_else(|| std::io::Error::other("no program path in the arguments"))?;
    let mut args: Vec<std::ffi::OsString> = args.collect();
    let mut command = Command::new(&program);
    if let Ok(next) = std::env::var(NEXT_VERSION_VAR) {
        if let Some(version) = args.iter_mut().find(|arg| *arg == "v1" || *arg == "v2") {
            *version = next.clone().into();
        }
        command.env(VERSION_VAR, next);
    }
    command.args(&args).env_remove(NEXT_VERSION_VAR).spawn()
}

/// On SIGHUP, upgrades (as `binary_upgrade reload DIR` does from another process): the new
/// binary takes over and this process exits, or this process serves on and logs why not.
async fn upgrade_on_hangup(hangups: std::io::Result<tokio::signal::unix::Signal>, handover: Arc<Handover>) {
    let Ok(mut hangups) = hangups else {
        tracing::warn!("cannot listen for SIGHUP; upgrades are asked for with `reload` only");
        return;
    };
    while hangups.recv().await.is_some() {
        let handover = Arc::clone(&handover);
        match tokio::task::spawn_blocking(move || handover.upgrade()).await {
            Ok(Ok(done)) => tracing::warn!(successor_pid = done.successor_pid, "SIGHUP: upgraded"),
            Ok(Err(error)) => tracing::error!(%error, "SIGHUP: the upgrade failed; this process serves on"),
            Err(error) => tracing::error!(%error, "SIGHUP: the upgrade panicked"),
        }
    }
}

/// The in-process replacement of the same services, for comparison: the counter v1 → v2 and the
/// table of `entries` entries each replaced by a new instance in one kernel (sealed with the
/// kernel's own key); the time both replacements took together (the callers' pause).
pub fn in_process_replacement(entries: usize) -> Result<Duration, AnyError> {
    let kernel = Kernel::new();
    let table = Table {
        entries: (0..entries).map(|i| (format!("key-{i:08}"), i as u64)).collect(),
    };
    kernel.register(TableService { table })?;
    kernel.register(CounterV1::default())?;
    kernel.start_all()?;
    let started = Instant::now();
    kernel.replace(TableService::default())?;
    kernel.replace(CounterV2::default())?;
    let pause = started.elapsed();
    kernel.stop_all()?;
    Ok(pause)
}

/// Everything before serving: the listener (inherited, or bound), the kernel with each
/// service registered (its state loaded from the old process, if taking over) and started.
fn start(
    options: &Options,
    sealer: Sealer,
    mut take_over: Option<&mut TakeOver>,
    activated: Option<std::net::TcpListener>,
) -> Result<(Kernel, std::net::TcpListener), AnyError> {
    die_at("connected")?;
    let listener = match (&mut take_over, activated) {
        (Some(take_over), _) => std::net::TcpListener::from(
            take_over
                .take_listener("http")
                .ok_or("the old process passed no `http` listener")?,
        ),
        (None, Some(activated)) => activated,
        (None, None) => std::net::TcpListener::bind(options.addr)?,
    };
    let mut builder = Kernel::builder().sealer(sealer);
    if let Some(take_over) = &take_over {
        builder = builder.store(take_over.store());
    }
    let kernel = builder.build()?;
    let table = Table {
        entries: (0..options.entries)
            .map(|i| (format!("key-{i:08}"), i as u64))
            .collect(),
    };
    // Each register loads its state from the old process (which pauses at the first).
    kernel.register(TableService { table })?;
    match options.version.as_str() {
        "v1" => kernel.register(CounterV1::default())?,
        "v2" => kernel.register(CounterV2::default())?,
        other => return Err(format!("unknown version `{other}`; expected v1 or v2").into()),
    };
    die_at("state")?;
    kernel.start_all()?;
    die_at("started")?;
    Ok((kernel, listener))
}

/// `POST /hit` counts and answers `<version> <count>`; `GET /count` reads it. Every response
/// closes its connection, so that no idle connection outlives a handover in the old process.
fn router(kernel: Kernel) -> Router {
    Router::new()
        .route("/hit", post(hit))
        .route("/count", get(count))
        .layer(axum::middleware::map_response(close_connection))
        .with_state(kernel)
}

async fn close_connection(mut response: axum::response::Response) -> axum::response::Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn hit(State(kernel): State<Kernel>) -> Result<String, (StatusCode, String)> {
    call(&kernel, "hit")
}

async fn count(State(kernel): State<Kernel>) -> Result<String, (StatusCode, String)> {
    call(&kernel, "get")
}

fn call(kernel: &Kernel, kind: &'static str) -> Result<String, (StatusCode, String)> {
    match kernel.call("counter", Event::new("counter", "http", kind, "")) {
        Ok(reply) => Ok(format!("{} {}", reply.message, reply.data)),
        Err(error) => Err((StatusCode::SERVICE_UNAVAILABLE, error.to_string())),
    }
}

/// The server's intake: whether it accepts, and how many connections are open.
#[derive(Clone, Default)]
struct Intake(Arc<IntakeState>);

#[derive(Default)]
struct IntakeState {
    state: Mutex<Flow>,
    changed: Condvar,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct Flow {
    paused: bool,
    /// The accept loop is inside `accept`.
    accepting: bool,
    open: usize,
}

impl Intake {
    fn lock(&self) -> std::sync::MutexGuard<'_, Flow> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops accepting, and waits (at most `bound`) for the open connections to close.
    fn pause(&self, bound: Duration) {
        self.lock().paused = true;
        self.0.wake.notify_waiters();
        let flow = self.lock();
        let _ = self
            .0
            .changed
            .wait_timeout_while(flow, bound, |flow| flow.accepting || flow.open > 0);
    }

    fn resume(&self) {
        self.lock().paused = false;
        self.0.wake.notify_waiters();
    }
}

/// A listener that accepts only while the intake is not paused, and counts open connections.
struct Gated {
    listener: tokio::net::TcpListener,
    intake: Intake,
}

impl axum::serve::Listener for Gated {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            let wake = {
                let mut flow = self.intake.lock();
                let wake = self.intake.0.wake.notified();
                flow.accepting = !flow.paused;
                wake
            };
            if !self.intake.lock().accepting {
                self.intake.0.changed.notify_all();
                wake.await;
                continue;
            }
            let accepted = tokio::select! {
                accepted = self.listener.accept() => Some(accepted),
                () = wake => None,
            };
            let stream = {
                let mut flow = self.intake.lock();
                flow.accepting = false;
                match accepted {
                    Some(Ok((stream, addr))) => {
                        flow.open += 1;
                        Some((stream, addr))
                    }
                    _ => None,
                }
            };
            match stream {
                Some((stream, addr)) => {
                    let intake = self.intake.clone();
                    return (Counted { stream, intake }, addr);
                }
                None => {
                    self.intake.0.changed.notify_all();
                    // An accept error (out of descriptors, …): do not spin.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An accepted connection, counted open until dropped.
struct Counted {
    stream: tokio::net::TcpStream,
    intake: Intake,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.intake.lock().open -= 1;
        self.intake.0.changed.notify_all();
    }
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

// ----- The client side: server processes, the load generator, the report. -----

/// A server running as a child process.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The rest of its standard output, line by line.
    pub lines: Receiver<String>,
}

impl Server {
    /// Starts `command` (a server), and waits (at most `timeout`) for it to say where it
    /// listens. An error with its exit status if it ends first.
    pub fn start(mut command: Command, timeout: Duration) -> Result<Self, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    // (A test harness may print its own words first on the line.)
                    if let Some((_, rest)) = line.split_once("listening on ") {
                        let addr = rest.split(' ').next().unwrap_or_default();
                        let addr = addr.parse().map_err(|e| format!("bad address `{addr}`: {e}"))?;
                        return Ok(Self { child, addr, lines });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().map_err(|e| e.to_string())?;
                    return Err(format!("the server did not listen: {status}"));
                }
            }
        }
    }
}

/// One request: `(version, count)` from `POST /hit` (or `GET /count`).
pub fn request(addr: SocketAddr, hit: bool) -> Result<(String, u64), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let request = if hit {
        "POST /hit HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    } else {
        "GET /count HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    };
    stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("receive: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{}: {body}", head.lines().next().unwrap_or_default()));
    }
    let (version, count) = body.split_once(' ').ok_or_else(|| format!("bad body `{body}`"))?;
    let count = count.trim().parse().map_err(|_| format!("bad count `{count}`"))?;
    Ok((version.to_owned(), count))
}

/// One request of the load, as the client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent.
    pub start: Instant,
    /// How long the answer took.
    pub latency: Duration,
    /// The answer, or why there was none.
    pub outcome: Result<(String, u64), String>,
}

/// Clients calling `POST /hit` in a loop, each request on a new connection.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `workers` clients against `addr`.
    pub fn start(addr: SocketAddr, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let outcome = request(addr, true);
                        samples.push(Sample {
                            start,
                            latency: start.elapsed(),
                            outcome,
                        });
                    }
                    samples
                })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the clients; every request they made.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples: Vec<Sample> = self
            .workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect();
        samples.sort_by_key(|s| s.start);
        samples
    }
}

/// What the load saw.
#[derive(Debug)]
pub struct Report {
    /// Requests without a good answer, with the first few reasons.
    pub failed: usize,
    /// The first failures.
    pub failures: Vec<String>,
    /// `Ok(N)` if the counts answered are exactly 1..=N, each once; else what is wrong.
    pub counts: Result<u64, String>,
    /// The versions in the order of the counts they answered, repeats collapsed.
    pub versions: Vec<String>,
    /// Latency of the requests sent during the switch: p50, p99, max.
    pub pause: [Duration; 3],
}

impl Report {
    /// Reads the samples; `switch` is when the new process started and when it served.
    pub fn new(samples: &[Sample], first_count: u64, switch: (Instant, Instant)) -> Self {
        let failures: Vec<String> = samples.iter().filter_map(|s| s.outcome.clone().err()).collect();
        let mut answered: Vec<(u64, String)> = samples
            .iter()
            .filter_map(|s| s.outcome.as_ref().ok().map(|(v, c)| (*c, v.clone())))
            .collect();
        answered.sort();
        let counts = check_counts(answered.iter().map(|(c, _)| *c), first_count);
        let mut versions: Vec<String> = Vec::new();
        for (_, version) in &answered {
            if versions.last() != Some(version) {
                versions.push(version.clone());
            }
        }
        let mut during: Vec<Duration> = samples
            .iter()
            .filter(|s| s.start >= switch.0 && s.start <= switch.1)
            .map(|s| s.latency)
            .collect();
        during.sort();
        let at = |q: f64| -> Duration {
            if during.is_empty() {
                return Duration::ZERO;
            }
            during[((during.len() - 1) as f64 * q).round() as usize]
        };
        Self {
            failed: failures.len(),
            failures: failures.into_iter().take(5).collect(),
            counts,
            versions,
            pause: [at(0.5), at(0.99), at(1.0)],
        }
    }

    /// The report's lines.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("Failed requests: {}", self.failed)];
        lines.extend(self.failures.iter().map(|f| format!("  failure: {f}")));
        lines.push(match &self.counts {
            Ok(n) => format!("Counts seen: 1..={n}, each once"),
            Err(wrong) => format!("Counts seen: {wrong}"),
        });
        lines.push(format!("Versions seen in order: {}", self.versions.join(" -> ")));
        lines.push(format!(
            "Pause: p50 {}, p99 {}, max {}",
            ms(self.pause[0]),
            ms(self.pause[1]),
            ms(self.pause[2])
        ));
        lines
    }
}

/// Milliseconds with one decimal.
pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// `Ok(last)` if `counts` (sorted) are exactly `first..=last`, each once.
fn check_counts(counts: impl Iterator<Item = u64>, first: u64) -> Result<u64, String> {
    let mut expected = first;
    let mut missing = Vec::new();
    let mut doubled = Vec::new();
    let mut last = None;
    for count in counts {
        if Some(count) == last {
            doubled.push(count);
            continue;
        }
        while expected < count {
            missing.push(expected);
            expected += 1;
        }
        expected = count + 1;
        last = Some(count);
    }
    if missing.is_empty() && doubled.is_empty() {
        Ok(last.unwrap_or(0))
    } else {
        Err(format!(
            "not each once: missing {:?}, doubled {:?}",
            &missing[..missing.len().min(10)],
            &doubled[..doubled.len().min(10)]
        ))
    }
}
