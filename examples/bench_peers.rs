//! W1–W3 of `../shared/peers/README.md`, printed like `../shared/peers/run` so the figures can
//! be set side by side. Run in release mode:
//!
//! ```text
//! cargo run --release --example bench_peers [calls] [swaps] [big_entries]
//! ```

#[path = "../benches/workload.rs"]
mod workload;

use std::time::Instant;

use microkernel::Event;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .map_or(default, |a| a.parse().expect("a number"))
}

fn main() {
    let (calls, swaps, big) = (arg(1, 2_000_000), arg(2, 20_000), arg(3, 100_000));
    let (kernel, handle) = workload::kernel();
    let request: Event = workload::request();

    let started = Instant::now();
    for _ in 0..calls {
        let reply = handle.call(request.clone()).expect("call");
        std::hint::black_box(reply);
    }
    let elapsed = started.elapsed();
    println!("call_round_trip_ns {:.1}", elapsed.as_nanos() as f64 / calls as f64);
    println!("call_ops_per_s {:.0}", calls as f64 / elapsed.as_secs_f64());

    let small: Vec<_> = (0..swaps).map(|_| workload::timed_swap(&kernel)).collect();
    println!(
        "swap_small_median_us {:.2}",
        workload::median(small).as_nanos() as f64 / 1000.0
    );
    println!("count_after {}", workload::count_and_entries(&handle).0);

    workload::fill(&handle, big);
    let large: Vec<_> = (0..5).map(|_| workload::timed_swap(&kernel)).collect();
    println!(
        "swap_big_{big}_median_ms {:.2}",
        workload::median(large).as_micros() as f64 / 1000.0
    );
    println!("big_entries_after {}", workload::count_and_entries(&handle).1);
}
