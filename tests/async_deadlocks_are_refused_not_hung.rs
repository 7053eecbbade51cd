//! Regressions found by an adversarial review of the async layer: each test failed (a panic,
//! a hang, a lost dependency, a stale supervisor) before its fix.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use microkernel::asynchronous::{AsyncContext, AsyncHandler};
use microkernel::{Event, Handler, Kernel, Reply};

fn ev(to: &str, kind: &'static str) -> Event {
    Event::new(to.to_owned(), "test", kind, "")
}

#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
struct Echo;
impl AsyncHandler for Echo {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        Reply::ok("echo", "")
    }
}

// ---- 1. OFF_WORKERS flag never reset: a blocking-pool thread later becomes a worker ----
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_blocking_pool_thread_that_becomes_a_worker_carries_no_kernel_mark() {
    let kernel = Kernel::new();
    kernel.register_async(Echo).await.unwrap();
    kernel.start_all_async().await.unwrap(); // runs on a blocking thread X, flags it for good
    for i in 0..6 {
        let k = kernel.clone();
        // a sync call to an async service from a task: block_in_place hands the worker core
        // to an (idle) blocking-pool thread, likely X
        let r = tokio::spawn(async move {
            let t = format!("{:?}", std::thread::current().id());
            (t, k.call("echo", ev("echo", "x")))
        })
        .await;
        match r {
            Ok((_, res)) => assert!(res.is_ok(), "round {i}: {res:?}"),
            Err(e) => panic!("round {i}: the task panicked: {e}"),
        }
    }
}

// ---- 2. register_async on a current_thread runtime loses the dependencies ----
#[derive(microkernel::Service, Default)]
#[service(name = "needs", deps = ["missing-db"])]
struct Needs;
impl AsyncHandler for Needs {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        Reply::ok("needs", "")
    }
}

#[tokio::test(flavor = "current_thread")]
async fn dependencies_of_async_services_hold_on_a_single_threaded_runtime() {
    let kernel = Kernel::new();
    kernel.register_async(Needs).await.unwrap();
    eprintln!("start_order = {:?}", kernel.start_order());
    let started = kernel.start_all_async().await;
    eprintln!("start_all = {started:?}; status = {:?}", kernel.status("needs"));
    assert!(started.is_err(), "a service whose dependency is not registered started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_of_async_services_hold_on_a_multi_thread_runtime() {
    let kernel = Kernel::new();
    kernel.register_async(Needs).await.unwrap();
    let started = kernel.start_all_async().await;
    eprintln!("start_all = {started:?}");
    assert!(started.is_err());
}

// ---- 4. a cycle through a busy sync service is not detected: both sides hang ----
static PHASE: AtomicU64 = AtomicU64::new(0);
#[derive(microkernel::Service, Default)]
#[service(name = "a")]
struct A;
impl AsyncHandler for A {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, ev: Event, ctx: &AsyncContext) -> Reply {
        if ev.kind == "go" {
            return match ctx.call("s", Event::new("s", "a", "count", "")).await {
                Ok(r) => r,
                Err(e) => e.to_reply(),
            };
        }
        Reply::ok("a", "")
    }
}
#[derive(microkernel::Service, Default)]
#[service(name = "s")]
struct S;
impl Handler for S {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, ev: Event, ctx: &microkernel::Context<'_>) -> Reply {
        if ev.kind == "slow" {
            PHASE.store(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            return ctx
                .call("a", Event::new("a", "s", "count", ""))
                .unwrap_or_else(|e| e.to_reply());
        }
        Reply::ok("s", "")
    }
}

#[test]
fn a_cycle_through_a_busy_sync_service_is_refused_not_hung() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let kernel = rt.block_on(async {
        let kernel = Kernel::new();
        kernel.register_async(A).await.unwrap();
        kernel.register(S).unwrap();
        kernel.start_all_async().await.unwrap();
        kernel
    });
    let k = kernel.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = k.call("s", Event::new("s", "y", "slow", ""));
        let _ = tx.send(format!("{:?}", r.map(|r| r.to_string())));
    });
    while PHASE.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let k = kernel.clone();
    let from_async = rt.block_on(async move {
        tokio::time::timeout(
            Duration::from_secs(3),
            k.call_async("a", Event::new("a", "t", "go", "")),
        )
        .await
    });
    let from_sync = rx.recv_timeout(Duration::from_secs(1));
    eprintln!("async side: {from_async:?}\nsync side: {from_sync:?}");
    let hung = from_async.is_err() && from_sync.is_err();
    rt.shutdown_background();
    std::mem::forget(kernel);
    assert!(!hung, "neither side got WouldDeadlock: a deadlock, undetected");
}

// ---- 5. a handler that shuts the kernel down (its own service included) hangs ----
#[derive(microkernel::Service, Default)]
#[service(name = "admin")]
struct Admin;
impl AsyncHandler for Admin {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, ctx: &AsyncContext) -> Reply {
        let kernel = ctx.kernel().unwrap();
        match kernel.stop_async("admin").await {
            Ok(()) => Reply::ok("admin", "stopped"),
            Err(e) => Reply::ok("admin", e.to_string()),
        }
    }
}

#[test]
fn a_handler_stopping_its_own_service_gets_an_error_not_a_hang() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(async {
        let kernel = Kernel::new();
        kernel.register_async(Admin).await.unwrap();
        kernel.start_all_async().await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(3), kernel.call_async("admin", ev("admin", "x"))).await;
        std::mem::forget(kernel);
        r
    });
    eprintln!("{out:?}");
    rt.shutdown_background();
    assert!(out.is_ok(), "the handler never returned");
}

// ---- 6. replace_supervised_async cancelled: the replacement fails in the background and the
// prepared successor (factory of the failed version) is left for the next plain replacement ----
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
    assert_eq!(kernel.call_async("svc", ev("svc", "x")).await.unwrap().message, "v1");
    // A plain, unsupervised replacement.
    kernel.replace_async(Svc3).await.unwrap();
    let r = kernel.call_async("svc", ev("svc", "panic")).await;
    eprintln!("panic call: {r:?}");
    let restarted = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(2)))
        .await
        .unwrap();
    eprintln!("restarted notice: {restarted:?}; status {:?}", kernel.status("svc"));
    if restarted.is_ok() {
        eprintln!(
            "now answering: {:?}",
            kernel.call_async("svc", ev("svc", "x")).await.map(|r| r.to_string())
        );
    }
    assert!(
        restarted.is_err(),
        "v3 was never supervised, yet it was restarted (by the successor prepared for the failed v2)"
    );
}
