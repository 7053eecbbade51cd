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
        let one_thread = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        one_thread.block_on(async {
            let (kernel, handle) = async_workload::kernel().await;
            println!(
                "async_call_round_trip_ns {:.1}",
                async_workload::round_trip_ns(&handle, calls).await
            );
            println!(
                "async_call_concurrent_1thread_ops_per_s {:.0}",
                async_workload::concurrent_ops_per_s(&handle, 4, calls).await
            );
            async_workload::assert_count(&handle, calls / 4 * 4 + calls).await;
            kernel.shutdown().await.expect("shutdown");
        });
    }
}

#[cfg(not(feature = "tokio"))]
fn main() {
    eprintln!("bench_async needs the feature `tokio`");
}
