//! Generations: a newer state is never overwritten by an older one, whatever the interleaving
//! of saves, and a replayed older file is refused while the store is open; a service that
//! starts fresh after its file was set aside saves above the generation the store saw.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use common::counter::{Counter, CounterV1, bump};
use common::flex;
use common::stored::{load, save};
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::state::{self, Stateless};
use microkernel::store::Location;
use microkernel::{DirStore, Kernel, StoreError};

const TEST_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn sealer() -> Sealer {
    Sealer::new(Keyring::new(1, Key::from_hex(Algorithm::Aes256Gcm, TEST_KEY).unwrap()))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("microkernel-gen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The count and generation in a counter's state file, read with the test key.
fn on_disk(location: &Location) -> (u32, u64) {
    let path = location.path().expect("a file");
    let (encoded, generation) = sealer()
        .open_generation("counter", std::fs::read(path).unwrap())
        .unwrap();
    let state: CounterV1 = state::decode(encoded.as_bytes()).unwrap();
    (state.count, generation)
}

/// Two checkpoints of one service: the first exports, then waits before writing while the
/// second exports a newer state and writes it. The older write must lose, and the file must
/// hold the newer state.
#[test]
fn an_older_export_that_writes_last_never_replaces_a_newer_file() {
    let dir = temp_dir("race");
    let (paused_tx, paused) = mpsc::channel::<u64>();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let first = AtomicBool::new(true);
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(&dir).unwrap())
        .pause_before_save(move |service, generation| {
            if service == "counter" && first.swap(false, Ordering::SeqCst) {
                paused_tx.send(generation).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
            }
        })
        .build()
        .unwrap();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    kernel.call("counter", bump()).unwrap();
    let slow = {
        let kernel = kernel.clone();
        std::thread::spawn(move || kernel.checkpoint_service("counter"))
    };
    let older = paused.recv().unwrap(); // exported count 1, not written yet
    kernel.call("counter", bump()).unwrap();
    let path = kernel.checkpoint_service("counter").unwrap(); // count 2, written
    let (count, newer) = on_disk(&path);
    assert_eq!(count, 2);
    assert!(
        newer > older,
        "generations follow the order of exports: {older} then {newer}"
    );
    release.send(()).unwrap();
    // The older save is not written, and that is not an error: the file holds a newer state.
    assert_eq!(slow.join().unwrap().unwrap(), path);
    assert_eq!(
        on_disk(&path),
        (2, newer),
        "the newer state was overwritten by an older one"
    );
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_store_refuses_a_generation_that_is_not_newer() {
    let dir = temp_dir("stale");
    let store = DirStore::open(&dir).unwrap();
    let encoded = state::encode(&CounterV1 { count: 5 }).unwrap();
    let path = save(&store, &sealer(), "counter", &encoded, 2).unwrap();
    let path = path.path().unwrap().to_owned();
    let before = std::fs::read(&path).unwrap();
    for generation in [1, 2] {
        let older = state::encode(&CounterV1 { count: 1 }).unwrap();
        let err = save(&store, &sealer(), "counter", &older, generation).unwrap_err();
        assert!(
            matches!(err, StoreError::Stale { newest: 2, .. }),
            "generation {generation}: {err}"
        );
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    save(&store, &sealer(), "counter", &encoded, 3).unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The replay: `bank.state` copied back after a newer save was accepted silently.
#[test]
fn a_replayed_older_file_is_refused_naming_it_and_left_untouched() {
    let dir = temp_dir("replay");
    let store = DirStore::open(&dir).unwrap();
    let path = save(
        &store,
        &sealer(),
        "bank",
        &state::encode(&CounterV1 { count: 1 }).unwrap(),
        1,
    )
    .unwrap();
    let path = path.path().unwrap().to_owned();
    let old_copy = std::fs::read(&path).unwrap();
    save(
        &store,
        &sealer(),
        "bank",
        &state::encode(&CounterV1 { count: 100 }).unwrap(),
        2,
    )
    .unwrap();
    std::fs::write(&path, &old_copy).unwrap();
    let err = load(&store, "bank").unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Replayed {
                found: 1,
                newest: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        old_copy,
        "the replayed file was modified"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restored_service_counts_on_from_the_generation_it_was_saved_at() {
    let dir = temp_dir("restart");
    let path = {
        let kernel = Kernel::builder()
            .sealer(sealer())
            .store(DirStore::open(&dir).unwrap())
            .build()
            .unwrap();
        kernel.register(Counter::<CounterV1>::new()).unwrap();
        kernel.start_all().unwrap();
        for _ in 0..3 {
            kernel.checkpoint_service("counter").unwrap();
        }
        kernel.stop_all().unwrap();
        kernel.checkpoint_service("counter").unwrap()
    };
    let (_, before) = on_disk(&path);
    assert!(before >= 4);
    // A new kernel (a new process, as far as the store can tell) goes on from there.
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(&dir).unwrap())
        .build()
        .unwrap();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    let after = kernel.checkpoint_service("counter").unwrap();
    assert!(
        on_disk(&after).1 > before,
        "a restarted service started its generations again"
    );
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file written before generations (envelope format 1) still loads, as generation 0.
#[test]
fn a_format_1_file_loads_as_generation_0() {
    let dir = temp_dir("v1");
    std::fs::create_dir_all(&dir).unwrap();
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sealed/echo_v1.aes-256-gcm.bin");
    let key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    std::fs::copy(legacy, dir.join("echo.state")).unwrap();
    let sealer = Sealer::new(Keyring::new(7, Key::from_hex(Algorithm::Aes256Gcm, key).unwrap()));
    let store = DirStore::open(&dir).unwrap();
    let loaded = load(&store, "echo").unwrap().unwrap();
    assert_eq!(loaded.generation(), 0);
    let (_, authenticated) = sealer.open_generation("echo", loaded.into_bytes()).unwrap();
    assert_eq!(authenticated, 0);
    // Its next save is generation 1 and newer.
    save(&store, &sealer, "echo", &state::encode(&Stateless).unwrap(), 1).unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file set aside at registration (it did not decode) must not leave the service's saves
/// below the generation the store saw: they would be refused as stale for ever.
#[test]
fn a_service_starting_fresh_after_a_set_aside_file_still_saves() {
    let dir = flex::temp_dir("fresh-after-aside");
    let store = DirStore::open(&dir).unwrap();
    // A state of another type (it shares no chain), at a high generation.
    #[derive(serde::Serialize, serde::Deserialize, microkernel::Migratable)]
    #[migratable(version = 1)]
    struct Other {
        name: String,
    }
    common::stored::save(
        &store,
        &flex::sealer(),
        "flex",
        &state::encode(&Other { name: "x".into() }).unwrap(),
        10,
    )
    .unwrap();
    let kernel = Kernel::builder()
        .sealer(flex::sealer())
        .store(store)
        .load_policy(microkernel::LoadPolicy::StartFreshKeepAside)
        .build()
        .unwrap();
    kernel.register(flex::Flex::<flex::FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    kernel
        .call("flex", microkernel::Event::new("flex", "t", "set", "5"))
        .unwrap();
    kernel.checkpoint().unwrap();
    assert_eq!(flex::stored_count(&dir), Some(5), "the checkpoint was silently dropped");
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}
