//! A stop hook that outlives `stop_timeout`: reported as `StopTimeout`, the rest still stop in
//! order, the service stays Failed and its state is saved when the hook returns; meanwhile
//! lifecycle changes of that service (start, replace, a due restart) are refused, not queued,
//! while other services' go on. Hangs are turned into failures by watchdogs.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::flex::{
    B, Flex, FlexV1, FlexV2, Knobs, decisions, ev, next, policy, sealer, stored_count, temp_dir, within,
};
use common::{Journal, Probe};
use microkernel::{BoxError, Context, DirStore, Event, Handler, Kernel, LifecycleError, Reply, Status, Step};

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
