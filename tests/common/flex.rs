//! `flex`: one service type over two state versions with knobs to make it hang in its stop
//! hook, panic in its export, `Serialize`, downgrade, import or `Drop`, or change the lifecycle
//! from its handler; with the supervisor's decisions as text, and a watchdog (`within`) that
//! turns a hang into a failure, never a timed assertion. Beside it: `db`, `api` (depends on
//! `db`, panics on request), `b` and `zz-last`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::state;
use microkernel::{BoxError, Context, Event, Handler, Kernel, Migratable, Notice, Reply, RestartPolicy};
use serde::{Deserialize, Serialize, Serializer};

/// Runs `f` on a thread and fails the test if it has not returned after a generous bound.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hung (watchdog)"))
}

/// A value that serializes as a bool, and panics when armed: a user `Serialize` that panics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Bomb(bool);

impl Serialize for Bomb {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert!(!self.0, "the state's Serialize exploded");
        serializer.serialize_bool(false)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
pub struct FlexV1 {
    count: u64,
    #[schema(as = bool)]
    bomb: Bomb,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = FlexV1, down = down_v2)]
pub struct FlexV2 {
    count: u64,
    #[schema(as = bool)]
    bomb: Bomb,
}

impl From<FlexV1> for FlexV2 {
    fn from(v1: FlexV1) -> Self {
        Self {
            count: v1.count,
            bomb: v1.bomb,
        }
    }
}

pub fn down_v2(v2: &FlexV2) -> FlexV1 {
    assert!(v2.count != 13, "the downgrade exploded");
    FlexV1 {
        count: v2.count,
        bomb: v2.bomb,
    }
}

/// What a test can make the service do.
#[derive(Default, Clone)]
pub struct Knobs {
    /// The stop hook waits for a message here (then returns).
    pub stop_gate: Option<Arc<Mutex<Receiver<()>>>>,
    /// The "go" handler signals here, waits at `go_gate`, then starts `b` from inside.
    pub inside: Option<Sender<()>>,
    pub go_gate: Option<Arc<Mutex<Receiver<()>>>>,
    /// Counts the start hooks run.
    pub starts: Arc<AtomicU32>,
    /// Counts the exports (`export_state` calls).
    pub exports: Arc<AtomicU32>,
    /// `import_state` panics.
    pub panic_import: bool,
    /// The stop hook, once through its gate, starts service `b` (a lifecycle change from a hook).
    pub stop_starts_b: bool,
}

/// Generic over its state so that one service type serves as v1 and v2.
pub struct Flex<S> {
    version: &'static str,
    state: S,
    knobs: Knobs,
    panic_export: bool,
    panic_drop: bool,
}

pub trait FlexState: Migratable + Default + Clone {
    fn count(&mut self) -> &mut u64;
    fn bomb(&mut self) -> &mut Bomb;
}

impl FlexState for FlexV1 {
    fn count(&mut self) -> &mut u64 {
        &mut self.count
    }
    fn bomb(&mut self) -> &mut Bomb {
        &mut self.bomb
    }
}

impl FlexState for FlexV2 {
    fn count(&mut self) -> &mut u64 {
        &mut self.count
    }
    fn bomb(&mut self) -> &mut Bomb {
        &mut self.bomb
    }
}

impl<S: FlexState> Flex<S> {
    pub fn new(version: &'static str) -> Self {
        Self::with(version, Knobs::default())
    }

    pub fn with(version: &'static str, knobs: Knobs) -> Self {
        Self {
            version,
            state: S::default(),
            knobs,
            panic_export: false,
            panic_drop: false,
        }
    }
}

impl<S> Drop for Flex<S> {
    fn drop(&mut self) {
        if self.panic_drop && !thread::panicking() {
            panic!("Drop of the replaced instance exploded");
        }
    }
}

impl<S: FlexState> microkernel::Service for Flex<S> {
    type State = S;
    fn name(&self) -> &str {
        "flex"
    }
    fn dependencies(&self) -> Vec<String> {
        Vec::new()
    }
    fn export_state(&self) -> Result<&S, BoxError> {
        self.knobs.exports.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panic_export, "export_state exploded");
        Ok(&self.state)
    }
    fn import_state(&mut self, state: S) -> Result<(), BoxError> {
        assert!(!self.knobs.panic_import, "import_state exploded");
        self.state = state;
        Ok(())
    }
}

impl<S: FlexState + Send + 'static> Handler for Flex<S> {
    type Request = Event;
    type Response = Reply;

    fn start(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
        self.knobs.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn stop(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
        if let Some(gate) = &self.knobs.stop_gate {
            let _ = gate.lock().unwrap().recv();
        }
        if self.knobs.stop_starts_b {
            ctx.kernel().unwrap().start("b")?;
        }
        Ok(())
    }

    fn handle(&mut self, event: Event, ctx: &Context<'_>) -> Reply {
        match &*event.kind {
            "bump" => *self.state.count() += 1,
            "set" => *self.state.count() = event.content.parse().unwrap(),
            "arm" => self.state.bomb().0 = true,
            "disarm" => self.state.bomb().0 = false,
            "panic-export" => self.panic_export = true,
            "panic-drop" => self.panic_drop = true,
            "panic" => panic!("the handler exploded"),
            "stop-self" => {
                return match ctx.kernel().unwrap().stop("flex") {
                    Ok(()) => Reply::ok("stopped itself", ""),
                    Err(error) => Reply::new(508, "refused", error.to_string()),
                };
            }
            "go" => {
                self.knobs.inside.as_ref().unwrap().send(()).unwrap();
                let _ = self.knobs.go_gate.as_ref().unwrap().lock().unwrap().recv();
                return match ctx.kernel().unwrap().start("b") {
                    Ok(()) => Reply::ok("started b", ""),
                    Err(error) => Reply::new(508, "refused", error.to_string()),
                };
            }
            _ => {}
        }
        Reply::ok(self.version, self.state.count().to_string())
    }
}

pub fn ev(kind: &'static str) -> Event {
    Event::new("flex", "test", kind, "")
}

pub fn served(kernel: &Kernel) -> String {
    kernel.call("flex", ev("get")).unwrap().to_string()
}

pub fn policy(backoff_ms: u64) -> RestartPolicy {
    RestartPolicy::OnFailure {
        max_restarts: 3,
        within: Duration::from_secs(60),
        backoff: Duration::from_millis(backoff_ms),
    }
}

/// An observer that forwards the supervisor's decisions.
pub fn decisions() -> (impl Fn(&Notice<'_>) + Send + Sync + 'static, Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let observer = move |notice: &Notice<'_>| {
        let decision = match notice {
            Notice::Restarted { .. } => "restarted".to_owned(),
            Notice::RestartDropped { reason, .. } => format!("dropped: {reason}"),
            Notice::GaveUp { .. } => "gave up".to_owned(),
            Notice::RestartFailed { error, .. } => format!("failed: {error}"),
            Notice::Panicked { during, message, .. } => format!("panicked during {during}: {message}"),
            _ => return,
        };
        let _ = tx.lock().unwrap().send(decision);
    };
    (observer, rx)
}

pub fn next(decisions: &Receiver<String>) -> String {
    decisions
        .recv_timeout(Duration::from_secs(60))
        .expect("the supervisor decided nothing (watchdog)")
}

#[derive(microkernel::Service)]
#[service(name = "db")]
pub struct Db;

impl Handler for Db {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("db", "")
    }
}

/// `api`: depends on `db`, panics on request.
#[derive(microkernel::Service, Default)]
#[service(name = "api", deps = ["db"])]
pub struct Api {
    pub starts: Arc<AtomicU32>,
}

impl Handler for Api {
    type Request = Event;
    type Response = Reply;
    fn start(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        panic!("api exploded")
    }
}

#[derive(microkernel::Service)]
#[service(name = "b")]
pub struct B;

impl Handler for B {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("b", "")
    }
}

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("microkernel-flex-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub const TEST_KEY: &str = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";

pub fn sealer() -> Sealer {
    Sealer::new(Keyring::new(1, Key::from_hex(Algorithm::Aes256Gcm, TEST_KEY).unwrap()))
}

pub fn stored_count(dir: &std::path::Path) -> Option<u64> {
    let blob = std::fs::read(dir.join("flex.state")).ok()?;
    let opened = sealer().open("flex", &blob).ok()?;
    state::decode::<FlexV1>(opened.as_bytes()).ok().map(|s| s.count)
}

#[derive(microkernel::Service, Default)]
#[service(name = "zz-last")]
pub struct Last;

impl Handler for Last {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("last", "")
    }
}
