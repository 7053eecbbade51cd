//! Stress: threads calling and pushing without pause while the service is replaced
//! v1 → v2 → v3 and rolled back, again and again, with sealing on. Afterwards every call was
//! answered once, none was lost, and the count equals the number of answered calls.
//!
//! `.ci/run` runs it with the other tests (debug build) at the default size. For a longer run:
//! `STRESS_CYCLES=100000 STRESS_THREADS=8 cargo test --release --test stress -- --nocapture`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::counter::{Counter, CounterV1, CounterV2, CounterV3, bump, explode, get};
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::{CallError, DirStore, Handle, Kernel, RestartPolicy, Status, state};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn calls_and_pushes_survive_repeated_sealed_upgrades_and_rollbacks() {
    let cycles = env("STRESS_CYCLES", 20_000);
    let threads = env("STRESS_THREADS", 4);
    let key = Key::generate(Algorithm::Aes256Gcm).unwrap();
    let kernel = Kernel::builder()
        .sealer(Sealer::new(Keyring::new(1, key)))
        .build()
        .unwrap();
    let handle: Handle = kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();

    let answered = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    std::thread::scope(|s| {
        // Watchdog: no progress for 60 s means a deadlock; fail loudly instead of hanging CI.
        s.spawn(|| {
            let mut last = (0, Instant::now());
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let now = progress.load(Ordering::Relaxed) + answered.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(60) {
                    eprintln!("stress watchdog: no progress for 60 s; deadlock");
                    std::process::abort();
                }
            }
        });
        // Nobody reading the status without the slot's mutex sees the service stop in between.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                assert_eq!(handle.status(), Status::Running, "status seen mid-replacement");
            }
        });
        for t in 0..threads {
            let (kernel, handle, answered, done) = (&kernel, &handle, &answered, &done);
            s.spawn(move || {
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let reply = match (t + i) % 3 {
                        0 => handle.call(bump()).expect("a call is never lost"),
                        1 => kernel.call("counter", bump()).expect("a call is never lost"),
                        _ => kernel.push(bump(), Duration::from_secs(30)),
                    };
                    assert!(reply.is_ok(), "{reply}");
                    answered.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        for cycle in 0..cycles {
            kernel.replace(Counter::<CounterV2>::new()).unwrap();
            kernel.replace(Counter::<CounterV3>::new()).unwrap();
            kernel.rollback(Counter::<CounterV2>::new()).unwrap();
            kernel.rollback(Counter::<CounterV1>::new()).unwrap();
            progress.store(cycle + 1, Ordering::Relaxed);
        }
        done.store(true, Ordering::Relaxed);
    });
    let count: u64 = handle.call(get()).unwrap().data.parse().unwrap();
    let answered = answered.load(Ordering::Relaxed);
    println!("{cycles} cycles (4 replacements each), {threads} threads, {answered} calls answered");
    assert_eq!(count, answered, "every answered call counted exactly once");
    assert!(answered > 0);
}

/// Everything at once on one service, from 6 threads: calls, replacements and rollbacks (each
/// followed by supervising the new version), stop/start, checkpoints, and handler panics that
/// the supervisor restarts from the last saved state. Invariants: every call returns (watchdog),
/// the saved state's generation only grows and its count never goes back, the status is always
/// one a started service can have, and after `stop_all` nothing runs.
#[test]
fn lifecycle_chaos_keeps_every_promise() {
    let rounds = env("STRESS_CHAOS_ROUNDS", 20_000);
    // The requested panics are expected: keep their messages out of the output.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("exploded on request") {
            report(info);
        }
    }));
    let dir = std::env::temp_dir().join(format!("microkernel-stress-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A test key, so that a second sealer can read the files the store writes.
    let keyring = || {
        let hex = "5a".repeat(32);
        Keyring::new(1, Key::from_hex(Algorithm::Aes256Gcm, &hex).unwrap())
    };
    let kernel = Kernel::builder()
        .sealer(Sealer::new(keyring()))
        .sealer(Sealer::new(keyring()))
        .store(DirStore::open(&dir).unwrap())
        .build()
        .unwrap();
    let handle: Handle = kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: u32::MAX,
        within: Duration::from_secs(1),
        backoff: Duration::ZERO,
    };
    kernel.supervise(&handle, policy, Counter::<CounterV1>::new).unwrap();
    let reader = Sealer::new(keyring());
    let file = dir.join("counter.state");

    let done = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let (ok, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut last = (0, Instant::now());
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let now =
                    progress.load(Ordering::Relaxed) + ok.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(60) {
                    eprintln!("chaos watchdog: no progress for 60 s; deadlock");
                    std::process::abort();
                }
            }
        });
        // Callers: each call returns; while the service is stopped or failed it is refused.
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    match handle.call(bump()) {
                        Ok(reply) => {
                            assert!(reply.is_ok(), "{reply}");
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(CallError::NotRunning { .. } | CallError::Panicked { .. }) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(other) => panic!("unexpected call error: {other}"),
                    }
                    let status = handle.status();
                    assert_ne!(status, Status::Created, "a started service shows Created");
                }
            });
        }
        // Checkpoints: the file's generation only grows, its count never goes back.
        s.spawn(|| {
            let (mut generation, mut count) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let _ = kernel.checkpoint_service("counter");
                let Ok(blob) = std::fs::read(&file) else { continue };
                let (opened, now) = reader.open_generation("counter", blob).expect("the file always opens");
                let value: CounterV3 = state::decode(opened.as_bytes()).expect("the file always decodes");
                assert!(
                    now >= generation,
                    "the file's generation went back from {generation} to {now}"
                );
                assert!(
                    value.count >= count,
                    "the file's count went back from {count} to {}",
                    value.count
                );
                (generation, count) = (now, value.count);
            }
        });
        // Panics, restarted by the supervisor.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let _ = handle.call(explode());
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // Stop and start.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let _ = kernel.stop("counter");
                let _ = kernel.start("counter");
            }
        });
        // Replacements up and down the chain, each version supervised in turn.
        for round in 0..rounds {
            match round % 4 {
                0 => {
                    let _ = kernel.replace(Counter::<CounterV2>::new());
                    kernel.supervise(&handle, policy, Counter::<CounterV2>::new).unwrap();
                }
                1 => {
                    let _ = kernel.replace(Counter::<CounterV3>::new());
                    kernel.supervise(&handle, policy, Counter::<CounterV3>::new).unwrap();
                }
                2 => {
                    let _ = kernel.rollback(Counter::<CounterV2>::new());
                    kernel.supervise(&handle, policy, Counter::<CounterV2>::new).unwrap();
                }
                _ => {
                    let _ = kernel.rollback(Counter::<CounterV1>::new());
                    kernel.supervise(&handle, policy, Counter::<CounterV1>::new).unwrap();
                }
            }
            progress.store(round + 1, Ordering::Relaxed);
        }
        // The rounds can end within a fraction of a second, before the callers happened to
        // find the service running between stops, panics and swaps: the chaos goes on (at most
        // 10 s more) until some call was served, so that `ok > 0` below tests the promise, not
        // the scheduler's luck.
        let until = Instant::now() + Duration::from_secs(10);
        while ok.load(Ordering::Relaxed) == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        done.store(true, Ordering::Relaxed);
    });
    kernel.stop_all().unwrap_or_else(|e| panic!("stop_all: {e}"));
    assert_ne!(
        kernel.status("counter"),
        Some(Status::Running),
        "a service runs after stop_all"
    );
    let (ok, refused) = (ok.into_inner(), refused.into_inner());
    println!("chaos: {rounds} replacement rounds, {ok} calls served, {refused} refused while stopped or failed");
    assert!(ok > 0);
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}
