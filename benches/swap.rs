//! W2 and W3 (../shared/peers/README.md): replacing the running echo service, its state sealed
//! with AES-256-GCM across (and, for reference, unsealed); and the pause a caller sees.

#[path = "workload.rs"]
mod workload;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use microkernel::Kernel;

fn swap_small(c: &mut Criterion) {
    let mut group = c.benchmark_group("W2 swap_small");
    let (sealed, _) = workload::kernel();
    group.bench_function("sealed aes-256-gcm", |b| b.iter(|| workload::timed_swap(&sealed)));
    let plain = Kernel::new();
    plain.register(workload::BenchEcho::default()).unwrap();
    plain.start_all().unwrap();
    group.bench_function("unsealed", |b| b.iter(|| workload::timed_swap(&plain)));
    group.finish();
}

fn swap_big(c: &mut Criterion) {
    let mut group = c.benchmark_group("W3 swap_big_100000");
    group.sample_size(10).measurement_time(Duration::from_secs(4));
    let (sealed, handle) = workload::kernel();
    workload::fill(&handle, 100_000);
    group.bench_function("sealed aes-256-gcm", |b| b.iter(|| workload::timed_swap(&sealed)));
    assert_eq!(workload::count_and_entries(&handle).1, 100_000);
    let plain = Kernel::new();
    let handle = plain.register(workload::BenchEcho::default()).unwrap();
    plain.start_all().unwrap();
    workload::fill(&handle, 100_000);
    group.bench_function("unsealed", |b| b.iter(|| workload::timed_swap(&plain)));
    group.finish();
}

/// The longest wait of a caller calling in a loop while the service is replaced: the pause a
/// replacement imposes on its clients.
fn caller_pause(c: &mut Criterion) {
    let mut group = c.benchmark_group("caller pause during a sealed small swap");
    group.bench_function("max call latency per swap", |b| {
        b.iter_custom(|iters| {
            let (kernel, handle) = workload::kernel();
            let stop = AtomicBool::new(false);
            let mut worst = Duration::ZERO;
            std::thread::scope(|s| {
                let caller = s.spawn(|| {
                    let mut worst = Duration::ZERO;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        handle.call(workload::request()).unwrap();
                        worst = worst.max(t.elapsed());
                    }
                    worst
                });
                for _ in 0..iters {
                    workload::timed_swap(&kernel);
                }
                stop.store(true, Ordering::Relaxed);
                worst = caller.join().unwrap();
            });
            // Report the worst pause once per swap so criterion's mean is that pause.
            worst * iters as u32
        })
    });
    group.finish();
}

criterion_group!(benches, swap_small, swap_big, caller_pause);
criterion_main!(benches);
