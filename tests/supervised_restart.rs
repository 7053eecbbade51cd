//! Supervised restarts: a failed service comes back with its last good state (or its last
//! checkpoint), up to its limit; unsupervised ones stay failed and their dependants are told.
//! A restart obeys the rules of `start`, never undoes a replacement, never races `start` or
//! `stop_all`, never waits behind another service's backoff, and survives a panicking factory.
//! Hangs are turned into failures by watchdogs, never by timed assertions.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::Journal;
use common::counter::{Counter, CounterV1, bump, explode, get};
use common::flex::{Api, Db, Flex, FlexV1, FlexV2, Knobs, decisions, ev, next, policy, served, within};
use microkernel::{Context, Event, Handler, Kernel, Notice, Reply, RestartPolicy, Status};

fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn notices() -> (Journal, impl Fn(&Notice<'_>) + Send + Sync + 'static) {
    let seen = Journal::default();
    let sink = seen.clone();
    (seen, move |n: &Notice<'_>| match n {
        Notice::Restarted { service } => sink.note(format!("restarted {service}")),
        Notice::GaveUp { service } => sink.note(format!("gave up {service}")),
        Notice::DependencyFailed { service, dependency } => sink.note(format!("{service} told {dependency} failed")),
        _ => {}
    })
}

#[test]
fn a_supervised_service_restarts_with_its_last_good_state() {
    let (seen, observer) = notices();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let handle = kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    for _ in 0..3 {
        kernel.call("counter", bump()).unwrap();
    }
    let policy = RestartPolicy::OnFailure {
        max_restarts: 3,
        within: Duration::from_secs(60),
        backoff: Duration::from_millis(10),
    };
    // Supervised now: the state at this point (3) is the last good one.
    kernel.supervise(&handle, policy, Counter::<CounterV1>::new).unwrap();
    kernel.call("counter", bump()).unwrap();
    assert!(kernel.call("counter", explode()).is_err());
    // The notice follows the restart: the status can read Running a moment before it is sent.
    assert!(
        wait_for(|| kernel.status("counter") == Some(Status::Running) && !seen.lines().is_empty()),
        "restarted"
    );
    assert_eq!(seen.lines(), ["restarted counter"]);
    // The state exported when supervision began (or the service last started): 3.
    assert_eq!(kernel.call("counter", get()).unwrap().data, "3");
}

#[test]
fn a_supervised_service_restarts_from_its_last_checkpoint_when_there_is_a_store() {
    use microkernel::DirStore;
    use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
    let dir = std::env::temp_dir().join(format!("microkernel-supervise-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm).unwrap()));
    let kernel = Kernel::builder()
        .sealer(sealer)
        .store(DirStore::open(&dir).unwrap())
        .build()
        .unwrap();
    let handle = kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: 1,
        within: Duration::from_secs(60),
        backoff: Duration::ZERO,
    };
    kernel.supervise(&handle, policy, Counter::<CounterV1>::new).unwrap();
    for _ in 0..5 {
        kernel.call("counter", bump()).unwrap();
    }
    kernel.checkpoint().unwrap();
    kernel.call("counter", bump()).unwrap();
    assert!(kernel.call("counter", explode()).is_err());
    assert!(wait_for(|| kernel.status("counter") == Some(Status::Running)));
    assert_eq!(kernel.call("counter", get()).unwrap().data, "5");
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn past_the_restart_limit_the_service_stays_failed() {
    let (seen, observer) = notices();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let handle = kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: 2,
        within: Duration::from_secs(60),
        backoff: Duration::from_millis(1),
    };
    kernel.supervise(&handle, policy, Counter::<CounterV1>::new).unwrap();
    for round in 1..=2 {
        assert!(kernel.call("counter", explode()).is_err());
        assert!(
            wait_for(|| kernel.status("counter") == Some(Status::Running) && seen.lines().len() == round),
            "restart {round}"
        );
    }
    assert!(kernel.call("counter", explode()).is_err());
    assert!(wait_for(|| seen.lines().contains(&"gave up counter".to_owned())));
    assert_eq!(kernel.status("counter"), Some(Status::Failed));
    assert_eq!(
        seen.lines(),
        ["restarted counter", "restarted counter", "gave up counter"]
    );
}

#[test]
fn unsupervised_services_stay_failed_and_dependants_are_told() {
    #[derive(microkernel::Service)]
    #[service(name = "watcher", deps = ["counter"])]
    struct Watcher(Arc<Mutex<Vec<String>>>);
    impl Handler for Watcher {
        type Request = Event;
        type Response = Reply;
        fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {} {}", event.from, event.kind, event.content));
            Reply::default()
        }
    }
    let (seen, observer) = notices();
    let told = Arc::new(Mutex::new(Vec::new()));
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.register(Watcher(Arc::clone(&told))).unwrap();
    kernel.start_all().unwrap();
    assert!(kernel.call("counter", explode()).is_err());
    assert!(wait_for(|| !told.lock().unwrap().is_empty()));
    assert_eq!(*told.lock().unwrap(), ["kernel dependency-failed counter"]);
    assert_eq!(seen.lines(), ["watcher told counter failed"]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        kernel.status("counter"),
        Some(Status::Failed),
        "RestartPolicy::Never is the default"
    );
    assert_eq!(
        kernel.status("watcher"),
        Some(Status::Running),
        "dependants keep running"
    );
}

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
