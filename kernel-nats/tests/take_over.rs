//! Two kernels ("nodes") sharing one NATS server: a service runs on the node holding its claim;
//! when that node dies, the other takes it over from the last saved state, and the dead node's
//! late write is fenced off.

mod server;

use std::time::Duration;

use kernel_core::asynchronous::{AsyncContext, AsyncHandler};
use kernel_core::seal::{Algorithm, Key, Keyring, Sealer};
use kernel_core::{Event, Kernel, LifecycleError, Reply, Status, StoreError};
use kernel_nats::{Claims, NatsStore, NatsStoreOptions, take_over};

const TTL: Duration = Duration::from_secs(2);

#[derive(serde::Serialize, serde::Deserialize, microkernel::Migratable, Default)]
#[migratable(version = 1)]
struct Count {
    n: u64,
}

#[derive(microkernel::Service, Default)]
#[service(name = "counter")]
struct Counter {
    #[state]
    count: Count,
}

impl AsyncHandler for Counter {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        self.count.n += 1;
        Reply::ok("counted", self.count.n.to_string())
    }
}

async fn node(url: &str, name: &str, key: &Key) -> (Kernel, Claims) {
    let client = async_nats::connect(url).await.unwrap();
    let store = NatsStore::open(client.clone(), "states", NatsStoreOptions::default())
        .await
        .unwrap();
    // Each node its own key id: each counts only its own seals against the nonce limit.
    let id = if name == "node-a" { 1 } else { 2 };
    let mut keyring = Keyring::new(id, key.clone());
    keyring.add(3 - id, key.clone()).unwrap();
    let kernel = Kernel::builder()
        .sealer(Sealer::new(keyring))
        .store(store)
        .build()
        .unwrap();
    let claims = Claims::open(client, "owners", name, TTL).await.unwrap();
    (kernel, claims)
}

fn count() -> Event {
    Event::new("counter", "test", "count", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_service_is_taken_over_from_its_last_state_and_its_late_write_fenced() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let key = Key::generate(Algorithm::Aes256Gcm).unwrap();
    let (a, claims_a) = node(&server.url(), "node-a", &key).await;
    let (b, claims_b) = node(&server.url(), "node-b", &key).await;

    let owned_a = take_over(&a, &claims_a, "counter", TTL, |k| async move {
        k.register_async(Counter::default()).await.map(drop)
    })
    .await
    .unwrap();
    for _ in 0..3 {
        a.call_async("counter", count()).await.unwrap();
    }
    a.checkpoint_async().await.unwrap(); // the last state A saved: count 3

    // B cannot take it while A holds it.
    let early = take_over(&b, &claims_b, "counter", Duration::from_millis(300), |k| async move {
        k.register_async(Counter::default()).await.map(drop)
    })
    .await;
    assert!(early.is_err(), "B took a held service");

    // A dies: its claim is no longer refreshed (its kernel lingers, as a paused process would).
    a.call_async("counter", count()).await.unwrap(); // count 4, never saved: the loss window
    drop(owned_a);
    let owned_b = take_over(&b, &claims_b, "counter", TTL * 4, |k| async move {
        k.register_async(Counter::default()).await.map(drop)
    })
    .await
    .unwrap();
    let reply = b.call_async("counter", count()).await.unwrap();
    assert_eq!(reply.data, "4", "B goes on from A's last saved state (3)");

    // A wakes up and writes: fenced off, B's state stays.
    let late = a.blocking(|k| k.checkpoint_service("counter")).await.unwrap_err();
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
    owned_b.release().await.unwrap();
    assert_eq!(b.status("counter"), Some(Status::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stops_a_service_when_its_claim_is_lost() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let key = Key::generate(Algorithm::Aes256Gcm).unwrap();
    let (a, claims_a) = node(&server.url(), "node-a", &key).await;
    let owned = take_over(&a, &claims_a, "counter", TTL, |k| async move {
        k.register_async(Counter::default()).await.map(drop)
    })
    .await
    .unwrap();
    assert_eq!(a.status("counter"), Some(Status::Running));
    // The claim is overwritten (another node, an operator): A stops serving.
    let client = async_nats::connect(server.url()).await.unwrap();
    let kv = async_nats::jetstream::new(client)
        .get_key_value("owners")
        .await
        .unwrap();
    kv.put("counter", "intruder".into()).await.unwrap();
    let deadline = tokio::time::Instant::now() + TTL * 2;
    while a.status("counter") == Some(Status::Running) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A kept serving without its claim"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!owned.is_valid());
}
