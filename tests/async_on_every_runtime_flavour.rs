//! The kernel's rules hold whatever runtime drives async services (feature `tokio`): on a
//! current-thread or a multi-thread runtime an async service's dependencies are enforced, and a
//! blocking-pool thread that later becomes a worker carries no stale kernel mark. Each failed
//! before its fix.

mod common;

use common::asynchronous::AsyncEcho;
use microkernel::asynchronous::{AsyncContext, AsyncHandler};
use microkernel::{Event, Kernel, Reply};

fn ev(to: &str, kind: &'static str) -> Event {
    Event::new(to.to_owned(), "test", kind, "")
}

// Once: OFF_WORKERS flag never reset: a blocking-pool thread later becomes a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_blocking_pool_thread_that_becomes_a_worker_carries_no_kernel_mark() {
    let kernel = Kernel::new();
    kernel.register_async(AsyncEcho::default()).await.unwrap();
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

// Once: register_async on a current_thread runtime loses the dependencies.
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
