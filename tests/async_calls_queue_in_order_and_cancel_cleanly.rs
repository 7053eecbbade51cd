//! The async slot's lock (feature `tokio`): the instance taken by the caller and the handler
//! polled inline, the FIFO queue behind it, and every way a call can end early — dropped while
//! queued, dropped after being granted the slot, timed out, dropped mid-handler, panicking after
//! `Pending` — without a request lost, doubled, or the slot left held.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use microkernel::asynchronous::{AsyncContext, AsyncHandle, AsyncHandler};
use microkernel::{CallError, Event, Kernel, Reply, Status};
use tokio::sync::Notify;

/// Records the `content` of each request it handles, in order. Kinds: `hold` (records, then
/// waits for the gate), `pending` (returns `Pending` once, then records), `panic_later`
/// (returns `Pending` once, then panics), anything else records at once.
#[derive(microkernel::Service)]
#[service(name = "order")]
struct Order {
    seen: Arc<Mutex<Vec<String>>>,
    gate: Arc<Notify>,
    holding: Arc<AtomicBool>,
}

impl AsyncHandler for Order {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, ev: Event, _: &AsyncContext) -> Reply {
        match &*ev.kind {
            "hold" => {
                self.seen.lock().unwrap().push(ev.content.to_string());
                self.holding.store(true, Ordering::Release);
                self.gate.notified().await;
                self.holding.store(false, Ordering::Release);
                return Reply::ok("held", ev.content.to_string());
            }
            "pending" => tokio::task::yield_now().await,
            "panic_later" => {
                tokio::task::yield_now().await;
                panic!("asked to, after a Pending");
            }
            _ => {}
        }
        self.seen.lock().unwrap().push(ev.content.to_string());
        Reply::ok("seen", ev.content.to_string())
    }
}

struct Fixture {
    kernel: Kernel,
    order: AsyncHandle,
    seen: Arc<Mutex<Vec<String>>>,
    gate: Arc<Notify>,
    holding: Arc<AtomicBool>,
}

async fn fixture() -> Fixture {
    let kernel = Kernel::new();
    let (seen, gate, holding) = (Arc::default(), Arc::new(Notify::new()), Arc::default());
    let order = kernel
        .register_async(Order {
            seen: Arc::clone(&seen),
            gate: Arc::clone(&gate),
            holding: Arc::clone(&holding),
        })
        .await
        .unwrap();
    kernel.start_all_async().await.unwrap();
    Fixture {
        kernel,
        order,
        seen,
        gate,
        holding,
    }
}

fn ev(kind: &'static str, content: impl Into<String>) -> Event {
    Event::new("order", "test", kind, content.into())
}

impl Fixture {
    /// A spawned call that holds the service until the gate opens; returns once it holds it.
    async fn hold(&self) -> tokio::task::JoinHandle<Result<Reply, CallError>> {
        let holder = tokio::spawn(self.order.call(ev("hold", "holder")));
        while !self.holding.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        holder
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Lets the tasks spawned so far on a single-threaded runtime run until they wait.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Polls `future` once, here, with this task's waker.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx))).await
}

#[tokio::test(flavor = "current_thread")]
async fn waiting_callers_are_served_in_the_order_they_arrived() {
    let f = fixture().await;
    let holder = f.hold().await;
    let mut callers = Vec::new();
    for i in 0..8 {
        callers.push(tokio::spawn(f.order.call(ev("count", i.to_string()))));
        settle().await; // caller i queues before caller i + 1 is spawned
    }
    f.gate.notify_one();
    holder.await.unwrap().unwrap();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    let expected: Vec<String> = std::iter::once("holder".to_owned())
        .chain((0..8).map(|i| i.to_string()))
        .collect();
    assert_eq!(f.seen(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_and_async_callers_share_one_queue_in_arrival_order() {
    let f = fixture().await;
    let holder = f.hold().await;
    // A synchronous caller on a thread of its own queues first (it waits on its own thread);
    // an async caller arrives after it.
    let kernel = f.kernel.clone();
    let sync_caller = std::thread::spawn(move || kernel.call("order", ev("count", "sync")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let async_caller = tokio::spawn(f.order.call(ev("count", "async")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    f.gate.notify_one();
    holder.await.unwrap().unwrap();
    async_caller.await.unwrap().unwrap();
    tokio::task::spawn_blocking(move || sync_caller.join().unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(f.seen(), ["holder", "sync", "async"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_caller_dropped_while_queued_delivers_nothing_and_the_queue_moves_on() {
    let f = fixture().await;
    let holder = f.hold().await;
    let mut dropped = Box::pin(f.order.call(ev("count", "dropped")));
    assert!(
        poll_once(&mut dropped).await.is_pending(),
        "it queues behind the holder"
    );
    let next = tokio::spawn(f.order.call(ev("count", "next")));
    settle().await;
    drop(dropped);
    f.gate.notify_one();
    holder.await.unwrap().unwrap();
    assert_eq!(next.await.unwrap().unwrap().data, "next");
    assert_eq!(f.seen(), ["holder", "next"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_caller_granted_the_slot_and_dropped_before_taking_it_passes_it_on() {
    let f = fixture().await;
    let holder = f.hold().await;
    let mut first = Box::pin(f.order.call(ev("count", "first")));
    assert!(poll_once(&mut first).await.is_pending());
    let second = tokio::spawn(f.order.call(ev("count", "second")));
    settle().await;
    // The holder leaves and hands the slot to `first`, which is never polled again.
    f.gate.notify_one();
    holder.await.unwrap().unwrap();
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the slot was never passed on");
    assert_eq!(second.unwrap().unwrap().data, "second");
    assert_eq!(f.seen(), ["holder", "second"]);
    assert_eq!(f.order.call(ev("count", "after")).await.unwrap().data, "after");
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_timing_out_in_the_queue_delivers_nothing() {
    let f = fixture().await;
    let holder = f.hold().await;
    let late = f
        .order
        .call_timeout(ev("count", "late"), Duration::from_millis(20))
        .await;
    assert!(matches!(late, Err(CallError::Timeout { .. })), "{late:?}");
    f.gate.notify_one();
    holder.await.unwrap().unwrap();
    assert_eq!(f.order.call(ev("count", "next")).await.unwrap().data, "next");
    assert_eq!(f.seen(), ["holder", "next"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_handler_pending_on_its_first_poll_is_finished_once_when_its_caller_goes_away() {
    let f = fixture().await;
    assert_eq!(f.order.call(ev("pending", "awaited")).await.unwrap().data, "awaited");
    // Polled once (the handler returns `Pending` inside that first poll), then dropped: the
    // kernel finishes it on the runtime.
    let mut abandoned = Box::pin(f.order.call(ev("pending", "abandoned")));
    assert!(poll_once(&mut abandoned).await.is_pending());
    drop(abandoned);
    let next = tokio::time::timeout(Duration::from_secs(5), f.order.call(ev("count", "next")))
        .await
        .expect("the slot was never released");
    assert_eq!(next.unwrap().data, "next");
    assert_eq!(f.seen(), ["awaited", "abandoned", "next"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_handler_panicking_after_pending_fails_the_service_and_releases_the_slot() {
    let f = fixture().await;
    let mut panicking = Box::pin(f.order.call(ev("panic_later", "boom")));
    assert!(poll_once(&mut panicking).await.is_pending());
    // Queued behind it: answered, not left hanging, once the service has failed.
    let queued = tokio::spawn(f.order.call(ev("count", "queued")));
    let err = panicking.await.unwrap_err();
    assert!(matches!(err, CallError::Panicked { .. }), "{err}");
    assert_eq!(f.order.status(), Status::Failed);
    let queued = tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .expect("the slot was never released")
        .unwrap();
    assert!(matches!(queued, Err(CallError::NotRunning { .. })), "{queued:?}");
    assert!(f.seen().is_empty());
}

/// Many callers on two workers, a third of their calls cut short at random moments (queued,
/// just granted, mid-handler): no request is handled twice, every answered one was handled,
/// and the service is free at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_under_contention_lose_and_double_nothing() {
    let f = fixture().await;
    let answered = Arc::new(Mutex::new(Vec::new()));
    let callers: Vec<_> = (0..4u64)
        .map(|task| {
            let order = f.order.clone();
            let answered = Arc::clone(&answered);
            tokio::spawn(async move {
                for i in 0..2_000u64 {
                    let id = format!("{task}-{i}");
                    let kind = if i % 2 == 0 { "pending" } else { "count" };
                    let call = order.call(ev(kind, id.clone()));
                    if i % 3 == 0 {
                        let cut = Duration::from_micros((i * 7 + task * 13) % 50);
                        if let Ok(reply) = tokio::time::timeout(cut, call).await {
                            reply.unwrap();
                            answered.lock().unwrap().push(id);
                        }
                    } else {
                        call.await.unwrap();
                        answered.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let last = tokio::time::timeout(Duration::from_secs(5), f.order.call(ev("count", "last")))
        .await
        .expect("the slot was left held");
    assert_eq!(last.unwrap().data, "last");
    let seen = f.seen();
    let handled: HashSet<&String> = seen.iter().collect();
    assert_eq!(handled.len(), seen.len(), "a request was handled twice");
    for id in answered.lock().unwrap().iter() {
        assert!(handled.contains(id), "{id} was answered but not handled");
    }
}
