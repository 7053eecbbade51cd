//! Async services on tokio (feature `tokio`): calls, ordering, deadlock detection along the
//! chain of calls, cancellation, replacement with state, panics, persistence.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use microkernel::asynchronous::{AsyncContext, AsyncHandler};
use microkernel::{CallError, Event, Handler, Kernel, Migratable, Reply, Status, Step};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 1)]
struct TallyV1 {
    count: u32,
}

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 2, from = TallyV1)]
struct TallyV2 {
    count: u64,
}

impl From<TallyV1> for TallyV2 {
    fn from(v1: TallyV1) -> Self {
        Self { count: v1.count.into() }
    }
}

/// Version 1: counts, and can be told to wait for a signal, call someone, or panic.
#[derive(microkernel::Service, Default)]
#[service(name = "tally")]
struct TallyV1Service {
    #[state]
    tally: TallyV1,
    gate: Option<Arc<Notify>>,
}

impl AsyncHandler for TallyV1Service {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, ev: Event, ctx: &AsyncContext) -> Reply {
        match &*ev.kind {
            "wait" => {
                if let Some(gate) = &self.gate {
                    gate.notified().await;
                }
            }
            "self" => {
                tokio::task::yield_now().await;
                return match ctx.call("tally", Event::new("tally", "tally", "count", "")).await {
                    Err(e) => e.to_reply(),
                    Ok(reply) => reply,
                };
            }
            "call" => {
                let to = ev.content.to_string();
                return ctx
                    .call(&to, Event::new(to.clone(), "tally", "count", ""))
                    .await
                    .unwrap_or_else(|e| e.to_reply());
            }
            "panic" => panic!("asked to"),
            _ => {}
        }
        self.tally.count += 1;
        Reply::ok("v1", self.tally.count.to_string())
    }
}

/// Version 2: the state widened.
#[derive(microkernel::Service, Default)]
#[service(name = "tally")]
struct TallyV2Service {
    #[state]
    tally: TallyV2,
}

impl AsyncHandler for TallyV2Service {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        self.tally.count += 1;
        Reply::ok("v2", self.tally.count.to_string())
    }
}

/// A synchronous service, to call across the two worlds.
#[derive(microkernel::Service, Default)]
#[service(name = "plain")]
struct Plain {
    calls: u64,
}

impl Handler for Plain {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, ev: Event, ctx: &microkernel::Context<'_>) -> Reply {
        if ev.kind == "call" {
            let to = ev.content.to_string();
            return ctx
                .call(&to, Event::new(to.clone(), "plain", "count", ""))
                .unwrap_or_else(|e| e.to_reply());
        }
        self.calls += 1;
        Reply::ok("plain", self.calls.to_string())
    }
}

fn ev(kind: &'static str) -> Event {
    Event::new("tally", "test", kind, "")
}

async fn running(services: impl FnOnce(&Kernel)) -> Kernel {
    let kernel = Kernel::new();
    services(&kernel);
    kernel
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_service_answers_awaited_calls_and_sync_callers() {
    let kernel = running(|_| {}).await;
    let tally = kernel.register_async(TallyV1Service::default()).await.unwrap();
    kernel.register(Plain::default()).unwrap();
    kernel.start_all_async().await.unwrap();
    assert_eq!(tally.call(ev("count")).await.unwrap().data, "1");
    assert_eq!(kernel.call_async("tally", ev("count")).await.unwrap().data, "2");
    // A synchronous service called from async code, and async from synchronous code.
    assert_eq!(kernel.call_async("plain", ev("count")).await.unwrap().data, "1");
    let from_thread = {
        let kernel = kernel.clone();
        std::thread::spawn(move || kernel.call("tally", ev("count")).unwrap().data.to_string())
    };
    assert_eq!(from_thread.join().unwrap(), "3");
    // A synchronous handler calling an async service (block_in_place on this worker).
    let via_plain = kernel
        .call_async("plain", Event::new("plain", "t", "call", "tally"))
        .await
        .unwrap();
    assert_eq!(via_plain.data, "4");
    kernel.shutdown().await.unwrap();
    assert_eq!(kernel.status("tally"), Some(Status::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_are_each_served_exactly_once() {
    let kernel = Kernel::new();
    let tally = kernel.register_async(TallyV1Service::default()).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let tally = tally.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    tally.call(ev("count")).await.unwrap();
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    assert_eq!(tally.call(ev("count")).await.unwrap().data, "3201");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_calling_its_own_service_after_moving_threads_is_refused() {
    let kernel = Kernel::new();
    let tally = kernel.register_async(TallyV1Service::default()).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let reply = tally.call(ev("self")).await.unwrap();
    assert_eq!(reply.code, microkernel::code::LOOP, "{reply}");
}

#[tokio::test(flavor = "current_thread")]
async fn two_tasks_on_one_thread_wait_for_each_other_without_a_deadlock_error() {
    let kernel = Kernel::new();
    let gate = Arc::new(Notify::new());
    let service = TallyV1Service {
        gate: Some(Arc::clone(&gate)),
        ..TallyV1Service::default()
    };
    let tally = kernel.register_async(service).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let first = tokio::spawn({
        let tally = tally.clone();
        async move { tally.call(ev("wait")).await }
    });
    tokio::task::yield_now().await; // the first task now holds the service, awaiting the gate
    let second = tokio::spawn({
        let tally = tally.clone();
        async move { tally.call(ev("count")).await }
    });
    tokio::task::yield_now().await;
    gate.notify_one();
    assert_eq!(first.await.unwrap().unwrap().data, "1");
    assert_eq!(second.await.unwrap().unwrap().data, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_across_two_chains_is_refused_and_nothing_hangs() {
    #[derive(microkernel::Service)]
    #[service(name = "a")]
    struct A;
    #[derive(microkernel::Service)]
    #[service(name = "b")]
    struct B;
    async fn ping(ctx: &AsyncContext, to: &'static str) -> Reply {
        tokio::time::sleep(Duration::from_millis(30)).await;
        ctx.call(to, Event::new(to, "x", "leaf", ""))
            .await
            .unwrap_or_else(|e| e.to_reply())
    }
    impl AsyncHandler for A {
        type Request = Event;
        type Response = Reply;
        async fn handle(&mut self, ev: Event, ctx: &AsyncContext) -> Reply {
            if ev.kind == "leaf" {
                Reply::ok("a", "")
            } else {
                ping(ctx, "b").await
            }
        }
    }
    impl AsyncHandler for B {
        type Request = Event;
        type Response = Reply;
        async fn handle(&mut self, ev: Event, ctx: &AsyncContext) -> Reply {
            if ev.kind == "leaf" {
                Reply::ok("b", "")
            } else {
                ping(ctx, "a").await
            }
        }
    }
    let kernel = Kernel::new();
    kernel.register_async(A).await.unwrap();
    kernel.register_async(B).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let (k1, k2) = (kernel.clone(), kernel.clone());
    let both = async move {
        tokio::join!(
            k1.call_async("a", Event::new("a", "t", "go", "")),
            k2.call_async("b", Event::new("b", "t", "go", ""))
        )
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("the cycle hung");
    let codes = [a.unwrap().code, b.unwrap().code];
    assert!(codes.contains(&microkernel::code::LOOP), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_dropped_mid_handler_does_not_lose_the_request() {
    let kernel = Kernel::new();
    let gate = Arc::new(Notify::new());
    let service = TallyV1Service {
        gate: Some(Arc::clone(&gate)),
        ..TallyV1Service::default()
    };
    let tally = kernel.register_async(service).await.unwrap();
    kernel.start_all_async().await.unwrap();
    // The handler counts after the gate opens; the caller gives up before that.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        tally.call(Event::new("tally", "t", "wait", "")),
    )
    .await;
    assert!(gave_up.is_err());
    gate.notify_one();
    // The abandoned request still completes, exactly once (it counts after the gate), and the
    // service is free again.
    let next = tokio::time::timeout(Duration::from_secs(5), tally.call(ev("count")))
        .await
        .expect("the slot was never released");
    assert_eq!(next.unwrap().data, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replacement_under_load_loses_no_call_and_moves_the_state() {
    let kernel = Kernel::new();
    let tally = kernel.register_async(TallyV1Service::default()).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (tally, answered) = (tally.clone(), Arc::clone(&answered));
            tokio::spawn(async move {
                for _ in 0..300 {
                    let reply = tally.call(ev("count")).await.unwrap();
                    assert!(reply.message == "v1" || reply.message == "v2", "{reply}");
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let replaced = kernel.replace_async(TallyV2Service::default()).await.unwrap();
    assert!(matches!(replaced, microkernel::Replaced::Swapped { .. }));
    for caller in callers {
        caller.await.unwrap();
    }
    assert_eq!(answered.load(Ordering::Relaxed), 2400);
    let last = tally.call(ev("count")).await.unwrap();
    assert_eq!((&*last.message, &*last.data), ("v2", "2401"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_outlasts_the_drain_timeout_fails_the_replacement_and_the_old_version_serves() {
    let kernel = Kernel::builder()
        .drain_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let gate = Arc::new(Notify::new());
    let service = TallyV1Service {
        gate: Some(Arc::clone(&gate)),
        ..TallyV1Service::default()
    };
    let tally = kernel.register_async(service).await.unwrap();
    kernel.start_all_async().await.unwrap();
    tally.call(ev("count")).await.unwrap();
    let stuck = tokio::spawn({
        let tally = tally.clone();
        async move { tally.call(ev("wait")).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = kernel.replace_async(TallyV2Service::default()).await.unwrap_err();
    assert_eq!(err.step(), Step::Enter, "{err}");
    assert!(err.to_string().contains("drain timeout"), "{err}");
    gate.notify_one();
    assert_eq!(stuck.await.unwrap().unwrap().data, "2");
    let reply = tally.call(ev("count")).await.unwrap();
    assert_eq!((&*reply.message, &*reply.data), ("v1", "3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_async_handler_fails_its_service_only() {
    let kernel = Kernel::new();
    let tally = kernel.register_async(TallyV1Service::default()).await.unwrap();
    kernel.register(Plain::default()).unwrap();
    kernel.start_all_async().await.unwrap();
    let err = tally.call(ev("panic")).await.unwrap_err();
    assert!(matches!(err, CallError::Panicked { .. }), "{err}");
    assert_eq!(tally.status(), Status::Failed);
    assert!(matches!(
        tally.call(ev("count")).await,
        Err(CallError::NotRunning { .. })
    ));
    assert_eq!(kernel.call_async("plain", ev("count")).await.unwrap().data, "1");
}

#[tokio::test(flavor = "current_thread")]
async fn a_sync_call_to_an_async_service_on_a_single_threaded_runtime_is_refused_not_hung() {
    let kernel = Kernel::new();
    kernel.register_async(TallyV1Service::default()).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let err = kernel.call("tally", ev("count")).unwrap_err();
    assert!(matches!(err, CallError::WouldBlockRuntime { .. }), "{err}");
    assert_eq!(kernel.call_async("tally", ev("count")).await.unwrap().data, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_service_state_is_saved_on_shutdown_and_restored_on_registration() {
    use microkernel::DirStore;
    use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
    let dir = std::env::temp_dir().join(format!("mk-async-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = Key::generate(Algorithm::ChaCha20Poly1305).unwrap();
    let sealer = Sealer::new(Keyring::new(1, key));
    {
        let kernel = Kernel::builder()
            .sealer(sealer.clone())
            .store(DirStore::open(&dir).unwrap())
            .build()
            .unwrap();
        let tally = kernel.register_async(TallyV1Service::default()).await.unwrap();
        kernel.start_all_async().await.unwrap();
        for _ in 0..5 {
            tally.call(ev("count")).await.unwrap();
        }
        kernel.shutdown().await.unwrap();
    }
    let kernel = Kernel::builder()
        .sealer(sealer)
        .store(DirStore::open(&dir).unwrap())
        .build()
        .unwrap();
    let tally = kernel.register_async(TallyV2Service::default()).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let reply = tally.call(ev("count")).await.unwrap();
    assert_eq!((&*reply.message, &*reply.data), ("v2", "6"));
    kernel.shutdown().await.unwrap();
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_kernel_on_a_runtime_thread_never_blocks_and_stops_async_services() {
    #[derive(microkernel::Service)]
    #[service(name = "stopper")]
    struct Stopper(Arc<Notify>);
    impl AsyncHandler for Stopper {
        type Request = Event;
        type Response = Reply;
        async fn stop(&mut self, _: &AsyncContext) -> Result<(), microkernel::BoxError> {
            self.0.notify_one();
            Ok(())
        }
        async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
            Reply::ok("", "")
        }
    }
    let stopped = Arc::new(Notify::new());
    let kernel = Kernel::new();
    kernel.register_async(Stopper(Arc::clone(&stopped))).await.unwrap();
    kernel.start_all_async().await.unwrap();
    // On a single-threaded runtime's own thread: a blocking stop would hang this test.
    drop(kernel);
    tokio::time::timeout(Duration::from_secs(5), stopped.notified())
        .await
        .expect("the async stop hook never ran after the drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervised_async_service_restarts_with_its_last_good_state() {
    use microkernel::{Notice, RestartPolicy};
    let (restarted_tx, restarted_rx) = std::sync::mpsc::channel::<String>();
    let restarted_tx = std::sync::Mutex::new(restarted_tx);
    let kernel = Kernel::builder()
        .observer(move |notice| {
            if let Notice::Restarted { service } = notice {
                let _ = restarted_tx.lock().unwrap().send(service.to_string());
            }
        })
        .build()
        .unwrap();
    let tally = kernel.register_async(TallyV1Service::default()).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: 3,
        within: Duration::from_secs(10),
        backoff: Duration::from_millis(1),
    };
    kernel.supervise_async(&tally, policy, TallyV1Service::default).unwrap();
    tally.call(ev("count")).await.unwrap();
    assert!(matches!(tally.call(ev("panic")).await, Err(CallError::Panicked { .. })));
    let service = tokio::task::spawn_blocking(move || restarted_rx.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("no restart");
    assert_eq!(service, "tally");
    assert_eq!(tally.status(), Status::Running);
    // The state it had when supervision began (count 0) is what it restarted from.
    assert_eq!(tally.call(ev("count")).await.unwrap().data, "1");
    // A supervised replacement keeps supervising the new version.
    kernel
        .replace_supervised_async(TallyV2Service::default(), policy, TallyV2Service::default)
        .await
        .unwrap();
    assert_eq!(tally.call(ev("count")).await.unwrap().message, "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_async_routes_by_the_event_and_checkpoint_service_async_saves_one() {
    use microkernel::DirStore;
    use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
    let dir = std::env::temp_dir().join(format!("mk-async-send-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let kernel = Kernel::builder()
        .sealer(Sealer::new(Keyring::new(
            1,
            Key::generate(Algorithm::Aes256Gcm).unwrap(),
        )))
        .store(DirStore::open(&dir).unwrap())
        .build()
        .unwrap();
    kernel.register_async(TallyV1Service::default()).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let reply = kernel.send_async(Event::new("tally", "t", "count", "")).await;
    assert_eq!((reply.code, &*reply.data), (0, "1"));
    let missing = kernel.send_async(Event::new("nobody", "t", "count", "")).await;
    assert_eq!(missing.code, microkernel::code::NOT_FOUND);
    let saved = kernel.checkpoint_service_async("tally").await.unwrap();
    assert!(saved.to_string().contains("tally"), "{saved}");
    assert!(matches!(
        kernel.checkpoint_service_async("nobody").await,
        Err(microkernel::LifecycleError::NotFound { .. })
    ));
    kernel.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

// Once: replace_supervised_async cancelled: the replacement fails in the background and the
// prepared successor (factory of the failed version) was left for the next plain replacement.
#[derive(microkernel::Service, Default)]
#[service(name = "svc")]
struct Svc1;
impl AsyncHandler for Svc1 {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        Reply::ok("v1", "")
    }
}
static V2_STARTS: AtomicU64 = AtomicU64::new(0);
#[derive(microkernel::Service, Default)]
#[service(name = "svc")]
struct Svc2Bad;
impl AsyncHandler for Svc2Bad {
    type Request = Event;
    type Response = Reply;
    async fn start(&mut self, _: &AsyncContext) -> Result<(), microkernel::BoxError> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if V2_STARTS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("v2 refuses to start".into());
        }
        Ok(())
    }
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        Reply::ok("v2", "")
    }
}
#[derive(microkernel::Service, Default)]
#[service(name = "svc")]
struct Svc3;
impl AsyncHandler for Svc3 {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, ev: Event, _: &AsyncContext) -> Reply {
        if ev.kind == "panic" {
            panic!("v3 panics");
        }
        Reply::ok("v3", "")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_supervised_replacement_leaves_no_stale_successor() {
    use microkernel::{Notice, RestartPolicy};
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx = std::sync::Mutex::new(tx);
    let kernel = Kernel::builder()
        .observer(move |notice| {
            if let Notice::Restarted { service } = notice {
                let _ = tx.lock().unwrap().send(service.to_string());
            }
        })
        .build()
        .unwrap();
    kernel.register_async(Svc1).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: 3,
        within: Duration::from_secs(10),
        backoff: Duration::from_millis(1),
    };
    // Give up on the supervised replacement after 20 ms (a request timeout, say).
    let gave_up = tokio::time::timeout(
        Duration::from_millis(20),
        kernel.replace_supervised_async(Svc2Bad, policy, || Svc2Bad),
    )
    .await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_millis(400)).await; // the replacement failed meanwhile
    assert_eq!(
        kernel
            .call_async("svc", Event::new("svc", "test", "x", ""))
            .await
            .unwrap()
            .message,
        "v1"
    );
    // A plain, unsupervised replacement.
    kernel.replace_async(Svc3).await.unwrap();
    let r = kernel.call_async("svc", Event::new("svc", "test", "panic", "")).await;
    eprintln!("panic call: {r:?}");
    let restarted = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(2)))
        .await
        .unwrap();
    eprintln!("restarted notice: {restarted:?}; status {:?}", kernel.status("svc"));
    if restarted.is_ok() {
        eprintln!(
            "now answering: {:?}",
            kernel
                .call_async("svc", Event::new("svc", "test", "x", ""))
                .await
                .map(|r| r.to_string())
        );
    }
    assert!(
        restarted.is_err(),
        "v3 was never supervised, yet it was restarted (by the successor prepared for the failed v2)"
    );
}
