//! Hot replacement: the transactional protocol, each failing step, concurrency, rollback.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use common::counter::{Counter, CounterV1, CounterV2, CounterV3, Fail, OneWayV2, Unrelated, bump, get, set_label};
use common::{Journal, Probe};
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::state::{MigrationError, StateTag};
use microkernel::{CallError, Kernel, ReplaceCause, Replaced, ServiceFault, Status, Step};

fn sealer() -> Sealer {
    Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm).unwrap()))
}

/// A kernel serving counter v1 that has counted to 5.
fn counting_to_five(kernel: &Kernel) {
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    for _ in 0..5 {
        kernel.call("counter", bump()).unwrap();
    }
}

fn served(kernel: &Kernel) -> String {
    kernel.call("counter", get()).unwrap().to_string()
}

#[test]
fn state_moves_across_and_is_upgraded() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    let outcome = kernel.replace(Counter::<CounterV2>::new()).unwrap();
    let Replaced::Swapped { from, to, sealed } = outcome else {
        panic!("{outcome:?}")
    };
    // Sealed by default: with no sealer configured, with the kernel's own ephemeral key.
    assert_eq!((from.version, to.version, sealed), (1, 2, true));
    assert_eq!(served(&kernel), "{0 v2 5}");
    kernel.call("counter", bump()).unwrap();
    assert_eq!(served(&kernel), "{0 v2 6}");
}

#[test]
fn sealed_replacement_reports_sealed_and_keeps_the_count() {
    let kernel = Kernel::builder().sealer(sealer()).build().unwrap();
    counting_to_five(&kernel);
    let outcome = kernel.replace(Counter::<CounterV3>::new()).unwrap();
    assert!(matches!(outcome, Replaced::Swapped { sealed: true, .. }));
    assert_eq!(served(&kernel), "{0 v3 5}");
}

#[test]
fn chain_walks_from_v1_to_v3_and_rolls_back_v3_to_v2_to_v1() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    kernel.call("counter", bump()).unwrap();
    kernel.replace(Counter::<CounterV3>::new()).unwrap();
    kernel.call("counter", set_label("kept")).unwrap();
    assert_eq!(served(&kernel), "{0 v3 6}");
    kernel.rollback(Counter::<CounterV2>::new()).unwrap();
    assert_eq!(served(&kernel), "{0 v2 6}");
    kernel.rollback(Counter::<CounterV1>::new()).unwrap();
    assert_eq!(served(&kernel), "{0 v1 6}");
}

#[test]
fn a_handle_taken_before_a_replacement_reaches_the_new_version() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    let handle = kernel.handle("counter").unwrap();
    kernel.replace(Counter::<CounterV2>::new()).unwrap();
    assert_eq!(handle.call(bump()).unwrap().to_string(), "{0 v2 6}");
}

#[test]
fn a_stopped_service_is_swapped_and_stays_stopped_with_the_migrated_state() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    kernel.stop("counter").unwrap();
    kernel.replace(Counter::<CounterV2>::new()).unwrap();
    assert_eq!(kernel.status("counter"), Some(Status::Stopped));
    kernel.start("counter").unwrap();
    assert_eq!(served(&kernel), "{0 v2 5}");
}

#[test]
fn replacing_an_unregistered_name_is_refused_as_not_found() {
    let kernel = Kernel::new();
    let error = kernel.replace(Counter::<CounterV2>::new()).unwrap_err();
    assert_eq!(error.step(), Step::Enter);
    assert!(
        matches!(
            error.cause(),
            ReplaceCause::Call(CallError::NotFound { service }) if service == "counter"
        ),
        "{error}"
    );
    assert_eq!(kernel.status("counter"), None, "nothing was registered");
}

#[test]
fn a_replacement_failure_names_its_cause_as_an_enum() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    let error = kernel.replace(Counter::<CounterV2>::failing(Fail::Import)).unwrap_err();
    assert_eq!(error.step(), Step::Import);
    assert!(
        matches!(error.cause(), ReplaceCause::Service(ServiceFault::Error(e)) if e.to_string() == "import refused"),
        "{error:?}"
    );
    assert_old_serving(&kernel);
    let error = kernel
        .replace(Counter::<CounterV2>::failing(Fail::ImportPanic))
        .unwrap_err();
    assert!(
        matches!(error.cause(), ReplaceCause::Service(ServiceFault::Panicked { message }) if message == "import exploded"),
        "{error:?}"
    );
    assert_old_serving(&kernel);
}

/// The old version still serves, with the same state, after a failed replacement.
fn assert_old_serving(kernel: &Kernel) {
    assert_eq!(kernel.status("counter"), Some(Status::Running));
    assert_eq!(served(kernel), "{0 v1 5}");
}

#[test]
fn export_failure_leaves_the_old_version_serving() {
    let kernel = Kernel::new();
    kernel.register(Counter::<CounterV1>::failing(Fail::Export)).unwrap();
    kernel.start_all().unwrap();
    kernel.call("counter", bump()).unwrap();
    let err = kernel.replace(Counter::<CounterV2>::new()).unwrap_err();
    assert_eq!(err.step(), Step::Export);
    assert_eq!(err.to_string(), "replacing `counter` failed at export: export refused");
    assert_eq!(served(&kernel), "{0 v1 1}");
}

#[test]
fn encode_failure_leaves_the_old_version_serving() {
    let kernel = Kernel::new();
    kernel.register(Counter::<CounterV2>::new()).unwrap();
    kernel.start_all().unwrap();
    kernel.call("counter", set_label("unencodable")).unwrap();
    let err = kernel.replace(Counter::<CounterV3>::new()).unwrap_err();
    assert_eq!(err.step(), Step::Encode);
    assert_eq!(served(&kernel), "{0 v2 0}");
}

#[test]
fn unrelated_state_is_refused_at_decode_before_anything_stops() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    let err = kernel.replace(Counter::<Unrelated>::new()).unwrap_err();
    assert_eq!(err.step(), Step::Decode);
    assert!(err.to_string().contains("fingerprint"), "{err}");
    assert_old_serving(&kernel);
}

#[test]
fn a_newer_state_is_refused_when_replacing_with_an_older_version() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    kernel.replace(Counter::<CounterV2>::new()).unwrap();
    let err = kernel.replace(Counter::<CounterV1>::new()).unwrap_err();
    assert_eq!(err.step(), Step::Decode);
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(served(&kernel), "{0 v2 5}");
}

#[test]
fn upgrade_failure_is_reported_at_upgrade() {
    // A conversion that refuses and one that panics are both upgrades that failed.
    for (label, says) in [
        ("poison", "failed"),
        ("panic", "panicked: the conversion of label `panic` panics"),
    ] {
        let kernel = Kernel::new();
        kernel.register(Counter::<CounterV2>::new()).unwrap();
        kernel.start_all().unwrap();
        kernel.call("counter", set_label(label)).unwrap();
        let err = kernel.replace(Counter::<CounterV3>::new()).unwrap_err();
        assert_eq!(err.step(), Step::Upgrade, "{label}: {err}");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("CounterV2 (v2) to CounterV3 (v3)"), "{source}");
        assert!(source.contains(says), "{source}");
        assert_eq!(served(&kernel), "{0 v2 0}");
    }
}

#[test]
fn a_rollback_reports_the_version_it_came_from() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    kernel.replace(Counter::<CounterV2>::new()).unwrap();
    let outcome = kernel.rollback(Counter::<CounterV1>::new()).unwrap();
    let Replaced::Swapped { from, to, .. } = outcome else {
        panic!("expected a swap, got {outcome:?}")
    };
    assert_eq!(from, StateTag::of::<CounterV2>(), "from is what the old instance held");
    assert_eq!(to, StateTag::of::<CounterV1>());
}

#[test]
fn import_failure_and_import_panic_leave_the_old_version_serving() {
    for fail in [Fail::Import, Fail::ImportPanic] {
        let kernel = Kernel::new();
        counting_to_five(&kernel);
        let err = kernel.replace(Counter::<CounterV2>::failing(fail)).unwrap_err();
        assert_eq!(err.step(), Step::Import, "{fail:?}");
        assert_old_serving(&kernel);
    }
}

#[test]
fn unknown_dependency_of_the_new_version_is_refused() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    let err = kernel.replace(Counter::<CounterV2>::with_deps(&["ghost"])).unwrap_err();
    assert_eq!(err.step(), Step::Dependencies);
    assert!(err.to_string().contains("depends on `ghost`"), "{err}");
    assert_old_serving(&kernel);
}

#[test]
fn dependency_that_is_not_running_is_refused() {
    let j = Journal::default();
    let kernel = Kernel::new();
    kernel.register(Probe::new("db", &[], &j)).unwrap();
    counting_to_five(&kernel);
    kernel.stop("db").unwrap();
    let err = kernel.replace(Counter::<CounterV2>::with_deps(&["db"])).unwrap_err();
    assert_eq!(err.step(), Step::Dependencies);
    assert!(err.to_string().contains("needs `db` running"), "{err}");
    assert_old_serving(&kernel);
}

#[test]
fn dependency_cycle_is_refused() {
    let j = Journal::default();
    let kernel = Kernel::new();
    kernel.register(Probe::new("b", &["counter"], &j)).unwrap();
    counting_to_five(&kernel);
    let err = kernel.replace(Counter::<CounterV2>::with_deps(&["b"])).unwrap_err();
    assert_eq!(err.step(), Step::Dependencies);
    assert!(
        err.to_string().contains("counter -> b -> counter") || err.to_string().contains("b -> counter -> b"),
        "{err}"
    );
    assert_old_serving(&kernel);
}

#[test]
fn failed_or_panicking_start_of_the_new_version_restarts_the_old_one() {
    for fail in [Fail::Start, Fail::StartPanic] {
        let kernel = Kernel::new();
        counting_to_five(&kernel);
        let err = kernel.replace(Counter::<CounterV2>::failing(fail)).unwrap_err();
        assert_eq!(err.step(), Step::StartNew, "{fail:?}");
        assert!(err.old_restarted);
        assert_old_serving(&kernel);
    }
}

#[test]
fn state_migrated_is_sent_only_for_a_replacement_that_succeeded() {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&notices);
    let kernel = Kernel::builder()
        .observer(move |notice| {
            let line = match notice {
                microkernel::Notice::StateMigrated { service, from, to, .. } => {
                    format!("migrated {service} v{} -> v{}", from.version, to.version)
                }
                microkernel::Notice::Replaced { service } => format!("replaced {service}"),
                _ => return,
            };
            sink.lock().unwrap().push(line);
        })
        .build()
        .unwrap();
    counting_to_five(&kernel);
    for fail in [Fail::Start, Fail::StartPanic] {
        let err = kernel.replace(Counter::<CounterV2>::failing(fail)).unwrap_err();
        assert_eq!(err.step(), Step::StartNew, "{fail:?}");
        assert!(err.old_restarted);
        assert_old_serving(&kernel);
        // v1 serves again with its state: nothing may say the state moved to v2.
        assert_eq!(*notices.lock().unwrap(), Vec::<String>::new(), "{fail:?}");
    }
    kernel.replace(Counter::<CounterV2>::new()).unwrap();
    assert_eq!(
        *notices.lock().unwrap(),
        ["migrated counter v1 -> v2", "replaced counter"],
        "sent once the new version serves, before the replacement is reported done"
    );
}

#[test]
fn failed_stop_of_the_old_version_keeps_it_serving() {
    let kernel = Kernel::new();
    kernel.register(Counter::<CounterV1>::failing(Fail::Stop)).unwrap();
    kernel.start_all().unwrap();
    let err = kernel.replace(Counter::<CounterV2>::new()).unwrap_err();
    assert_eq!(err.step(), Step::StopOld);
    assert!(err.old_restarted);
    assert_eq!(served(&kernel), "{0 v1 0}");
}

#[test]
fn tampered_state_in_transit_fails_at_open() {
    let kernel = Kernel::builder()
        .sealer(sealer())
        .fault_in_transit(|blob| {
            let last = blob.len() - 1;
            blob[last] ^= 1;
        })
        .build()
        .unwrap();
    counting_to_five(&kernel);
    let err = kernel.replace(Counter::<CounterV2>::new()).unwrap_err();
    assert_eq!(err.step(), Step::Open);
    assert!(err.to_string().contains("authentication"), "{err}");
    assert_old_serving(&kernel);
}

#[test]
fn rollback_without_a_declared_downgrade_is_refused() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    kernel.replace(Counter::<OneWayV2>::new()).unwrap();
    let err = kernel.rollback(Counter::<CounterV1>::new()).unwrap_err();
    assert_eq!(err.step(), Step::Downgrade);
    // Matched on the cause, no downcast.
    assert!(
        matches!(
            err.cause(),
            ReplaceCause::Migration(MigrationError::NoDowngrade { version: 2, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("declares no downgrade"), "{err}");
    assert_eq!(served(&kernel), "{0 v2 5}");
}

#[test]
fn rollback_of_a_first_version_says_there_is_nothing_to_roll_back_to() {
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    let err = kernel.rollback(Counter::<CounterV1>::new()).unwrap_err();
    assert_eq!(err.step(), Step::Downgrade);
    assert!(
        matches!(
            err.cause(),
            ReplaceCause::Migration(MigrationError::FirstVersion { version: 1, .. })
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("add `down"), "{err}");
    assert_eq!(served(&kernel), "{0 v1 5}");
}

#[test]
fn a_version_with_another_name_is_refused() {
    let j = Journal::default();
    let kernel = Kernel::new();
    counting_to_five(&kernel);
    let handle = kernel.handle("counter").unwrap();
    let err = kernel.replace_at(&handle, Probe::new("other", &[], &j)).unwrap_err();
    assert_eq!(err.step(), Step::Enter);
    assert_old_serving(&kernel);
}

#[test]
fn calls_during_a_replacement_wait_and_other_services_are_not_blocked() {
    let j = Journal::default();
    let kernel = Kernel::new();
    kernel.register(Probe::new("other", &[], &j)).unwrap();
    counting_to_five(&kernel);

    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let mut v2 = Counter::<CounterV2>::new();
    v2.gate = Some((entered_tx, Arc::new(Mutex::new(release_rx))));

    thread::scope(|s| {
        let replacer = s.spawn(|| kernel.replace(v2));
        // The new version is starting: the slot is held.
        entered_rx.recv().unwrap();
        let waiting_call = s.spawn(|| kernel.call("counter", bump()).unwrap().to_string());
        // Another service answers meanwhile.
        assert!(
            kernel
                .call("other", Event::new("other", "t", "hi", ""))
                .unwrap()
                .is_ok()
        );
        thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiting_call.is_finished(), "the call waits for the replacement");
        release_tx.send(()).unwrap();
        replacer.join().unwrap().unwrap();
        assert_eq!(waiting_call.join().unwrap(), "{0 v2 6}", "served by the new version");
    });
}

use microkernel::Event;

#[test]
fn four_threads_calling_through_a_thousand_replacements_lose_nothing() {
    const SWAPS: usize = 1_000;
    let kernel = Kernel::builder().sealer(sealer()).build().unwrap();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    let handle = kernel.handle("counter").unwrap();
    let answered = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let reply = handle.call(bump()).expect("every call is answered");
                    assert!(reply.is_ok());
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // At least SWAPS replacements, and on until the callers got calls in between them (on a
        // loaded 2-core machine the callers may not be scheduled during the first thousand).
        let mut i = 0;
        while i < SWAPS || answered.load(Ordering::Relaxed) < 100 {
            if i % 2 == 0 {
                kernel.replace(Counter::<CounterV2>::new()).unwrap();
            } else {
                kernel.rollback(Counter::<CounterV1>::new()).unwrap();
            }
            i += 1;
        }
        if i % 2 == 1 {
            kernel.rollback(Counter::<CounterV1>::new()).unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let count: u64 = kernel.call("counter", get()).unwrap().data.parse().unwrap();
    assert_eq!(count, answered.load(Ordering::Relaxed));
    assert!(count > 0);
}
