//! W1 and W1c for async services (feature `tokio`): the same request and handler work as
//! `workload.rs`, callers run as spawned tasks (as in `../shared/peers/rust-actors`).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use microkernel::asynchronous::{AsyncContext, AsyncHandle, AsyncHandler};
use microkernel::{Event, Kernel, Reply};

use super::workload::{BenchState, echo};

/// The bench echo as an async service: the same state and handler work.
#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
pub struct AsyncEcho {
    #[state]
    pub state: BenchState,
}

impl AsyncHandler for AsyncEcho {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, event: Event, _: &AsyncContext) -> Reply {
        if event.kind == "count" {
            return Reply::ok("count", self.state.count.to_string());
        }
        echo(&mut self.state.count, &event)
    }
}

/// A kernel (sealing, as W2 does) serving the async echo, started.
pub async fn kernel() -> (Kernel, AsyncHandle) {
    let key = microkernel::seal::Key::generate(microkernel::seal::Algorithm::Aes256Gcm).expect("OS RNG");
    let sealer = microkernel::Sealer::new(microkernel::seal::Keyring::new(1, key));
    let kernel = Kernel::builder().sealer(sealer).build().expect("valid settings");
    let handle = kernel.register_async(AsyncEcho::default()).await.expect("register");
    kernel.start_all_async().await.expect("start");
    (kernel, handle)
}

/// W1, async: one spawned task making `calls` sequential round trips; ns per call.
pub async fn round_trip_ns(handle: &AsyncHandle, calls: u64) -> f64 {
    let handle = handle.clone();
    let request = super::workload::request();
    tokio::spawn(async move {
        let started = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(handle.call(request.clone()).await.expect("call"));
        }
        started.elapsed().as_nanos() as f64 / calls as f64
    })
    .await
    .expect("the caller task")
}

/// W1c, async: `tasks` spawned callers, `calls / tasks` each; calls per second.
pub async fn concurrent_ops_per_s(handle: &AsyncHandle, tasks: u64, calls: u64) -> f64 {
    let each = calls / tasks;
    let started = Instant::now();
    let callers: Vec<_> = (0..tasks)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move {
                let request = super::workload::request();
                for _ in 0..each {
                    std::hint::black_box(handle.call(request.clone()).await.expect("call"));
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("a caller task");
    }
    (each * tasks) as f64 / started.elapsed().as_secs_f64()
}

/// Call latencies of `tasks` callers (every `sample`-th call timed) while `background` runs
/// (replacements in a loop, say) until the callers are done.
pub async fn sampled_latencies<B, Fut>(
    handle: &AsyncHandle,
    tasks: u64,
    calls: u64,
    sample: u64,
    background: B,
) -> Vec<Duration>
where
    B: FnOnce(Arc<std::sync::atomic::AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runner = tokio::spawn(background(Arc::clone(&done)));
    let each = calls / tasks;
    let callers: Vec<_> = (0..tasks)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move {
                let request = super::workload::request();
                let mut samples = Vec::with_capacity((each / sample) as usize + 1);
                for i in 0..each {
                    if i % sample == 0 {
                        let started = Instant::now();
                        std::hint::black_box(handle.call(request.clone()).await.expect("call"));
                        samples.push(started.elapsed());
                    } else {
                        std::hint::black_box(handle.call(request.clone()).await.expect("call"));
                    }
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for caller in callers {
        all.extend(caller.await.expect("a caller task"));
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    runner.await.expect("the background task");
    all
}

/// Every call was answered exactly once: the service counted `expected`.
pub async fn assert_count(handle: &AsyncHandle, expected: u64) {
    let count = handle
        .call(Event::new("echo", "bench", "count", ""))
        .await
        .expect("count");
    assert_eq!(
        count.data.parse::<u64>().expect("a count"),
        expected,
        "every async call was answered exactly once, across the replacements"
    );
}

/// W1 (one caller task) and W1c (4 caller tasks) on a `current_thread` runtime, printed as
/// `bench_peers` prints them; the service's count is checked after.
pub fn print_one_thread_figures(calls: u64) {
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    one_thread.block_on(async {
        let (kernel, handle) = kernel().await;
        println!("async_call_round_trip_ns {:.1}", round_trip_ns(&handle, calls).await);
        println!(
            "async_call_concurrent_1thread_ops_per_s {:.0}",
            concurrent_ops_per_s(&handle, 4, calls).await
        );
        assert_count(&handle, calls / 4 * 4 + calls).await;
        kernel.shutdown().await.expect("shutdown");
    });
}
