//! The NATS store passes the store conformance suite (`kernel_core::store::conformance`),
//! against a real `nats-server`, plus what only a shared server can show: two stores over one
//! bucket fence each other's writes.

mod server;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use async_nats::jetstream;
use bytes::Bytes;
use kernel_core::store::conformance::{self, Fixture};
use kernel_core::store::{StateStore, StoreError, block_on};
use kernel_nats::{NatsStore, NatsStoreOptions};

/// One server and one runtime for the whole test binary.
struct Shared {
    /// Kept for its lifetime: the server stops when the test binary ends.
    _server: server::NatsServer,
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
}

fn shared() -> Option<&'static Shared> {
    static SHARED: OnceLock<Option<Shared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let server = server::NatsServer::start()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            let client = runtime
                .block_on(async_nats::connect(server.url()))
                .expect("a connection to the test server");
            Some(Shared {
                _server: server,
                runtime,
                client,
            })
        })
        .as_ref()
}

/// A fresh bucket per check.
struct BucketFixture {
    shared: &'static Shared,
    bucket: String,
    raw: async_nats::jetstream::kv::Store,
}

impl BucketFixture {
    const LIMIT: u64 = 64 << 10;

    fn new(shared: &'static Shared) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let bucket = format!("conformance{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let _entered = shared.runtime.enter();
        let store = shared
            .runtime
            .block_on(NatsStore::open(shared.client.clone(), &bucket, options()))
            .expect("the bucket is created");
        drop(store);
        let raw = shared
            .runtime
            .block_on(jetstream::new(shared.client.clone()).get_key_value(&bucket))
            .expect("the bucket");
        Self { shared, bucket, raw }
    }
}

fn options() -> NatsStoreOptions {
    NatsStoreOptions::default().max_state_bytes(BucketFixture::LIMIT)
}

impl Fixture for BucketFixture {
    type Store = NatsStore;

    fn open(&self) -> Result<NatsStore, StoreError> {
        self.shared
            .runtime
            .block_on(NatsStore::open(self.shared.client.clone(), &self.bucket, options()))
    }

    fn raw(&self, service: &str) -> Option<Vec<u8>> {
        let value = self.shared.runtime.block_on(self.raw.get(service)).expect("a raw read");
        value.map(|v| v.to_vec())
    }

    fn put_raw(&self, service: &str, bytes: &[u8]) {
        self.shared
            .runtime
            .block_on(self.raw.put(service, Bytes::copy_from_slice(bytes)))
            .expect("a raw write");
    }

    fn max_object_bytes(&self) -> u64 {
        Self::LIMIT
    }
}

#[test]
fn the_nats_store_passes_the_conformance_suite() {
    let Some(shared) = shared() else { return };
    conformance::run_all(|| BucketFixture::new(shared));
}

#[test]
fn two_stores_over_one_bucket_fence_each_other() {
    let Some(shared) = shared() else { return };
    let fixture = BucketFixture::new(shared);
    let a = Arc::new(fixture.open().unwrap());
    block_on(a.save("svc", conformance::object("svc", 1, b"a1"))).unwrap();
    // B reads the state (taking it over), then writes: A's next write is fenced off.
    let b = fixture.open().unwrap();
    assert!(block_on(b.load("svc")).unwrap().is_some());
    let written_by_b = conformance::object("svc", 2, b"b2");
    block_on(b.save("svc", written_by_b.clone())).unwrap();
    let err = block_on(a.save("svc", conformance::object("svc", 3, b"a3"))).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("`svc` in NATS KV bucket"), "{err}");
    assert_eq!(fixture.raw("svc"), Some(written_by_b.into_bytes()), "B's state stays");
}
