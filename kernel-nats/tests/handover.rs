//! A service handed from node to node (v1 → v2, then back and forth) while four callers call it
//! through NATS: every call is answered, none is lost, none is handled twice — the counts the
//! callers see are exactly 1..=N, each once.

mod counter;
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use counter::{count, node, register_v1, register_v2, shared_key};
use kernel_nats::calls;

const TTL: Duration = Duration::from_secs(3);
const CALLERS: usize = 4;
const CALLS: usize = 600;
const HANDOVERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handovers_under_concurrent_callers_answer_every_call_exactly_once() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let key = shared_key();
    let nodes = [
        node(&server.url(), "node-a", &key, TTL).await,
        node(&server.url(), "node-b", &key, TTL).await,
    ];
    let mut owned = nodes[0].take_over("counter", TTL, register_v1).await.unwrap();

    let issued = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let client = async_nats::connect(server.url()).await.unwrap();
        let issued = Arc::clone(&issued);
        callers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while issued.fetch_add(1, Ordering::Relaxed) < CALLS {
                let reply = calls::call(&client, count(), Duration::from_secs(20)).await;
                let reply = reply.unwrap_or_else(|e| panic!("a call failed: {e}"));
                assert_eq!(reply.code, 0, "{reply}");
                seen.push((reply.message.to_string(), reply.data.parse::<usize>().unwrap()));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            seen
        }));
    }

    // Hand over while the callers call: A (v1) → B (v2) → A (v2) → ...
    for i in 0..HANDOVERS {
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            issued.load(Ordering::Relaxed) < CALLS,
            "handover {i} began after the last call was issued: the test proves nothing; raise CALLS"
        );
        let next = nodes[(i + 1) % 2].clone();
        let taking = tokio::spawn(async move { next.take_over("counter", TTL * 3, register_v2).await });
        owned.hand_over().await.unwrap();
        owned = taking.await.unwrap().unwrap();
    }

    let mut counts = Vec::new();
    let mut versions = std::collections::BTreeSet::new();
    for caller in callers {
        for (version, n) in caller.await.unwrap() {
            versions.insert(version);
            counts.push(n);
        }
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=CALLS).collect::<Vec<_>>(),
        "every call answered exactly once"
    );
    assert!(
        versions.contains("v1") && versions.contains("v2"),
        "both versions answered: {versions:?}"
    );
    owned.hand_over().await.unwrap();
}

/// A service whose "slow" calls take a while.
#[derive(microkernel::Service, Default)]
#[service(name = "slow")]
struct Slow {
    #[state]
    count: counter::CountV1,
}

impl kernel_core::asynchronous::AsyncHandler for Slow {
    type Request = kernel_core::Event;
    type Response = kernel_core::Reply;
    async fn handle(
        &mut self,
        event: kernel_core::Event,
        _: &kernel_core::asynchronous::AsyncContext,
    ) -> kernel_core::Reply {
        if &*event.kind == "slow" {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        self.count.n += 1;
        kernel_core::Reply::ok("slow", self.count.n.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_that_cannot_drain_in_time_fails_and_the_service_goes_on_here() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let options = kernel_nats::NodeOptions::default()
        .claim_ttl(TTL)
        .drain_timeout(Duration::from_millis(200));
    let a = counter::node_with(&server.url(), "node-a", &shared_key(), options).await;
    let register = |k: kernel_core::Kernel| async move { k.register_async(Slow::default()).await.map(drop) };
    let owned = a.take_over("slow", TTL, register).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let event = |kind: &'static str| kernel_core::Event::new("slow", "test", kind, "");
    let slow = tokio::spawn({
        let client = client.clone();
        async move { calls::call(&client, event("slow"), Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await; // the slow call is being handled

    let failed = owned.hand_over().await.unwrap_err();
    assert!(
        matches!(failed.error(), kernel_nats::TakeOverError::Drain { .. }),
        "{failed}"
    );
    assert!(failed.to_string().contains("still served here"), "{failed}");
    let owned = failed.into_owned().expect("served here again");
    assert!(owned.is_valid());
    assert_eq!(slow.await.unwrap().unwrap().data, "1", "the slow call was answered");
    let quick = calls::call(&client, event("quick"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(quick.data, "2", "the same node goes on serving, with its state");
    owned.hand_over().await.unwrap();
    assert_eq!(a.kernel().status("slow"), None);
}
