//! W1: one caller thread calls the echo service through the kernel (../shared/peers/README.md).
//! Through a handle (no name lookup) and through the name.

#[path = "workload.rs"]
mod workload;

use criterion::{Criterion, criterion_group, criterion_main};

fn call(c: &mut Criterion) {
    let (kernel, handle) = workload::kernel();
    let request = workload::request();
    let mut group = c.benchmark_group("W1 call_round_trip");
    group.bench_function("handle", |b| b.iter(|| handle.call(request.clone()).unwrap()));
    group.bench_function("name", |b| b.iter(|| kernel.call("echo", request.clone()).unwrap()));
    group.bench_function("send (Go's Send)", |b| b.iter(|| kernel.send(request.clone())));
    group.finish();
}

criterion_group!(benches, call);
criterion_main!(benches);
