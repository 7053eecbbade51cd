//! Who is calling is a chain of calls, not a thread: independent tasks that share a runtime
//! worker are never taken for one caller (no call, save or lifecycle operation of theirs is
//! refused), while real cycles of one chain still are; and a dropped call to a busy service,
//! sync or async, withdraws a request the handler has not taken.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use microkernel::asynchronous::{AsyncContext, AsyncHandle, AsyncHandler};
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::{CallError, Context, DirStore, Event, Handler, Kernel, LifecycleError, Migratable, Reply};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 1)]
struct Count {
    count: u64,
}

/// A synchronous counter whose handler takes `delay`; "self" calls itself (a real cycle).
#[derive(microkernel::Service, Default)]
#[service(name = "slow-sync")]
struct SlowSync {
    #[state]
    state: Count,
    delay: Duration,
    handled: Arc<AtomicU64>,
}

impl Handler for SlowSync {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, ctx: &Context) -> Reply {
        if &*event.kind == "self" {
            return match ctx.call("slow-sync", ev("slow-sync", "count")) {
                Err(CallError::WouldDeadlock { .. }) => Reply::ok("refused", ""),
                other => Reply::new(500, "self-call not refused", format!("{other:?}")),
            };
        }
        std::thread::sleep(self.delay);
        self.state.count += 1;
        self.handled.fetch_add(1, Ordering::SeqCst);
        Reply::ok("sync", self.state.count.to_string())
    }
}

/// An async counter whose handler takes `delay`; "nested" calls the synchronous counter (no
/// cycle); "self" calls itself (a real cycle).
#[derive(microkernel::Service, Default)]
#[service(name = "slow-async")]
struct SlowAsync {
    #[state]
    state: Count,
    delay: Duration,
}

impl AsyncHandler for SlowAsync {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, event: Event, ctx: &AsyncContext) -> Reply {
        match &*event.kind {
            "nested" => {
                return ctx
                    .call("slow-sync", ev("slow-sync", "count"))
                    .await
                    .unwrap_or_else(|e| Reply::new(500, "nested call failed", e.to_string()));
            }
            "self" => {
                return match ctx.call("slow-async", ev("slow-async", "count")).await {
                    Err(CallError::WouldDeadlock { .. }) => Reply::ok("refused", ""),
                    other => Reply::new(500, "self-call not refused", format!("{other:?}")),
                };
            }
            _ => {}
        }
        tokio::time::sleep(self.delay).await;
        self.state.count += 1;
        Reply::ok("async", self.state.count.to_string())
    }
}

fn ev(to: &str, kind: &'static str) -> Event {
    Event::new(to.to_owned(), "test", kind, "")
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// A kernel with a sealed directory store, so that saves are real.
fn kernel_with_store(dir: &std::path::Path) -> Kernel {
    let _ = std::fs::remove_dir_all(dir);
    let key = Key::generate(Algorithm::ChaCha20Poly1305).unwrap();
    Kernel::builder()
        .sealer(Sealer::new(Keyring::new(1, key)))
        .store(DirStore::open(dir).unwrap())
        .build()
        .unwrap()
}

fn temp_dir(what: &str) -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("mk-chain-{what}-{}-{n}", std::process::id()))
}

/// The counts a set of replies carried, sorted.
fn counts(replies: Vec<Result<Reply, CallError>>) -> Vec<u64> {
    let mut seen: Vec<u64> = replies
        .into_iter()
        .map(|reply| match reply {
            Ok(reply) => reply.data.parse().unwrap_or_else(|_| panic!("not a count: {reply}")),
            Err(error) => panic!("a call from an independent task failed: {error}"),
        })
        .collect();
    seen.sort_unstable();
    seen
}

/// `tasks` tasks making `calls` calls each to one slow service, through a handle and by name.
fn many_tasks_call_one_slow_service(workers: usize, tasks: usize, calls: usize, service: &'static str) {
    let rt = runtime(workers);
    rt.block_on(async {
        let kernel = Kernel::new();
        let sync = kernel
            .register(SlowSync {
                delay: Duration::from_millis(1),
                ..SlowSync::default()
            })
            .unwrap();
        kernel
            .register_async(SlowAsync {
                delay: Duration::from_millis(1),
                ..SlowAsync::default()
            })
            .await
            .unwrap();
        kernel.start_all_async().await.unwrap();
        let handle: AsyncHandle = match service {
            "slow-sync" => AsyncHandle::from(sync),
            _ => kernel.async_handle(service).unwrap(),
        };
        let mut joins = Vec::new();
        for task in 0..tasks {
            let (kernel, handle) = (kernel.clone(), handle.clone());
            joins.push(tokio::spawn(async move {
                let mut replies = Vec::new();
                for call in 0..calls {
                    // Half the tasks go through the handle, half by name.
                    let reply = match (task + call) % 2 {
                        0 => handle.call(ev(service, "count")).await,
                        _ => kernel.call_async(service, ev(service, "count")).await,
                    };
                    replies.push(reply);
                }
                replies
            }));
        }
        let mut replies = Vec::new();
        for join in joins {
            replies.extend(join.await.unwrap());
        }
        let n = (tasks * calls) as u64;
        assert_eq!(
            counts(replies),
            (1..=n).collect::<Vec<_>>(),
            "each call answered once, in some order"
        );
        kernel.shutdown().await.unwrap();
    });
}

#[test]
fn independent_tasks_on_two_workers_are_never_refused_by_a_slow_sync_service() {
    many_tasks_call_one_slow_service(2, 8, 25, "slow-sync");
}

#[test]
fn independent_tasks_on_four_workers_are_never_refused_by_a_slow_sync_service() {
    many_tasks_call_one_slow_service(4, 16, 12, "slow-sync");
}

#[test]
fn independent_tasks_on_two_workers_are_never_refused_by_a_slow_async_service() {
    many_tasks_call_one_slow_service(2, 8, 25, "slow-async");
}

#[test]
fn independent_tasks_on_four_workers_are_never_refused_by_a_slow_async_service() {
    many_tasks_call_one_slow_service(4, 16, 12, "slow-async");
}

/// Concurrent saves from tasks that share workers: through `checkpoint_async` and through
/// `blocking(..)`, none refused as re-entrant.
fn concurrent_saves(workers: usize) {
    let dir = temp_dir("saves");
    let rt = runtime(workers);
    rt.block_on(async {
        let kernel = kernel_with_store(&dir);
        kernel
            .register(SlowSync {
                delay: Duration::from_millis(1),
                ..SlowSync::default()
            })
            .unwrap();
        kernel.register_async(SlowAsync::default()).await.unwrap();
        kernel.start_all_async().await.unwrap();
        let mut joins = Vec::new();
        for task in 0..12 {
            let kernel = kernel.clone();
            joins.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                for round in 0..10 {
                    let saved = match (task + round) % 3 {
                        0 => kernel.checkpoint_async().await.map(drop).map_err(|e| e.to_string()),
                        1 => kernel
                            .blocking(|k| k.checkpoint_service("slow-sync"))
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string()),
                        // A call between saves keeps the sync service's slot busy.
                        _ => kernel
                            .call_async("slow-sync", ev("slow-sync", "count"))
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string()),
                    };
                    if let Err(error) = saved {
                        failures.push(error);
                    }
                }
                failures
            }));
        }
        let mut failures = Vec::new();
        for join in joins {
            failures.extend(join.await.unwrap());
        }
        assert!(failures.is_empty(), "{} refused: {failures:?}", failures.len());
        kernel.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_saves_from_tasks_on_two_workers_are_never_refused_as_reentrant() {
    concurrent_saves(2);
}

#[test]
fn concurrent_saves_from_tasks_on_four_workers_are_never_refused_as_reentrant() {
    concurrent_saves(4);
}

/// Lifecycle operations from tasks sharing workers, while calls keep the slot busy, are not
/// refused either (each waits its turn for the kernel's lifecycle lock).
#[test]
fn concurrent_lifecycle_operations_from_independent_tasks_wait_their_turn() {
    let rt = runtime(2);
    rt.block_on(async {
        let kernel = Kernel::new();
        kernel
            .register(SlowSync {
                delay: Duration::from_millis(1),
                ..SlowSync::default()
            })
            .unwrap();
        kernel.start_all_async().await.unwrap();
        let mut joins = Vec::new();
        for task in 0..8 {
            let kernel = kernel.clone();
            joins.push(tokio::spawn(async move {
                for _ in 0..5 {
                    match task % 2 {
                        0 => {
                            let started = kernel.blocking(|k| k.start("slow-sync")).await;
                            // Already running is the only refusal a start may meet here.
                            if let Err(error) = started {
                                assert!(
                                    !matches!(
                                        error,
                                        LifecycleError::Reentrant { .. } | LifecycleError::WouldDeadlock { .. }
                                    ),
                                    "{error}"
                                );
                            }
                        }
                        _ => {
                            kernel.call_async("slow-sync", ev("slow-sync", "count")).await.unwrap();
                        }
                    }
                }
            }));
        }
        for join in joins {
            join.await.unwrap();
        }
    });
}

/// What one task of the property test does.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A top-level call to the sync service.
    CallSync,
    /// A top-level call to the async service.
    CallAsync,
    /// The async service calls the sync one: nested, no cycle.
    Nested,
    /// A service calls itself: a real cycle, which must be refused inside the handler.
    SelfSync,
    SelfAsync,
    /// A save of each service.
    Save,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::CallSync),
        Just(Op::CallAsync),
        Just(Op::Nested),
        Just(Op::SelfSync),
        Just(Op::SelfAsync),
        Just(Op::Save),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Many tasks mixing top-level calls, nested calls, self-calls and saves: only the
    /// self-calls (the real cycles) are refused, and every count is answered once.
    #[test]
    fn only_real_cycles_are_refused(
        workers in 2usize..=4,
        plans in proptest::collection::vec(proptest::collection::vec(op(), 1..12), 4..12),
    ) {
        let dir = temp_dir("prop");
        let rt = runtime(workers);
        let (calls_to_sync, sync_counts) = rt.block_on(async {
            let kernel = kernel_with_store(&dir);
            let handled = Arc::new(AtomicU64::new(0));
            kernel
                .register(SlowSync { delay: Duration::from_micros(300), handled: Arc::clone(&handled), ..SlowSync::default() })
                .unwrap();
            kernel
                .register_async(SlowAsync { delay: Duration::from_micros(300), ..SlowAsync::default() })
                .await
                .unwrap();
            kernel.start_all_async().await.unwrap();
            let mut joins = Vec::new();
            for plan in plans.clone() {
                let kernel = kernel.clone();
                joins.push(tokio::spawn(async move {
                    let mut sync_counts = Vec::new();
                    for op in plan {
                        if let Op::Save = op {
                            if let Err(error) = kernel.checkpoint_async().await {
                                panic!("a save was refused: {error}");
                            }
                            continue;
                        }
                        let outcome = match op {
                            Op::CallSync => kernel.call_async("slow-sync", ev("slow-sync", "count")).await,
                            Op::CallAsync => kernel.call_async("slow-async", ev("slow-async", "count")).await,
                            Op::Nested => kernel.call_async("slow-async", ev("slow-async", "nested")).await,
                            Op::SelfSync => kernel.call_async("slow-sync", ev("slow-sync", "self")).await,
                            Op::SelfAsync => kernel.call_async("slow-async", ev("slow-async", "self")).await,
                            Op::Save => unreachable!("handled above"),
                        };
                        let reply = outcome.unwrap_or_else(|error| panic!("{op:?} refused: {error}"));
                        assert_eq!(reply.code, 0, "{op:?}: {reply}");
                        match op {
                            Op::SelfSync | Op::SelfAsync => assert_eq!(&*reply.message, "refused", "{op:?}"),
                            Op::CallSync | Op::Nested => sync_counts.push(reply.data.parse::<u64>().unwrap()),
                            _ => {}
                        }
                    }
                    sync_counts
                }));
            }
            let mut sync_counts = Vec::new();
            for join in joins {
                sync_counts.extend(join.await.unwrap());
            }
            kernel.shutdown().await.unwrap();
            (handled.load(Ordering::SeqCst), sync_counts)
        });
        let _ = std::fs::remove_dir_all(&dir);
        let mut sync_counts = sync_counts;
        sync_counts.sort_unstable();
        let expected: Vec<u64> = (1..=calls_to_sync).collect();
        prop_assert_eq!(sync_counts, expected);
    }
}

/// A synchronous service kept busy; callers that give up while they wait (a timeout drops their
/// future) must not have their requests handled later.
#[test]
fn a_dropped_call_to_a_busy_sync_service_is_withdrawn() {
    let rt = runtime(2);
    rt.block_on(async {
        let kernel = Kernel::new();
        let handled = Arc::new(AtomicU64::new(0));
        let sync = kernel
            .register(SlowSync {
                delay: Duration::from_millis(400),
                handled: Arc::clone(&handled),
                ..SlowSync::default()
            })
            .unwrap();
        kernel.start_all_async().await.unwrap();
        let handle = AsyncHandle::from(sync);
        // One call holds the service for 400 ms; the dropped calls all end well before.
        let busy = tokio::spawn({
            let handle = handle.clone();
            async move { handle.call(ev("slow-sync", "count")).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = std::time::Instant::now();
        let mut gave_up = 0;
        for _ in 0..20 {
            match tokio::time::timeout(Duration::from_millis(1), handle.call(ev("slow-sync", "count"))).await {
                Err(_elapsed) => gave_up += 1,
                Ok(answered) => panic!("a call answered while the service was busy: {answered:?}"),
            }
        }
        assert_eq!(gave_up, 20);
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "the test's timing assumption held"
        );
        busy.await.unwrap().unwrap();
        // Give any request that was not withdrawn time to be handled.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            handled.load(Ordering::SeqCst),
            1,
            "only the call that was not dropped was handled"
        );
        let after = handle.call(ev("slow-sync", "count")).await.unwrap();
        assert_eq!(&*after.data, "2", "the withdrawn calls left no trace in the state");
    });
}

/// The same statement for an async service.
#[test]
fn a_dropped_call_to_a_busy_async_service_is_withdrawn() {
    let rt = runtime(2);
    rt.block_on(async {
        let kernel = Kernel::new();
        let handle = kernel
            .register_async(SlowAsync {
                delay: Duration::from_millis(400),
                ..SlowAsync::default()
            })
            .await
            .unwrap();
        kernel.start_all_async().await.unwrap();
        let busy = tokio::spawn({
            let handle = handle.clone();
            async move { handle.call(ev("slow-async", "count")).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = std::time::Instant::now();
        for _ in 0..20 {
            let waited = tokio::time::timeout(Duration::from_millis(1), handle.call(ev("slow-async", "count"))).await;
            assert!(waited.is_err(), "a call answered while the service was busy");
        }
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "the test's timing assumption held"
        );
        assert_eq!(&*busy.await.unwrap().unwrap().data, "1");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = handle.call(ev("slow-async", "count")).await.unwrap();
        assert_eq!(&*after.data, "2", "the withdrawn calls left no trace in the state");
    });
}
