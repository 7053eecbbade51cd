//! Lifecycle operations never undo or race each other, and user code may panic anywhere while
//! the kernel keeps its promises. Hangs are turned into failures by watchdogs (`within`), never
//! by timed assertions.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::state;
use microkernel::{
    BoxError, Context, DirStore, Event, Handler, Kernel, LifecycleError, Migratable, Notice, Reply, RestartPolicy,
    Status, Step,
};
use serde::{Deserialize, Serialize, Serializer};

/// Runs `f` on a thread and fails the test if it has not returned after a generous bound.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hung (watchdog)"))
}

/// A value that serializes as a bool, and panics when armed: a user `Serialize` that panics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
struct Bomb(bool);

impl Serialize for Bomb {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert!(!self.0, "the state's Serialize exploded");
        serializer.serialize_bool(false)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct FlexV1 {
    count: u64,
    #[schema(as = bool)]
    bomb: Bomb,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = FlexV1, down = down_v2)]
struct FlexV2 {
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

fn down_v2(v2: &FlexV2) -> FlexV1 {
    assert!(v2.count != 13, "the downgrade exploded");
    FlexV1 {
        count: v2.count,
        bomb: v2.bomb,
    }
}

/// What a test can make the service do.
#[derive(Default, Clone)]
struct Knobs {
    /// The stop hook waits for a message here (then returns).
    stop_gate: Option<Arc<Mutex<Receiver<()>>>>,
    /// The "go" handler signals here, waits at `go_gate`, then starts `b` from inside.
    inside: Option<Sender<()>>,
    go_gate: Option<Arc<Mutex<Receiver<()>>>>,
    /// Counts the start hooks run.
    starts: Arc<AtomicU32>,
    /// Counts the exports (`export_state` calls).
    exports: Arc<AtomicU32>,
    /// `import_state` panics.
    panic_import: bool,
    /// The stop hook, once through its gate, starts service `b` (a lifecycle change from a hook).
    stop_starts_b: bool,
}

/// Generic over its state so that one service type serves as v1 and v2.
struct Flex<S> {
    version: &'static str,
    state: S,
    knobs: Knobs,
    panic_export: bool,
    panic_drop: bool,
}

trait FlexState: Migratable + Default + Clone {
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
    fn new(version: &'static str) -> Self {
        Self::with(version, Knobs::default())
    }

    fn with(version: &'static str, knobs: Knobs) -> Self {
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

fn ev(kind: &'static str) -> Event {
    Event::new("flex", "test", kind, "")
}

fn served(kernel: &Kernel) -> String {
    kernel.call("flex", ev("get")).unwrap().to_string()
}

fn policy(backoff_ms: u64) -> RestartPolicy {
    RestartPolicy::OnFailure {
        max_restarts: 3,
        within: Duration::from_secs(60),
        backoff: Duration::from_millis(backoff_ms),
    }
}

/// An observer that forwards the supervisor's decisions.
fn decisions() -> (impl Fn(&Notice<'_>) + Send + Sync + 'static, Receiver<String>) {
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

fn next(decisions: &Receiver<String>) -> String {
    decisions
        .recv_timeout(Duration::from_secs(60))
        .expect("the supervisor decided nothing (watchdog)")
}

// ---- 4. Lifecycle operations never undo or race each other ----

#[test]
fn a_replacement_during_a_restart_backoff_is_never_undone() {
    let (observer, decisions) = decisions();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let handle = kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    kernel
        .supervise(&handle, policy(500), || Flex::<FlexV1>::new("v1"))
        .unwrap();
    kernel.call("flex", Event::new("flex", "t", "set", "7")).unwrap();
    assert!(kernel.call("flex", ev("panic")).is_err());
    // While the supervisor waits out its backoff, v2 replaces the failed v1 (it stays Failed:
    // a service that is not running is swapped without starting) and is started.
    kernel.replace(Flex::<FlexV2>::new("v2")).unwrap();
    kernel.start("flex").unwrap();
    assert_eq!(served(&kernel), "{0 v2 7}");
    let decision = next(&decisions);
    assert!(decision.starts_with("dropped"), "{decision}");
    assert_eq!(served(&kernel), "{0 v2 7}", "the supervisor undid the replacement");
}

#[test]
fn stop_all_during_a_restart_leaves_nothing_running() {
    let (observer, decisions) = decisions();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let handle = kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let (entered_tx, release_rx) = (Mutex::new(entered_tx), Mutex::new(release_rx));
    // The factory pauses inside the restart, which holds the lifecycle lock.
    kernel
        .supervise(&handle, policy(0), move || {
            let _ = entered_tx.lock().unwrap().send(());
            let _ = release_rx.lock().unwrap().recv();
            Flex::<FlexV1>::new("v1")
        })
        .unwrap();
    assert!(kernel.call("flex", ev("panic")).is_err());
    entered.recv_timeout(Duration::from_secs(60)).expect("no restart began");
    let stopping = {
        let kernel = kernel.clone();
        thread::spawn(move || kernel.stop_all())
    };
    release.send(()).unwrap();
    within("stop_all", move || stopping.join().unwrap()).unwrap();
    assert_ne!(
        kernel.status("flex"),
        Some(Status::Running),
        "a service runs after stop_all"
    );
    assert_eq!(next(&decisions), "restarted");
    // Later failures are not restarted by a supervisor stop_all ended either.
    assert_ne!(kernel.status("flex"), Some(Status::Running));
}

#[test]
fn a_restart_scheduled_before_stop_all_is_dropped() {
    let (observer, decisions) = decisions();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let handle = kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    kernel
        .supervise(&handle, policy(300), || Flex::<FlexV1>::new("v1"))
        .unwrap();
    assert!(kernel.call("flex", ev("panic")).is_err());
    kernel.stop_all().unwrap();
    // stop_all ended the supervisor thread: nothing can start the service again.
    assert_eq!(kernel.status("flex"), Some(Status::Failed));
    assert!(decisions.try_recv().is_err(), "a restart happened after stop_all");
}

#[derive(microkernel::Service)]
#[service(name = "db")]
struct Db;

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
struct Api {
    starts: Arc<AtomicU32>,
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

#[test]
fn a_restart_obeys_the_rules_of_start_its_dependency_must_run() {
    let (observer, decisions) = decisions();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    kernel.register(Db).unwrap();
    let starts = Arc::new(AtomicU32::new(0));
    let api = kernel
        .register(Api {
            starts: Arc::clone(&starts),
        })
        .unwrap();
    kernel.start_all().unwrap();
    let restarts = Arc::clone(&starts);
    kernel
        .supervise(&api, policy(100), move || Api {
            starts: Arc::clone(&restarts),
        })
        .unwrap();
    assert!(kernel.call("api", Event::new("api", "t", "x", "")).is_err());
    kernel.stop("db").unwrap(); // allowed: api is Failed, not running
    // Every attempt is refused while db is stopped, until the supervisor gives up.
    for _ in 0..3 {
        let decision = next(&decisions);
        assert!(
            decision.starts_with("failed") && decision.contains("`db`"),
            "{decision}"
        );
    }
    assert_eq!(next(&decisions), "gave up");
    assert_eq!(kernel.status("api"), Some(Status::Failed));
    assert_eq!(starts.load(Ordering::SeqCst), 1, "api was started while db was stopped");
}

#[test]
fn start_racing_a_restart_never_starts_an_instance_twice() {
    let (observer, decisions) = decisions();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let knobs = Knobs::default();
    let starts = Arc::clone(&knobs.starts);
    let handle = kernel.register(Flex::<FlexV1>::with("v1", knobs.clone())).unwrap();
    kernel.start_all().unwrap();
    let built = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&built);
    kernel
        .supervise(&handle, policy(200), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Flex::<FlexV1>::with("v1", knobs.clone())
        })
        .unwrap();
    assert!(kernel.call("flex", ev("panic")).is_err());
    kernel.start("flex").unwrap(); // the failed instance, started again by hand
    let decision = next(&decisions);
    assert!(decision.starts_with("dropped"), "{decision}");
    assert_eq!(kernel.status("flex"), Some(Status::Running));
    assert_eq!(
        built.load(Ordering::SeqCst),
        0,
        "the supervisor built an instance anyway"
    );
    assert_eq!(
        starts.load(Ordering::SeqCst),
        2,
        "first start and the hand-made restart"
    );
}

#[derive(microkernel::Service)]
#[service(name = "b")]
struct B;

impl Handler for B {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("b", "")
    }
}

#[test]
fn a_handler_changing_the_lifecycle_while_its_service_is_replaced_never_hangs() {
    for _ in 0..20 {
        let kernel = Kernel::new();
        let (inside_tx, inside) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let knobs = Knobs {
            inside: Some(inside_tx),
            go_gate: Some(Arc::new(Mutex::new(go_rx))),
            ..Knobs::default()
        };
        kernel.register(Flex::<FlexV1>::with("v1", knobs)).unwrap();
        kernel.register(B).unwrap();
        kernel.start("flex").unwrap();
        let caller = {
            let kernel = kernel.clone();
            thread::spawn(move || kernel.call("flex", ev("go")).unwrap())
        };
        inside.recv().unwrap();
        let replacer = {
            let kernel = kernel.clone();
            thread::spawn(move || kernel.replace(Flex::<FlexV2>::new("v2")))
        };
        // The replacement holds the lifecycle lock and waits for flex's slot; the handler,
        // inside flex, now asks for the lifecycle lock.
        thread::sleep(Duration::from_millis(2));
        go.send(()).unwrap();
        let reply = within("the handler", move || caller.join().unwrap());
        let replaced = within("the replacement", move || replacer.join().unwrap());
        match (&replaced, reply.code) {
            // The handler was refused, the replacement went through.
            (Ok(_), 508) => {
                assert!(reply.data.contains("would deadlock"), "{reply}");
                assert_eq!(served(&kernel), "{0 v2 0}");
            }
            // The replacement was refused at Enter, the handler started b.
            (Err(error), 0) => assert_eq!(error.step(), Step::Enter, "{error}"),
            // Or they did not overlap: both succeed.
            (Ok(_), 0) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("microkernel-integrity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const TEST_KEY: &str = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";

fn sealer() -> Sealer {
    Sealer::new(Keyring::new(1, Key::from_hex(Algorithm::Aes256Gcm, TEST_KEY).unwrap()))
}

fn stored_count(dir: &std::path::Path) -> Option<u64> {
    let blob = std::fs::read(dir.join("flex.state")).ok()?;
    let opened = sealer().open("flex", &blob).ok()?;
    state::decode::<FlexV1>(opened.as_bytes()).ok().map(|s| s.count)
}

/// The rule: a stop that finishes after `stop_timeout` leaves the service Failed (as stop_all
/// reported), and its state is saved when it does finish.
#[test]
fn a_stop_finishing_after_its_timeout_stays_failed_and_saves_its_state() {
    let dir = temp_dir("late-stop");
    let (open_gate, gate) = mpsc::channel();
    let knobs = Knobs {
        stop_gate: Some(Arc::new(Mutex::new(gate))),
        ..Knobs::default()
    };
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(&dir).unwrap())
        .stop_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    kernel.register(Flex::<FlexV1>::with("v1", knobs)).unwrap();
    kernel.start_all().unwrap();
    kernel.call("flex", Event::new("flex", "t", "set", "42")).unwrap();
    let err = kernel.stop_all().unwrap_err();
    assert!(matches!(err.0[..], [LifecycleError::StopTimeout { .. }]), "{err}");
    assert_eq!(kernel.status("flex"), Some(Status::Failed));
    open_gate.send(()).unwrap();
    let saved = within("the late save", {
        let dir = dir.clone();
        move || loop {
            if let Some(count) = stored_count(&dir) {
                return count;
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    assert_eq!(saved, 42);
    assert_eq!(
        kernel.status("flex"),
        Some(Status::Failed),
        "a late stop changed the status"
    );
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- 5. User code may panic anywhere ----

#[test]
fn panics_in_export_serialize_and_downgrade_fail_the_replacement_at_their_step() {
    for (arm, step) in [("panic-export", Step::Export), ("arm", Step::Encode)] {
        let kernel = Kernel::new();
        kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
        kernel.start_all().unwrap();
        kernel.call("flex", ev("bump")).unwrap();
        kernel.call("flex", ev(arm)).unwrap();
        let err = kernel.replace(Flex::<FlexV2>::new("v2")).unwrap_err();
        assert_eq!(err.step(), step, "{arm}: {err}");
        assert!(err.to_string().contains("panicked"), "{err}");
        assert_eq!(served(&kernel), "{0 v1 1}", "{arm}: the old version stopped serving");
    }
    let kernel = Kernel::new();
    kernel.register(Flex::<FlexV2>::new("v2")).unwrap();
    kernel.start_all().unwrap();
    kernel.call("flex", Event::new("flex", "t", "set", "13")).unwrap();
    let err = kernel.rollback(Flex::<FlexV1>::new("v1")).unwrap_err();
    assert_eq!(err.step(), Step::Downgrade, "{err}");
    assert_eq!(served(&kernel), "{0 v2 13}");
}

#[test]
fn a_panicking_drop_of_the_replaced_instance_does_not_fail_the_replacement() {
    let (observer, decisions) = decisions();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    kernel.call("flex", ev("panic-drop")).unwrap();
    kernel.replace(Flex::<FlexV2>::new("v2")).unwrap();
    assert_eq!(served(&kernel), "{0 v2 0}");
    let decision = next(&decisions);
    assert!(decision.starts_with("panicked during drop"), "{decision}");
}

#[derive(microkernel::Service, Default)]
#[service(name = "zz-last")]
struct Last;

impl Handler for Last {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("last", "")
    }
}

#[test]
fn stop_all_goes_on_past_a_panicking_save_and_stops_everything() {
    let dir = temp_dir("stop-all-panic");
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(&dir).unwrap())
        .build()
        .unwrap();
    kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.register(Last).unwrap();
    kernel.start_all().unwrap();
    kernel.call("flex", ev("arm")).unwrap();
    let err = within("stop_all", {
        let kernel = kernel.clone();
        move || kernel.stop_all()
    })
    .unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(kernel.status("zz-last"), Some(Status::Stopped));
    assert!(dir.join("zz-last.state").exists(), "the later service was not saved");
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_periodic_checkpoint_survives_a_panicking_save() {
    let dir = temp_dir("ckpt-panic");
    let knobs = Knobs::default();
    let exports = Arc::clone(&knobs.exports);
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(&dir).unwrap())
        .checkpoint_every(Duration::from_millis(2))
        .build()
        .unwrap();
    kernel.register(Flex::<FlexV1>::with("v1", knobs)).unwrap();
    kernel.start_all().unwrap();
    kernel.call("flex", ev("arm")).unwrap();
    // Two periodic checkpoints run into the panicking `Serialize`...
    let armed_at = exports.load(Ordering::SeqCst);
    within("two failing checkpoints", move || {
        while exports.load(Ordering::SeqCst) < armed_at + 2 {
            thread::sleep(Duration::from_millis(1));
        }
    });
    // ...and the thread is still there to save the state once it encodes again.
    kernel.call("flex", ev("disarm")).unwrap();
    kernel.call("flex", Event::new("flex", "t", "set", "99")).unwrap();
    let dir_ = dir.clone();
    within("a later checkpoint", move || {
        while stored_count(&dir_) != Some(99) {
            thread::sleep(Duration::from_millis(2));
        }
    });
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_panicking_factory_leaves_the_supervisor_alive_for_other_services() {
    let (observer, decisions) = decisions();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let flex = kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    let api_starts = Arc::new(AtomicU32::new(0));
    kernel.register(Db).unwrap();
    let api = kernel
        .register(Api {
            starts: Arc::clone(&api_starts),
        })
        .unwrap();
    kernel.start_all().unwrap();
    let once = RestartPolicy::OnFailure {
        max_restarts: 1,
        within: Duration::from_secs(60),
        backoff: Duration::ZERO,
    };
    kernel
        .supervise(&flex, once, || -> Flex<FlexV1> { panic!("the factory exploded") })
        .unwrap();
    let restarts = Arc::clone(&api_starts);
    kernel
        .supervise(&api, once, move || Api {
            starts: Arc::clone(&restarts),
        })
        .unwrap();
    assert!(kernel.call("flex", ev("panic")).is_err());
    assert_eq!(next(&decisions), "panicked during restart: the factory exploded");
    assert!(next(&decisions).starts_with("failed: the factory of `flex` panicked"));
    assert_eq!(next(&decisions), "gave up");
    // The supervisor thread survived: another service still restarts.
    assert!(kernel.call("api", Event::new("api", "t", "x", "")).is_err());
    assert_eq!(next(&decisions), "restarted");
    assert_eq!(kernel.status("api"), Some(Status::Running));
}

#[test]
fn a_panicking_observer_does_not_stop_the_kernel() {
    let kernel = Kernel::builder()
        .observer(|notice| {
            if let Notice::Started { .. } = notice {
                panic!("the observer exploded")
            }
        })
        .build()
        .unwrap();
    kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    assert_eq!(served(&kernel), "{0 v1 0}");
    kernel.stop_all().unwrap();
}

// ---- Found by review: each once lost state, hung, or let a panic escape ----

/// A file set aside at registration (it did not decode) must not leave the service's saves
/// below the generation the store saw: they would be refused as stale for ever.
#[test]
fn a_service_starting_fresh_after_a_set_aside_file_still_saves() {
    let dir = temp_dir("fresh-after-aside");
    let store = DirStore::open(&dir).unwrap();
    // A state of another type (it shares no chain), at a high generation.
    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 1)]
    struct Other {
        name: String,
    }
    common::stored::save(
        &store,
        &sealer(),
        "flex",
        &state::encode(&Other { name: "x".into() }).unwrap(),
        10,
    )
    .unwrap();
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(store)
        .load_policy(microkernel::LoadPolicy::StartFreshKeepAside)
        .build()
        .unwrap();
    kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    kernel.call("flex", Event::new("flex", "t", "set", "5")).unwrap();
    kernel.checkpoint().unwrap();
    assert_eq!(stored_count(&dir), Some(5), "the checkpoint was silently dropped");
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_handler_stopping_its_own_service_with_a_stop_timeout_is_refused_not_hung() {
    let kernel = Kernel::builder().stop_timeout(Duration::MAX).build().unwrap();
    kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    let reply = within("a handler stopping its own service", {
        let kernel = kernel.clone();
        move || kernel.call("flex", ev("stop-self")).unwrap()
    });
    assert_eq!(reply.code, 508, "{reply}");
    assert!(reply.data.contains("already busy"), "{reply}");
    assert_eq!(served(&kernel), "{0 v1 0}");
}

#[test]
fn after_a_stop_outlives_its_timeout_lifecycle_changes_are_refused_not_queued() {
    let (open_gate, gate) = mpsc::channel();
    let knobs = Knobs {
        stop_gate: Some(Arc::new(Mutex::new(gate))),
        ..Knobs::default()
    };
    let kernel = Kernel::builder()
        .stop_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    kernel.register(Flex::<FlexV1>::with("v1", knobs)).unwrap();
    kernel.register(B).unwrap();
    kernel.start_all().unwrap();
    assert!(matches!(kernel.stop("flex"), Err(LifecycleError::StopTimeout { .. })));
    // The hook still holds flex: starting, replacing or saving it is refused at once...
    let err = within("start", {
        let kernel = kernel.clone();
        move || kernel.start("flex")
    })
    .unwrap_err();
    assert!(matches!(err, LifecycleError::StopInProgress { .. }), "{err}");
    let err = within("replace", {
        let kernel = kernel.clone();
        move || kernel.replace(Flex::<FlexV2>::new("v2"))
    })
    .unwrap_err();
    assert_eq!(err.step(), Step::Enter, "{err}");
    // ...and other services' lifecycles go on.
    within("stop of another service", {
        let kernel = kernel.clone();
        move || kernel.stop("b")
    })
    .unwrap();
    open_gate.send(()).unwrap();
    within("start once the hook returned", move || {
        loop {
            match kernel.start("flex") {
                Ok(()) => return,
                Err(LifecycleError::StopInProgress { .. }) => thread::sleep(Duration::from_millis(2)),
                Err(other) => panic!("{other}"),
            }
        }
    });
}

#[test]
fn a_long_backoff_never_delays_another_services_restart() {
    let (observer, decisions) = decisions();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let slow = kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.register(Db).unwrap();
    let api = kernel.register(Api::default()).unwrap();
    kernel.start_all().unwrap();
    kernel
        .supervise(&slow, policy(3_600_000), || Flex::<FlexV1>::new("v1"))
        .unwrap();
    kernel.supervise(&api, policy(0), Api::default).unwrap();
    assert!(kernel.call("flex", ev("panic")).is_err()); // waits an hour
    assert!(kernel.call("api", Event::new("api", "t", "x", "")).is_err());
    assert_eq!(next(&decisions), "restarted", "api waited behind flex's backoff");
    assert_eq!(kernel.status("api"), Some(Status::Running));
    assert_eq!(kernel.status("flex"), Some(Status::Failed));
}

#[test]
fn a_panicking_import_of_a_stored_state_fails_the_registration_not_the_caller() {
    let dir = temp_dir("import-panic");
    let store = DirStore::open(&dir).unwrap();
    common::stored::save(
        &store,
        &sealer(),
        "flex",
        &state::encode(&FlexV1::default()).unwrap(),
        1,
    )
    .unwrap();
    let kernel = Kernel::builder().sealer(sealer()).store(store).build().unwrap();
    let knobs = Knobs {
        panic_import: true,
        ..Knobs::default()
    };
    let err = kernel.register(Flex::<FlexV1>::with("v1", knobs)).unwrap_err();
    assert!(matches!(err, LifecycleError::Restore { .. }), "{err}");
    assert!(err.to_string().contains("flex.state"), "{err}");
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replace_supervised_carries_supervision_over_and_a_plain_replace_says_it_ends() {
    let (observer, decisions) = decisions();
    let ended = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&ended);
    let kernel = Kernel::builder()
        .observer(move |notice| {
            if let Notice::SupervisionEnded { .. } = notice {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            observer(notice);
        })
        .build()
        .unwrap();
    let handle = kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    kernel
        .supervise(&handle, policy(0), || Flex::<FlexV1>::new("v1"))
        .unwrap();
    kernel
        .replace_supervised(Flex::<FlexV2>::new("v2"), policy(0), || Flex::<FlexV2>::new("v2"))
        .unwrap();
    assert_eq!(
        ended.load(Ordering::SeqCst),
        0,
        "supervision was carried over, not ended"
    );
    kernel.call("flex", Event::new("flex", "t", "set", "9")).unwrap();
    assert!(kernel.call("flex", ev("panic")).is_err());
    assert_eq!(next(&decisions), "restarted");
    // Rebuilt as v2 (the new factory), with the last good state it had when it took over.
    assert!(served(&kernel).starts_with("{0 v2 "), "{}", served(&kernel));
    // A plain replace ends it, and says so.
    kernel.replace(Flex::<FlexV1>::new("v1")).unwrap_err(); // v2 -> v1 needs a rollback
    kernel.rollback(Flex::<FlexV1>::new("v1")).unwrap();
    assert_eq!(ended.load(Ordering::SeqCst), 1);
}

/// Found by review: a restart waiting for the slot a late stop hook holds, while that hook asks
/// for the lifecycle lock the restart holds, hung everything. The restart is refused instead.
#[test]
fn a_pending_restart_never_waits_for_a_stop_that_outlived_its_timeout() {
    let (observer, decisions) = decisions();
    let (open_gate, gate) = mpsc::channel();
    let knobs = Knobs {
        stop_gate: Some(Arc::new(Mutex::new(gate))),
        stop_starts_b: true,
        ..Knobs::default()
    };
    let kernel = Kernel::builder()
        .observer(observer)
        .stop_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let handle = kernel.register(Flex::<FlexV1>::with("v1", knobs.clone())).unwrap();
    kernel.register(B).unwrap();
    kernel.start("flex").unwrap();
    kernel
        .supervise(&handle, policy(300), move || Flex::<FlexV1>::with("v1", knobs.clone()))
        .unwrap();
    assert!(kernel.call("flex", ev("panic")).is_err()); // a restart in 300 ms
    kernel.start("flex").unwrap(); // running again, same instance
    assert!(matches!(kernel.stop("flex"), Err(LifecycleError::StopTimeout { .. })));
    // The restart comes due while the late hook holds the slot: refused, not waiting.
    let decision = next(&decisions);
    assert!(decision.contains("still running a stop hook"), "{decision}");
    open_gate.send(()).unwrap(); // the hook now starts b: the lifecycle lock is free
    within("stop_all", move || kernel.stop_all().map_err(|e| e.to_string())).ok();
}
