//! A kernel with other nodes to ask (`KernelBuilder::remote`): what each spelling does with a
//! name no local service has. The async `Event` calls reach the other node; the synchronous ones
//! refuse with `CallError::Remote` (a synchronous call never waits on the network); typed calls
//! refuse in both spellings (other nodes take `Event`s only); pushes reach this node only.
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use microkernel::asynchronous::{CallFuture, RemoteCalls};
use microkernel::{CallError, Event, Kernel, Reply, code};

/// Another node, in memory: answers every event with the name it was sent to.
#[derive(Clone, Default)]
struct OtherNode {
    calls: Arc<AtomicUsize>,
}

impl RemoteCalls for OtherNode {
    fn call(&self, event: Event, _: Option<Duration>) -> CallFuture<Reply> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Ok(Reply::ok("from the other node", event.to.to_string())) })
    }
}

fn far() -> Event {
    Event::new("far", "test", "say", "hi")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_spelling_reaches_a_name_served_elsewhere_or_says_why_not() {
    let other = OtherNode::default();
    let kernel = Kernel::builder().remote(other.clone()).build().unwrap();

    // Async Event calls reach it.
    assert_eq!(&*kernel.call_async("far", far()).await.unwrap().data, "far");
    assert_eq!(&*kernel.send_async(far()).await.data, "far");
    assert_eq!(other.calls.load(Ordering::Relaxed), 2);

    // Synchronous Event calls say it is elsewhere: an error, and 503 as a reply.
    let sync = {
        let kernel = kernel.clone();
        tokio::task::spawn_blocking(move || (kernel.call("far", far()), kernel.send(far())))
            .await
            .unwrap()
    };
    assert!(
        matches!(sync.0, Err(CallError::Remote { ref service, .. }) if service == "far"),
        "{:?}",
        sync.0
    );
    assert_eq!(sync.1.code, code::UNAVAILABLE, "{}", sync.1);

    // Typed calls, in both spellings, refuse the same way.
    let typed_sync = {
        let kernel = kernel.clone();
        tokio::task::spawn_blocking(move || kernel.call_typed::<Event, Reply>("far", far()))
            .await
            .unwrap()
    };
    let typed_async = kernel.call_typed_async::<Event, Reply>("far", far()).await;
    for typed in [typed_sync, typed_async] {
        assert!(
            matches!(typed, Err(CallError::Remote { ref service, .. }) if service == "far"),
            "{typed:?}"
        );
    }

    // Pushes, in both spellings, reach this node's services only.
    assert_eq!(
        kernel.push_async(far(), Duration::from_secs(1)).await.code,
        code::NOT_FOUND
    );
    let pushed = {
        let kernel = kernel.clone();
        tokio::task::spawn_blocking(move || kernel.push(far(), Duration::from_secs(1)))
            .await
            .unwrap()
    };
    assert_eq!(pushed.code, code::NOT_FOUND);
    assert_eq!(
        other.calls.load(Ordering::Relaxed),
        2,
        "only the two async calls went out"
    );
}

/// `kernel` names this kernel: it is never sent to other nodes, in any spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernels_own_name_never_goes_to_other_nodes() {
    let other = OtherNode::default();
    let kernel = Kernel::builder().remote(other.clone()).build().unwrap();
    let to_kernel = || Event::new(microkernel::KERNEL, "test", "ping", "");
    assert!(matches!(
        kernel.call_async(microkernel::KERNEL, to_kernel()).await,
        Err(CallError::NotFound { .. })
    ));
    assert_eq!(kernel.send_async(to_kernel()).await.code, code::NOT_FOUND);
    let sync = {
        let kernel = kernel.clone();
        tokio::task::spawn_blocking(move || (kernel.call(microkernel::KERNEL, to_kernel()), kernel.send(to_kernel())))
            .await
            .unwrap()
    };
    assert!(matches!(sync.0, Err(CallError::NotFound { .. })), "{:?}", sync.0);
    assert_eq!(sync.1.code, code::NOT_FOUND);
    // A push to it is answered by the kernel itself, as without other nodes.
    assert_eq!(
        kernel.push_async(to_kernel(), Duration::from_secs(1)).await.code,
        code::OK
    );
    assert_eq!(other.calls.load(Ordering::Relaxed), 0);
}
