//! Sealed state on disk: save on stop, restore on register, checkpoints, bad files, locking,
//! and crash safety under SIGKILL.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::counter::{Counter, CounterV1, CounterV2, bump, get};
use common::{Journal, Probe};
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::{DirStore, Kernel, LifecycleError, LoadPolicy, StoreError};

/// A fixed test key, so that a child process and later kernels can open the files.
const TEST_KEY: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

fn sealer() -> Sealer {
    Sealer::new(Keyring::new(1, Key::from_hex(Algorithm::Aes256Gcm, TEST_KEY).unwrap()))
}

/// A fresh directory under the target dir's temp area, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "microkernel-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kernel_on(dir: &Path) -> Kernel {
    Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(dir).unwrap())
        .build()
        .unwrap()
}

fn count(kernel: &Kernel) -> String {
    kernel.call("counter", get()).unwrap().to_string()
}

fn hash(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn state_saved_on_stop_is_restored_on_register() {
    let dir = TempDir::new("stop");
    {
        let kernel = kernel_on(&dir.0);
        kernel.register(Counter::<CounterV1>::new()).unwrap();
        kernel.start_all().unwrap();
        for _ in 0..3 {
            kernel.call("counter", bump()).unwrap();
        }
        kernel.stop_all().unwrap();
    }
    let file = dir.0.join("counter.state");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(&dir.0).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let kernel = kernel_on(&dir.0);
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    assert_eq!(count(&kernel), "{0 v1 3}");
}

#[test]
fn a_v1_file_loads_into_a_v2_service() {
    let dir = TempDir::new("upgrade");
    {
        let kernel = kernel_on(&dir.0);
        kernel.register(Counter::<CounterV1>::new()).unwrap();
        kernel.start_all().unwrap();
        kernel.call("counter", bump()).unwrap();
        kernel.checkpoint().unwrap();
    }
    let kernel = kernel_on(&dir.0);
    kernel.register(Counter::<CounterV2>::new()).unwrap();
    kernel.start_all().unwrap();
    assert_eq!(count(&kernel), "{0 v2 1}");
}

#[test]
fn checkpoint_saves_every_running_service() {
    let dir = TempDir::new("several");
    let j = Journal::default();
    let kernel = kernel_on(&dir.0);
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.register(Probe::new("a", &[], &j)).unwrap();
    kernel.register(Probe::new("idle", &[], &j)).unwrap();
    kernel.start("counter").unwrap();
    kernel.start("a").unwrap();
    let mut written = kernel.checkpoint().unwrap();
    written.sort();
    let written: Vec<_> = written.iter().map(|l| l.path().unwrap().to_owned()).collect();
    assert_eq!(written, [dir.0.join("a.state"), dir.0.join("counter.state")]);
    assert!(
        !dir.0.join("idle.state").exists(),
        "only running services are checkpointed"
    );
    assert!(kernel.checkpoint_service("idle").is_ok());
}

#[test]
fn without_a_store_checkpoint_is_an_error() {
    let kernel = Kernel::new();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    let err = kernel.checkpoint_service("counter").unwrap_err();
    assert!(matches!(err, LifecycleError::NoStore { .. }), "{err}");
}

/// Writes a v1 state file with count 5 and returns its path.
fn saved_file(dir: &Path) -> PathBuf {
    let kernel = kernel_on(dir);
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    for _ in 0..5 {
        kernel.call("counter", bump()).unwrap();
    }
    kernel.checkpoint().unwrap();
    dir.join("counter.state")
}

#[test]
fn bad_files_are_refused_naming_the_file_and_left_untouched() {
    let dir = TempDir::new("bad");
    let path = saved_file(&dir.0);
    let good = std::fs::read(&path).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flipped byte", {
            let mut b = good.clone();
            let at = b.len() / 2;
            b[at] ^= 0x40;
            b
        }),
        ("truncated", good[..good.len() - 5].to_vec()),
        ("not an envelope", b"hello".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let kernel = kernel_on(&dir.0);
        let err = kernel.register(Counter::<CounterV1>::new()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{what}: {message}");
        assert!(matches!(err, LifecycleError::Restore { .. }), "{what}: {message}");
        assert_eq!(hash(&path), bytes, "{what}: the file was modified");
        assert_eq!(
            kernel.status("counter"),
            None,
            "{what}: the service must not start with a default state"
        );
    }
}

#[test]
fn an_unknown_key_and_a_newer_version_are_refused() {
    let dir = TempDir::new("key");
    let path = saved_file(&dir.0);
    let before = hash(&path);
    let other = Sealer::new(Keyring::new(9, Key::generate(Algorithm::Aes256Gcm).unwrap()));
    let kernel = Kernel::builder()
        .sealer(other)
        .store(DirStore::open(&dir.0).unwrap())
        .build()
        .unwrap();
    let err = kernel.register(Counter::<CounterV1>::new()).unwrap_err();
    assert!(err.to_string().contains("no key with id 1"), "{err}");
    drop(kernel);
    assert_eq!(hash(&path), before);

    // A v2 file offered to a v1 binary.
    {
        let kernel = kernel_on(&dir.0);
        std::fs::remove_file(&path).unwrap();
        kernel.register(Counter::<CounterV2>::new()).unwrap();
        kernel.checkpoint_service("counter").unwrap();
    }
    let newer = hash(&path);
    let kernel = kernel_on(&dir.0);
    let err = kernel.register(Counter::<CounterV1>::new()).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
    assert!(matches!(
        &err,
        LifecycleError::Restore {
            source: StoreError::Decode { .. },
            ..
        }
    ));
    assert_eq!(hash(&path), newer);
}

#[test]
fn start_fresh_policy_sets_the_bad_file_aside() {
    let dir = TempDir::new("aside");
    let path = saved_file(&dir.0);
    std::fs::write(&path, b"garbage").unwrap();
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(&dir.0).unwrap())
        .load_policy(LoadPolicy::StartFreshKeepAside)
        .build()
        .unwrap();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    assert_eq!(count(&kernel), "{0 v1 0}");
    let aside: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("counter.state.rejected-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read(dir.0.join(&aside[0])).unwrap(), b"garbage");
}

#[test]
fn a_read_only_directory_gives_a_clear_error() {
    if unsafe_is_root() {
        // Root ignores permission bits; /proc is read-only even for root.
        let err = DirStore::open("/proc/self/fdinfo").unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        assert!(err.to_string().contains("cannot create `/proc/self/fdinfo/"), "{err}");
        return;
    }
    let dir = TempDir::new("readonly");
    let kernel = kernel_on(&dir.0);
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o500)).unwrap();
    let err = kernel.checkpoint().unwrap_err();
    assert!(err.to_string().contains("cannot create"), "{err}");
}

/// Whether we run as root (CI here does): `id -u` is 0.
fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

#[test]
fn a_full_or_unwritable_target_reports_the_save_error_on_stop() {
    let dir = TempDir::new("unwritable");
    let kernel = kernel_on(&dir.0);
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    // A directory where the state file should go makes the rename fail, even for root.
    std::fs::create_dir(dir.0.join("counter.state")).unwrap();
    let err = kernel.stop("counter").unwrap_err();
    assert!(matches!(err, LifecycleError::Save { .. }), "{err}");
    assert!(err.to_string().contains("counter.state"), "{err}");
}

#[test]
fn two_kernels_cannot_share_a_directory() {
    let dir = TempDir::new("lock");
    let first = DirStore::open(&dir.0).unwrap();
    let err = DirStore::open(&dir.0).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    drop(first);
    assert!(DirStore::open(&dir.0).is_ok(), "the lock goes with the store");
}

#[test]
fn periodic_checkpoints_write_the_file() {
    let dir = TempDir::new("periodic");
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(&dir.0).unwrap())
        .checkpoint_every(Duration::from_millis(20))
        .build()
        .unwrap();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    kernel.call("counter", bump()).unwrap();
    let path = dir.0.join("counter.state");
    for _ in 0..200 {
        if path.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(path.exists());
}

const CHILD_DIR: &str = "MICROKERNEL_TEST_CHILD_DIR";

/// Not a test on its own: when run as a child (by `checkpoints_survive_sigkill`), restores the
/// counter, then bumps and checkpoints in a loop until killed.
#[test]
fn checkpoint_loop_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let kernel = kernel_on(Path::new(&dir));
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    println!("ready");
    loop {
        kernel.call("counter", bump()).unwrap();
        kernel.checkpoint().unwrap();
    }
}

/// Kills a child that checkpoints in a loop, at random moments, 200 times; after each kill the
/// file opens to a complete state whose count never goes back.
#[test]
fn checkpoints_survive_sigkill() {
    let dir = TempDir::new("sigkill");
    let exe = std::env::current_exe().unwrap();
    let mut last = 0u64;
    let mut last_generation = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    for round in 0..200 {
        let mut child = Command::new(&exe)
            .args(["--exact", "checkpoint_loop_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, &dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(2_000 + seed % 15_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let store = DirStore::open(&dir.0).unwrap();
        let Some(loaded) = common::stored::load(&store, "counter").unwrap_or_else(|e| panic!("round {round}: {e}"))
        else {
            continue; // killed before the first checkpoint
        };
        let (opened, generation) = sealer()
            .open_generation("counter", loaded.into_bytes())
            .unwrap_or_else(|e| panic!("round {round}: does not open: {e}"));
        let state: CounterV1 = microkernel::state::decode(opened.as_bytes())
            .unwrap_or_else(|e| panic!("round {round}: does not decode: {e}"));
        let now = u64::from(state.count);
        assert!(now >= last, "round {round}: count went back from {last} to {now}");
        assert!(
            generation >= last_generation,
            "round {round}: generation went back from {last_generation} to {generation}"
        );
        last = now;
        last_generation = generation;
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    // A kill between create and rename leaves a temporary file; it is never read.
    assert!(leftovers.len() <= 200);
    assert!(last > 0, "the child never checkpointed");
}

#[test]
fn a_failed_checkpoint_leaves_the_service_serving_with_the_same_state() {
    let dir = TempDir::new("ckpt-fail");
    let kernel = kernel_on(&dir.0);
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    kernel.call("counter", bump()).unwrap();
    std::fs::create_dir(dir.0.join("counter.state")).unwrap();
    let err = kernel.checkpoint().unwrap_err();
    assert!(err.to_string().contains("counter.state"), "{err}");
    assert_eq!(count(&kernel), "{0 v1 1}");
}

#[test]
fn a_seal_failure_during_a_checkpoint_is_reported_and_changes_nothing() {
    let dir = TempDir::new("seal-fail");
    let store = DirStore::open(&dir.0).unwrap();
    let kernel = Kernel::builder()
        .sealer(sealer().with_seal_limit(1))
        .store(store)
        .build()
        .unwrap();
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    kernel.checkpoint().unwrap();
    let before = hash(&dir.0.join("counter.state"));
    kernel.call("counter", bump()).unwrap();
    let err = kernel.checkpoint().unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    assert_eq!(hash(&dir.0.join("counter.state")), before, "the previous file stays");
    assert_eq!(count(&kernel), "{0 v1 1}");
}

#[test]
fn a_service_refusing_the_stored_state_is_not_registered_and_the_file_stays() {
    let dir = TempDir::new("import-fail");
    let path = saved_file(&dir.0);
    let before = hash(&path);
    let kernel = kernel_on(&dir.0);
    let err = kernel
        .register(Counter::<CounterV1>::failing(common::counter::Fail::Import))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            LifecycleError::Restore {
                source: StoreError::Import { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(hash(&path), before);
    assert_eq!(kernel.status("counter"), None);
}

/// A kernel on `dir` whose observer records what registration found in the store.
fn observed_kernel_on(dir: &Path, policy: LoadPolicy) -> (Kernel, Journal) {
    let journal = Journal::default();
    let sink = journal.clone();
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(dir).unwrap())
        .load_policy(policy)
        .observer(move |notice| match notice {
            microkernel::Notice::Restored {
                service, generation, ..
            } => sink.note(format!("restored {service} at {generation}")),
            microkernel::Notice::NoStoredState { service, .. } => sink.note(format!("fresh {service}")),
            _ => {}
        })
        .build()
        .unwrap();
    (kernel, journal)
}

#[test]
fn registration_says_whether_it_restored_a_state() {
    let dir = TempDir::new("says");
    let (kernel, journal) = observed_kernel_on(&dir.0, LoadPolicy::Fail);
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    assert_eq!(journal.take(), ["fresh counter"]);
    kernel.start_all().unwrap();
    kernel.call("counter", bump()).unwrap();
    kernel.stop_all().unwrap();
    drop(kernel);
    let (kernel, journal) = observed_kernel_on(&dir.0, LoadPolicy::Fail);
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    let lines = journal.take();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("restored counter at "), "{lines:?}");
}

#[test]
fn require_stored_refuses_a_service_whose_state_is_missing() {
    let dir = TempDir::new("require");
    // A typo in the path: the directory is new and empty.
    let (kernel, journal) = observed_kernel_on(&dir.0.join("typo"), LoadPolicy::RequireStored);
    let error = kernel.register(Counter::<CounterV1>::new()).unwrap_err();
    match &error {
        LifecycleError::NoStoredState { service, location } => {
            assert_eq!(service, "counter");
            assert!(location.contains("typo"), "{location}");
        }
        other => panic!("expected NoStoredState, got {other:?}"),
    }
    assert!(error.to_string().contains("RequireStored"), "{error}");
    assert_eq!(kernel.status("counter"), None, "nothing registered");
    assert!(journal.lines().is_empty());
}

#[test]
fn require_stored_takes_a_service_whose_state_is_there() {
    let dir = TempDir::new("require-ok");
    {
        let kernel = kernel_on(&dir.0);
        kernel.register(Counter::<CounterV1>::new()).unwrap();
        kernel.start_all().unwrap();
        kernel.call("counter", bump()).unwrap();
        kernel.stop_all().unwrap();
    }
    let (kernel, _) = observed_kernel_on(&dir.0, LoadPolicy::RequireStored);
    kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    assert_eq!(count(&kernel), "{0 v1 1}");
}
