//! Only the async W1 (and W1c on one thread) of `bench_peers`, for quick before/after runs of
//! the async call path: `cargo run --release --features tokio --example bench_async [calls] [rounds]`.

#[cfg(feature = "tokio")]
#[path = "../benches/workload.rs"]
mod workload;

#[cfg(feature = "tokio")]
#[path = "../benches/async_workload.rs"]
mod async_workload;

#[cfg(feature = "tokio")]
fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (calls, rounds) = (arg(1, 2_000_000), arg(2, 1));
    for _ in 0..rounds {
        async_workload::print_one_thread_figures(calls);
    }
}

#[cfg(not(feature = "tokio"))]
fn main() {
    eprintln!("bench_async needs the feature `tokio`");
}
