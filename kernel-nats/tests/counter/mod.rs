//! The service the node tests move between nodes: a counter in two versions, v2's state
//! upgraded from v1's. Each reply says which version answered and the count after the call.
#![allow(dead_code)]

use std::time::Duration;

use kernel_core::asynchronous::{AsyncContext, AsyncHandler};
use kernel_core::seal::{Algorithm, Key, Keyring, Sealer};
use kernel_core::{Event, Kernel, LifecycleError, Reply};
use kernel_nats::{NatsStore, NatsStoreOptions, Node, NodeOptions};

#[derive(serde::Serialize, serde::Deserialize, microkernel::Migratable, Default)]
#[migratable(version = 1)]
pub struct CountV1 {
    pub n: u64,
}

#[derive(serde::Serialize, serde::Deserialize, microkernel::Migratable, Default)]
#[migratable(version = 2, from = CountV1)]
pub struct CountV2 {
    pub n: u64,
    /// How many times this count was upgraded or moved into v2 (v2 only).
    pub upgraded: u32,
}

impl From<CountV1> for CountV2 {
    fn from(v1: CountV1) -> Self {
        Self { n: v1.n, upgraded: 1 }
    }
}

#[derive(microkernel::Service, Default)]
#[service(name = "counter")]
pub struct CounterV1 {
    #[state]
    count: CountV1,
}

impl AsyncHandler for CounterV1 {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        self.count.n += 1;
        Reply::ok("v1", self.count.n.to_string())
    }
}

#[derive(microkernel::Service, Default)]
#[service(name = "counter")]
pub struct CounterV2 {
    #[state]
    count: CountV2,
}

impl AsyncHandler for CounterV2 {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        self.count.n += 1;
        Reply::ok("v2", self.count.n.to_string())
    }
}

pub async fn register_v1(kernel: Kernel) -> Result<(), LifecycleError> {
    kernel.register_async(CounterV1::default()).await.map(drop)
}

pub async fn register_v2(kernel: Kernel) -> Result<(), LifecycleError> {
    kernel.register_async(CounterV2::default()).await.map(drop)
}

pub fn count() -> Event {
    Event::new("counter", "test", "count", "")
}

/// One shared XChaCha20-Poly1305 key for every node: 192-bit random nonces, so that nodes
/// counting only their own seals cannot together wear the key out (see docs/SECURITY.md).
pub fn shared_key() -> Key {
    Key::generate(Algorithm::XChaCha20Poly1305).unwrap()
}

/// A node: its own kernel sealing with `key`, the shared state bucket, claims living `ttl`.
pub async fn node(url: &str, name: &str, key: &Key, ttl: Duration) -> Node {
    node_with(url, name, key, NodeOptions::default().claim_ttl(ttl)).await
}

pub async fn node_with(url: &str, name: &str, key: &Key, options: NodeOptions) -> Node {
    let client = async_nats::connect(url).await.unwrap();
    let store = NatsStore::open(client.clone(), "states", NatsStoreOptions::default())
        .await
        .unwrap();
    let kernel = Kernel::builder()
        .sealer(Sealer::new(Keyring::new(1, key.clone())))
        .store(store)
        .build()
        .unwrap();
    Node::open(&kernel, client, name, options).await.unwrap()
}
