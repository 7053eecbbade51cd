//! Write-through saves that fail: a call that was handled but whose save then failed is answered
//! as handled (`calls::code::HANDLED_NOT_SAVED`), never as "not handled", and its answer is
//! recorded under its call id. A caller that sends a call again only when it was not handled
//! then applies every effect exactly once, and a retry with the same call id gets the same
//! answer without handling it again.
//!
//! The saves fail through a state store of the test's own: the node's `NatsStore`, wrapped so
//! that it refuses chosen saves (a `StoreError::Backend`, as a NATS error would be).

mod counter;
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use counter::{count, register_v1, shared_key};
use kernel_core::seal::{Key, Keyring, SealedObject, Sealer};
use kernel_core::state::{Schema, fingerprint};
use kernel_core::store::{Location, StateStore, StoreError, StoreFuture, Stored};
use kernel_core::{Event, Kernel, Reply, code};
use kernel_nats::calls::code::HANDLED_NOT_SAVED;
use kernel_nats::{NatsStore, NatsStoreOptions, Node, NodeOptions, calls};

const TTL: Duration = Duration::from_secs(3);
const CALLERS: usize = 8;
const CALLS: usize = 400;
/// While failing, one save in this many fails.
const FAIL_EVERY: u64 = 4;

/// A `NatsStore` that refuses saves on demand: every [`FAIL_EVERY`]th while `failing`, and the
/// next `fail_next` ones.
#[derive(Debug)]
struct FlakyStore {
    inner: NatsStore,
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    failing: std::sync::atomic::AtomicBool,
    fail_next: AtomicU64,
    saves: AtomicU64,
    refused: AtomicU64,
}

impl Faults {
    fn refuse_this_save(&self) -> bool {
        let n = self.saves.fetch_add(1, Ordering::Relaxed) + 1;
        let next = self
            .fail_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
            .is_ok();
        let refuse = next || (self.failing.load(Ordering::Relaxed) && n.is_multiple_of(FAIL_EVERY));
        if refuse {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        refuse
    }
}

impl StateStore for FlakyStore {
    fn check_name(&self, service: &str) -> Result<(), StoreError> {
        self.inner.check_name(service)
    }

    fn location(&self, service: &str) -> Location {
        self.inner.location(service)
    }

    fn save<'a>(&'a self, service: &'a str, object: SealedObject) -> StoreFuture<'a, Location> {
        if self.faults.refuse_this_save() {
            let object = self.location(service);
            return Box::pin(async move {
                Err(StoreError::Backend {
                    object,
                    source: "injected fault: the server did not take the write".into(),
                })
            });
        }
        self.inner.save(service, object)
    }

    fn load<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Stored>> {
        self.inner.load(service)
    }

    fn set_aside<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Location>> {
        self.inner.set_aside(service)
    }

    fn known_generation(&self, service: &str) -> u64 {
        self.inner.known_generation(service)
    }
}

/// A write-through node whose saves fail when `faults` says so.
async fn flaky_node(url: &str, name: &str, key: &Key, faults: &Arc<Faults>) -> Node {
    let client = async_nats::connect(url).await.unwrap();
    let inner = NatsStore::open(client.clone(), "states", NatsStoreOptions::default())
        .await
        .unwrap();
    let store = FlakyStore {
        inner,
        faults: Arc::clone(faults),
    };
    let kernel = Kernel::builder()
        .sealer(Sealer::new(Keyring::new(1, key.clone())))
        .store(store)
        .build()
        .unwrap();
    let options = NodeOptions::default().claim_ttl(TTL).write_through(true);
    Node::open(&kernel, client, name, options).await.unwrap()
}

/// Whether a reply says the call was handled (so that sending it again would apply it twice).
fn handled(reply: &Reply) -> bool {
    reply.code == code::OK || reply.code == HANDLED_NOT_SAVED
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_whose_save_fails_is_answered_as_handled_and_never_applied_twice() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let key = shared_key();
    let faults = Arc::new(Faults::default());
    let node = flaky_node(&server.url(), "node-a", &key, &faults).await;
    let owned = node.take_over("counter", TTL, register_v1).await.unwrap();
    faults.failing.store(true, Ordering::Relaxed);

    // Callers that send a call again (a new call) only when its answer says it was not handled.
    let issued = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let client = async_nats::connect(server.url()).await.unwrap();
        let issued = Arc::clone(&issued);
        callers.push(tokio::spawn(async move {
            let (mut seen, mut not_saved, mut resent) = (Vec::new(), 0, 0);
            while issued.fetch_add(1, Ordering::Relaxed) < CALLS {
                loop {
                    let reply = calls::call(&client, count(), Duration::from_secs(20)).await;
                    let reply = reply.unwrap_or_else(|e| panic!("a call failed: {e}"));
                    if handled(&reply) {
                        not_saved += usize::from(reply.code == HANDLED_NOT_SAVED);
                        seen.push(reply.data.parse::<usize>().unwrap());
                        break;
                    }
                    resent += 1;
                    assert!(resent < 100, "answered as not handled again and again: {reply}");
                }
            }
            (seen, not_saved, resent)
        }));
    }
    let (mut counts, mut not_saved, mut resent) = (Vec::new(), 0, 0);
    for caller in callers {
        let (seen, n, r) = caller.await.unwrap();
        counts.extend(seen);
        not_saved += n;
        resent += r;
    }
    faults.failing.store(false, Ordering::Relaxed);
    let refused = faults.refused.load(Ordering::Relaxed);
    eprintln!(
        "{CALLS} calls: {refused} saves refused, {not_saved} answered as handled but not saved, {resent} sent again"
    );
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=CALLS).collect::<Vec<_>>(),
        "every call applied exactly once ({resent} sent again)"
    );
    assert_eq!(resent, 0, "a handled call was answered as not handled");
    assert!(
        not_saved > 0,
        "no call was answered as handled but not saved: the test proves nothing"
    );

    // The effects of the calls whose saves failed were kept in memory and saved since: a
    // handover saves the state, and the next owner goes on from it.
    owned.hand_over().await.unwrap();
    let b = counter::node_with(
        &server.url(),
        "node-b",
        &key,
        NodeOptions::default().claim_ttl(TTL).write_through(true),
    )
    .await;
    let _owned = b.take_over("counter", TTL, register_v1).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let reply = calls::call(&client, count(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (reply.code, reply.data.parse::<usize>().unwrap()),
        (code::OK, CALLS + 1)
    );
}

/// Sends `count()` as one attempt of call `id`, the way `calls::call` does.
async fn attempt(client: &async_nats::Client, id: &str) -> Reply {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut headers = HeaderMap::new();
    let shape = |fp: u64| format!("{fp:016x}");
    headers.insert("Mk-Shape", shape(fingerprint(<Event as Schema>::SCHEMA, 1).0).as_str());
    headers.insert("Mk-Deadline", (now + 10_000).to_string().as_str());
    headers.insert("Mk-Call", id);
    let payload = postcard::to_allocvec(&count()).unwrap();
    let message = client
        .request_with_headers(calls::subject("counter"), headers, payload.into())
        .await
        .unwrap();
    postcard::from_bytes(&message.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_call_whose_save_failed_gets_the_same_answer_and_is_not_handled_again() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let faults = Arc::new(Faults::default());
    let node = flaky_node(&server.url(), "node-a", &shared_key(), &faults).await;
    let _owned = node.take_over("counter", TTL, register_v1).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();

    assert_eq!(attempt(&client, "call-1").await, Reply::ok("v1", "1"));
    faults.fail_next.store(1, Ordering::Relaxed); // call-2's save fails
    let first = attempt(&client, "call-2").await;
    assert_eq!(first, Reply::new(HANDLED_NOT_SAVED, "v1", "2"), "{first}");
    assert_eq!(faults.refused.load(Ordering::Relaxed), 1);
    // The same call again (its reply lost, say): the recorded answer, not a second count.
    for _ in 0..3 {
        assert_eq!(attempt(&client, "call-2").await, first);
    }
    assert_eq!(attempt(&client, "call-3").await, Reply::ok("v1", "3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_save_is_fenced_off_is_answered_as_not_handled() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let key = shared_key();
    let faults = Arc::new(Faults::default());
    let a = flaky_node(&server.url(), "node-a", &key, &faults).await;
    let _owned = a.take_over("counter", TTL, register_v1).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    assert_eq!(attempt(&client, "call-1").await, Reply::ok("v1", "1"));

    // Another kernel restores the state and writes it, as a next owner's fencing write does
    // (no claim: A still believes it owns the service).
    let other = counter::node_with(&server.url(), "node-b", &key, NodeOptions::default().claim_ttl(TTL)).await;
    register_v1(other.kernel().clone()).await.unwrap();
    other
        .kernel()
        .blocking(|k| k.checkpoint_service("counter").map(drop))
        .await
        .unwrap();

    // A handles the next call on its copy, which it can no longer save: the effect is lost,
    // and the answer says it did not take effect.
    let fenced = attempt(&client, "call-2").await;
    assert_eq!(
        (fenced.code, &*fenced.message),
        (code::UNAVAILABLE, "Not handled: the service moved to another node"),
        "{fenced}"
    );
    assert_eq!(
        faults.refused.load(Ordering::Relaxed),
        0,
        "refused by the server, not the test"
    );
}
