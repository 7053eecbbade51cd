//! Async services never hang on a wait that cannot end (feature `tokio`): a cycle of calls
//! through a busy sync service is refused with `WouldDeadlock` on one side, and a handler that
//! stops its own service gets an error. Each failed (a hang) before its fix.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use microkernel::asynchronous::{AsyncContext, AsyncHandler};
use microkernel::{Event, Handler, Kernel, Reply};

fn ev(to: &str, kind: &'static str) -> Event {
    Event::new(to.to_owned(), "test", kind, "")
}

// Once: a cycle through a busy sync service is not detected: both sides hang.
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

// Once: a handler that shuts the kernel down (its own service included) hangs.
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
