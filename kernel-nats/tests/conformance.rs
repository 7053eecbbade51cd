//! The NATS store passes the store conformance suite (`kernel_core::store::conformance`),
//! against a real `nats-server`, plus what only a shared server can show: two stores over one
//! bucket fence each other's writes.

mod server;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use async_nats::jetstream;
use bytes::Bytes;
use kernel_core::store::conformance::{self, Fixture};
use kernel_core::store::{StateStore, StoreError, block_on};
use kernel_nats::{NatsStore, NatsStoreOptions};

/// One server and one runtime for the tests running at once; the last test to let go of them
/// stops the server (a static would never be dropped, and would leave the server running past
/// the test binary).
struct Shared {
    _server: server::NatsServer,
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
}

fn shared() -> Option<Arc<Shared>> {
    static SHARED: Mutex<Weak<Shared>> = Mutex::new(Weak::new());
    let mut current = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(shared) = current.upgrade() {
        return Some(shared);
    }
    let server = server::NatsServer::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let client = runtime
        .block_on(async_nats::connect(server.url()))
        .expect("a connection to the test server");
    let shared = Arc::new(Shared {
        _server: server,
        runtime,
        client,
    });
    *current = Arc::downgrade(&shared);
    Some(shared)
}

/// A fresh bucket per check; `inline` bytes at most in an entry, larger states in the object
/// store beside it.
struct BucketFixture {
    shared: Arc<Shared>,
    bucket: String,
    inline: u64,
    raw: async_nats::jetstream::kv::Store,
}

impl BucketFixture {
    const LIMIT: u64 = 64 << 10;

    fn new(shared: Arc<Shared>) -> Self {
        Self::with_inline(shared, BucketFixture::LIMIT)
    }

    /// Every state over 16 bytes goes through the object store.
    fn objects(shared: Arc<Shared>) -> Self {
        Self::with_inline(shared, 16)
    }

    fn with_inline(shared: Arc<Shared>, inline: u64) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let bucket = format!("conformance{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let _entered = shared.runtime.enter();
        let store = shared
            .runtime
            .block_on(NatsStore::open(shared.client.clone(), &bucket, options(inline)))
            .expect("the bucket is created");
        drop(store);
        let raw = shared
            .runtime
            .block_on(jetstream::new(shared.client.clone()).get_key_value(&bucket))
            .expect("the bucket");
        Self {
            shared,
            bucket,
            inline,
            raw,
        }
    }

    /// How many objects the bucket's object store holds.
    fn object_count(&self) -> usize {
        use futures_util::StreamExt;
        self.shared.runtime.block_on(async {
            let objects = jetstream::new(self.shared.client.clone())
                .get_object_store(format!("{}_objects", self.bucket))
                .await
                .expect("the object store");
            objects.list().await.expect("a listing").count().await
        })
    }
}

fn options(inline: u64) -> NatsStoreOptions {
    NatsStoreOptions::default()
        .max_state_bytes(BucketFixture::LIMIT)
        .inline_bytes(inline)
}

impl Fixture for BucketFixture {
    type Store = NatsStore;

    fn open(&self) -> Result<NatsStore, StoreError> {
        self.shared.runtime.block_on(NatsStore::open(
            self.shared.client.clone(),
            &self.bucket,
            options(self.inline),
        ))
    }

    /// The stored state: the entry, or the object it points at.
    fn raw(&self, service: &str) -> Option<Vec<u8>> {
        let value = self
            .shared
            .runtime
            .block_on(self.raw.get(service))
            .expect("a raw read")?;
        let Some(name) = value.strip_prefix(b"MKOBJ1:") else {
            return Some(value.to_vec());
        };
        let name = std::str::from_utf8(name).expect("an object name").to_owned();
        self.shared.runtime.block_on(async {
            use tokio::io::AsyncReadExt;
            let objects = jetstream::new(self.shared.client.clone())
                .get_object_store(format!("{}_objects", self.bucket))
                .await
                .expect("the object store");
            let mut object = objects.get(&name).await.expect("the object pointed at");
            let mut bytes = Vec::new();
            object.read_to_end(&mut bytes).await.expect("the object's bytes");
            Some(bytes)
        })
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
    conformance::run_all(|| BucketFixture::new(Arc::clone(&shared)));
}

#[test]
fn the_nats_store_passes_the_conformance_suite_through_its_object_store() {
    let Some(shared) = shared() else { return };
    conformance::run_all(|| BucketFixture::objects(Arc::clone(&shared)));
}

#[test]
fn large_states_leave_no_object_behind() {
    let Some(shared) = shared() else { return };
    let fixture = BucketFixture::objects(shared);
    let a = fixture.open().unwrap();
    let big = |generation: u64| conformance::object("svc", generation, &vec![7u8; 4096]);
    block_on(a.save("svc", big(1))).unwrap();
    block_on(a.save("svc", big(2))).unwrap();
    assert_eq!(
        fixture.object_count(),
        1,
        "the object replaced by a newer one is removed"
    );
    // B takes over; A's compare-and-set then fails, and its object is removed again.
    let b = fixture.open().unwrap();
    assert_eq!(block_on(b.load("svc")).unwrap().unwrap().object.generation(), 2);
    let written_by_b = big(3);
    block_on(b.save("svc", written_by_b.clone())).unwrap();
    let err = block_on(a.save("svc", big(4))).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(fixture.object_count(), 1, "only B's state is left");
    assert!(fixture.raw("svc") == Some(written_by_b.into_bytes()), "B's state stays");
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
