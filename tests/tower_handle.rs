//! `AsyncHandle` as a `tower::Service` (feature `tower`), under tower's own layers.

mod common;

use std::time::Duration;

use common::asynchronous::AsyncEcho;

use microkernel::{Event, Kernel};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_serves_under_timeout_concurrency_limit_and_buffer_layers() {
    let kernel = Kernel::new();
    let handle = kernel.register_async(AsyncEcho::default()).await.unwrap();
    kernel.start_all_async().await.unwrap();
    let layered = ServiceBuilder::new()
        .buffer(16)
        .concurrency_limit(4)
        .timeout(Duration::from_secs(5))
        .service(handle.clone());
    let mut replies = Vec::new();
    for i in 0..10 {
        let reply = layered
            .clone()
            .oneshot(Event::new("echo", "t", "k", format!("hi {i}")))
            .await
            .unwrap();
        replies.push(reply.data.to_string());
    }
    assert_eq!(replies.last().map(String::as_str), Some("hi 9 #10"));
    // Plain `tower::Service` use: ready, then call.
    let mut direct = handle;
    let reply = direct
        .ready()
        .await
        .unwrap()
        .call(Event::new("echo", "t", "k", "direct"))
        .await
        .unwrap();
    assert_eq!(reply.data, "direct #11");
    kernel.shutdown().await.unwrap();
}
