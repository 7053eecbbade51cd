//! Claims on services among nodes, against a real `nats-server`: one owner at a time, a claim
//! that is not refreshed expires and another node takes the service over, and the new owner's
//! fencing write shuts the old owner's store out.

mod server;

use std::time::Duration;

use kernel_core::store::conformance::object;
use kernel_core::store::{StateStore, StoreError};
use kernel_nats::{ClaimError, Claims, NatsStore, NatsStoreOptions};

const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_at_a_time_and_a_dead_owner_is_taken_over_and_fenced() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let client = async_nats::connect(server.url()).await.unwrap();
    let a = Claims::open(client.clone(), "owners", "node-a", TTL).await.unwrap();
    let b = Claims::open(client.clone(), "owners", "node-b", TTL).await.unwrap();

    // A claims; B is told who holds it.
    let claim = a.claim("echo").await.unwrap();
    assert!(claim.is_valid());
    match b.claim("echo").await {
        Err(ClaimError::Held { owner, .. }) => assert_eq!(owner, "node-a"),
        other => panic!("B must not claim a held service: {:?}", other.map(|_| ())),
    }
    // A's claim outlives its time to live while it is refreshed.
    tokio::time::sleep(TTL + TTL / 2).await;
    assert!(claim.is_valid(), "a refreshed claim stays valid");
    assert!(matches!(b.claim("echo").await, Err(ClaimError::Held { .. })));

    // A saves the service's state, then dies (its refreshes stop; nothing is released).
    let store_a = NatsStore::open(client.clone(), "states", NatsStoreOptions::default())
        .await
        .unwrap();
    store_a.save("echo", object("echo", 1, b"from a")).await.unwrap();
    drop(claim);

    // After the claim expires, B takes over: claims, loads, and fences with a write.
    let deadline = tokio::time::Instant::now() + TTL * 4;
    let b_claim = loop {
        match b.claim("echo").await {
            Ok(claim) => break claim,
            Err(ClaimError::Held { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(other) => panic!("B could not take over: {other}"),
        }
    };
    assert_eq!(b.owner("echo").await.unwrap().as_deref(), Some("node-b"));
    let store_b = NatsStore::open(client.clone(), "states", NatsStoreOptions::default())
        .await
        .unwrap();
    let state = store_b.load("echo").await.unwrap().expect("A's state");
    assert_eq!(state.object.generation(), 1);
    store_b.save("echo", object("echo", 2, b"from b")).await.unwrap();
    // A, come back to life, cannot write over B's state.
    let err = store_a.save("echo", object("echo", 3, b"stale a")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    b_claim.release().await.unwrap();
    assert_eq!(a.owner("echo").await.unwrap(), None, "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_cannot_refresh_gives_the_claim_up_before_it_could_expire() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let client = async_nats::connect(server.url()).await.unwrap();
    let a = Claims::open(client.clone(), "owners", "node-a", TTL).await.unwrap();
    let claim = a.claim("echo").await.unwrap();
    // Someone overwrites the claim (an operator, a split brain): A's next refresh is refused.
    let kv = async_nats::jetstream::new(client.clone())
        .get_key_value("owners")
        .await
        .unwrap();
    kv.put("echo", "intruder".into()).await.unwrap();
    tokio::time::timeout(TTL, claim.lost())
        .await
        .expect("the loss was not noticed in time");
    assert!(!claim.is_valid());
    // And a server that goes away: the claim is given up before its time to live.
    let b = Claims::open(client.clone(), "owners", "node-b", TTL).await.unwrap();
    let held = b.claim("other").await.unwrap();
    let started = std::time::Instant::now();
    drop(server);
    tokio::time::timeout(TTL * 2, held.lost())
        .await
        .expect("a claim outlived its server");
    assert!(
        started.elapsed() < TTL,
        "given up {:?} after the server went, past the TTL",
        started.elapsed()
    );
    assert!(!held.is_valid());
}
