//! Two kernels ("nodes") sharing one NATS server: a service runs on the node holding its claim;
//! when that node dies, the other takes it over from the last saved state, and the dead node's
//! late write is fenced off.

mod counter;
mod server;

use std::time::Duration;

use counter::{count, node, register_v1, shared_key};
use kernel_core::{LifecycleError, Status, StoreError};
use kernel_nats::calls;

const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_service_is_taken_over_from_its_last_state_and_its_late_write_fenced() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let key = shared_key();
    let a = node(&server.url(), "node-a", &key, TTL).await;
    let b = node(&server.url(), "node-b", &key, TTL).await;

    let owned_a = a.take_over("counter", TTL, register_v1).await.unwrap();
    for _ in 0..3 {
        a.kernel().call_async("counter", count()).await.unwrap();
    }
    a.kernel().checkpoint_async().await.unwrap(); // the last state A saved: count 3

    // B cannot take it while A holds it.
    let early = b.take_over("counter", Duration::from_millis(300), register_v1).await;
    assert!(early.is_err(), "B took a held service");

    // A dies: its claim is no longer refreshed (its kernel lingers, as a paused process would).
    a.kernel().call_async("counter", count()).await.unwrap(); // count 4, never saved: the loss window
    drop(owned_a);
    let owned_b = b.take_over("counter", TTL * 4, register_v1).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let reply = calls::call(&client, count(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.data, "4", "B goes on from A's last saved state (3)");

    // A wakes up and writes: fenced off, B's state stays.
    let late = a
        .kernel()
        .blocking(|k| k.checkpoint_service("counter"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            late,
            LifecycleError::Save {
                source: StoreError::Conflict { .. },
                ..
            }
        ),
        "{late}"
    );
    owned_b.hand_over().await.unwrap();
    assert_eq!(b.kernel().status("counter"), None, "handed over: unregistered on B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stops_a_service_when_its_claim_is_lost() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let a = node(&server.url(), "node-a", &shared_key(), TTL).await;
    let owned = a.take_over("counter", TTL, register_v1).await.unwrap();
    assert_eq!(a.kernel().status("counter"), Some(Status::Running));
    // The claim is overwritten (another node, an operator): A stops serving.
    let client = async_nats::connect(server.url()).await.unwrap();
    let kv = async_nats::jetstream::new(client)
        .get_key_value("mk-owners")
        .await
        .unwrap();
    kv.put("counter", "intruder".into()).await.unwrap();
    let deadline = tokio::time::Instant::now() + TTL * 2;
    while a.kernel().status("counter") == Some(Status::Running) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A kept serving without its claim"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!owned.is_valid());
}
