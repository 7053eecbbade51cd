//! Stress: threads calling and pushing without pause while the service is replaced
//! v1 → v2 → v3 and rolled back, again and again, with sealing on. Afterwards every call was
//! answered once, none was lost, and the count equals the number of answered calls.
//!
//! `.ci/run` runs it in release mode at the default size. For a longer run:
//! `STRESS_CYCLES=100000 STRESS_THREADS=8 cargo test --release --test stress -- --nocapture`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::counter::{Counter, CounterV1, CounterV2, CounterV3, bump, get};
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::{Handle, Kernel, Status};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn calls_and_pushes_survive_repeated_sealed_upgrades_and_rollbacks() {
    let cycles = env("STRESS_CYCLES", 20_000);
    let threads = env("STRESS_THREADS", 4);
    let key = Key::generate(Algorithm::Aes256Gcm).unwrap();
    let kernel = Kernel::builder().sealer(Sealer::new(Keyring::new(1, key))).build();
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
                        _ => kernel.push(bump()).wait(Duration::from_secs(30)),
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
