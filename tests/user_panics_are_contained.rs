//! Panic isolation, supervision, bounded stops.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::counter::{Counter, CounterV1, bump, get};
use common::{Journal, Probe};
use microkernel::{
    BoxError, CallError, Context, Event, Handler, Kernel, LifecycleError, Notice, Reply, RestartPolicy, Status, code,
};

fn panic_event() -> Event {
    Event::new("counter", "test", "panic", "")
}

/// A counter that panics on "panic" (the common counter ignores unknown kinds).
#[derive(microkernel::Service, Default)]
#[service(name = "counter")]
struct Fragile {
    #[state]
    state: CounterV1,
}

impl Handler for Fragile {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        match &*event.kind {
            "panic" => panic!("fragile counter broke"),
            "bump" => self.state.count += 1,
            _ => {}
        }
        Reply::ok("v1", self.state.count.to_string())
    }
}

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
fn a_panicking_handler_answers_500_to_a_push_and_others_keep_serving() {
    let j = Journal::default();
    let kernel = Kernel::new();
    kernel.register(Fragile::default()).unwrap();
    kernel.register(Probe::new("other", &[], &j)).unwrap();
    kernel.start_all().unwrap();
    let reply = kernel.push(panic_event(), Duration::from_secs(5));
    assert_eq!(reply.code, code::FAILED, "{reply}");
    assert_eq!(kernel.status("counter"), Some(Status::Failed));
    assert!(kernel.send(Event::new("other", "t", "hi", "")).is_ok());
    assert!(matches!(
        kernel.call("counter", get()),
        Err(CallError::NotRunning { .. })
    ));
}

#[test]
fn a_supervised_service_restarts_with_its_last_good_state() {
    let (seen, observer) = notices();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let handle = kernel.register(Fragile::default()).unwrap();
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
    kernel.supervise(&handle, policy, Fragile::default).unwrap();
    kernel.call("counter", bump()).unwrap();
    assert!(kernel.call("counter", panic_event()).is_err());
    assert!(
        wait_for(|| kernel.status("counter") == Some(Status::Running)),
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
    let handle = kernel.register(Fragile::default()).unwrap();
    kernel.start_all().unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: 1,
        within: Duration::from_secs(60),
        backoff: Duration::ZERO,
    };
    kernel.supervise(&handle, policy, Fragile::default).unwrap();
    for _ in 0..5 {
        kernel.call("counter", bump()).unwrap();
    }
    kernel.checkpoint().unwrap();
    kernel.call("counter", bump()).unwrap();
    assert!(kernel.call("counter", panic_event()).is_err());
    assert!(wait_for(|| kernel.status("counter") == Some(Status::Running)));
    assert_eq!(kernel.call("counter", get()).unwrap().data, "5");
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn past_the_restart_limit_the_service_stays_failed() {
    let (seen, observer) = notices();
    let kernel = Kernel::builder().observer(observer).build().unwrap();
    let handle = kernel.register(Fragile::default()).unwrap();
    kernel.start_all().unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: 2,
        within: Duration::from_secs(60),
        backoff: Duration::from_millis(1),
    };
    kernel.supervise(&handle, policy, Fragile::default).unwrap();
    for round in 1..=2 {
        assert!(kernel.call("counter", panic_event()).is_err());
        assert!(
            wait_for(|| kernel.status("counter") == Some(Status::Running)),
            "restart {round}"
        );
    }
    assert!(kernel.call("counter", panic_event()).is_err());
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
    kernel.register(Fragile::default()).unwrap();
    kernel.register(Watcher(Arc::clone(&told))).unwrap();
    kernel.start_all().unwrap();
    assert!(kernel.call("counter", panic_event()).is_err());
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
fn a_stop_that_hangs_is_reported_and_the_rest_still_stop_in_order() {
    #[derive(microkernel::Service)]
    #[service(name = "stuck", deps = ["base"])]
    struct Stuck(Arc<Mutex<()>>);
    impl Handler for Stuck {
        type Request = Event;
        type Response = Reply;
        fn stop(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
            drop(self.0.lock().unwrap());
            Ok(())
        }
        fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
            Reply::default()
        }
    }
    let j = Journal::default();
    let gate = Arc::new(Mutex::new(()));
    let kernel = Kernel::builder()
        .stop_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    kernel.register(Probe::new("base", &[], &j)).unwrap();
    kernel.register(Stuck(Arc::clone(&gate))).unwrap();
    kernel.register(Probe::new("top", &["stuck"], &j)).unwrap();
    kernel.start_all().unwrap();
    j.take();
    let held = gate.lock().unwrap();
    let started = Instant::now();
    let err = kernel.stop_all().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err.0.len(), 1);
    assert!(
        matches!(&err.0[0], LifecycleError::StopTimeout { service, .. } if service == "stuck"),
        "{err}"
    );
    assert_eq!(j.take(), ["stop top", "stop base"]);
    assert_eq!(kernel.status("stuck"), Some(Status::Failed));
    drop(held);
}

#[test]
fn the_old_version_keeps_serving_when_the_new_one_panics() {
    let kernel = Kernel::new();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    kernel.call("counter", bump()).unwrap();
    let err = kernel
        .replace(Counter::<CounterV1>::failing(common::counter::Fail::StartPanic))
        .unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(kernel.call("counter", get()).unwrap().data, "1");
}
