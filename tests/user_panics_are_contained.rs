//! User code may panic anywhere — a handler, a new version's `start`, `export_state`,
//! `Serialize`, a downgrade, `Drop`, an import at registration, the observer — and the kernel
//! keeps its promises: the panic fails only what it belongs to, is reported, and every kernel
//! thread goes on. Hangs are turned into failures by watchdogs, never by timed assertions.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use common::counter::{Counter, CounterV1, bump, explode, get};
use common::flex::{
    Flex, FlexV1, FlexV2, Knobs, Last, decisions, ev, next, sealer, served, stored_count, temp_dir, within,
};
use common::{Journal, Probe};
use microkernel::state;
use microkernel::{CallError, DirStore, Event, Kernel, LifecycleError, Notice, ReplaceCause, Status, Step, code};

#[test]
fn a_panicking_handler_answers_500_to_a_push_and_others_keep_serving() {
    let j = Journal::default();
    let kernel = Kernel::new();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.register(Probe::new("other", &[], &j)).unwrap();
    kernel.start_all().unwrap();
    let reply = kernel.push(explode(), Duration::from_secs(5));
    assert_eq!(reply.code, code::FAILED, "{reply}");
    assert_eq!(kernel.status("counter"), Some(Status::Failed));
    assert!(kernel.send(Event::new("other", "t", "hi", "")).is_ok());
    assert!(matches!(
        kernel.call("counter", get()),
        Err(CallError::NotRunning { .. })
    ));
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
    // A panicking `down` is a migration's failure, as a panicking upgrade is.
    assert!(
        matches!(
            err.cause(),
            ReplaceCause::Migration(state::MigrationError::DowngradePanicked { from_version: 2, .. })
        ),
        "{err:?}"
    );
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
