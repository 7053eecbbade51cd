//! The store: one key per service in a JetStream key-value bucket, written by compare-and-set.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use kernel_core::seal::SealedObject;
use kernel_core::store::{Location, StateStore, StoreError, StoreFuture, Stored};
use tokio::runtime::Handle as Runtime;

use crate::buckets::{self, BucketConfig};
use crate::names::check_key;
use crate::objects;

/// How a [`NatsStore`] opens its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct NatsStoreOptions {
    max_state_bytes: u64,
    inline_bytes: u64,
    replicas: usize,
}

impl Default for NatsStoreOptions {
    fn default() -> Self {
        Self {
            max_state_bytes: 256 << 20,
            // The server's default `max_payload` is 1 MiB, headers included.
            inline_bytes: 900_000,
            replicas: 1,
        }
    }
}

impl NatsStoreOptions {
    /// The largest sealed state written or read, in bytes (default 256 MiB).
    pub fn max_state_bytes(mut self, limit: u64) -> Self {
        self.max_state_bytes = limit;
        self
    }

    /// The largest sealed state kept in the key-value entry itself (default 900,000 bytes:
    /// under the server's default `max_payload` of 1 MiB with the message's headers). A larger
    /// one goes to the bucket's object store (`<bucket>_objects`), the entry pointing at it.
    pub fn inline_bytes(mut self, limit: u64) -> Self {
        self.inline_bytes = limit;
        self
    }

    /// How many servers of a cluster keep the bucket (default 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }
}

/// Sealed states in a NATS JetStream key-value bucket: see the [crate docs](crate).
///
/// What this store has seen of each service — the bucket revision it last read or wrote, and
/// the newest generation — is what its writes are fenced by: a save is an `update` expecting
/// that revision (or a `create`, for a key it has never seen), so a write by anyone else in
/// between makes it fail with [`StoreError::Conflict`] and leaves the other's state in place.
pub struct NatsStore {
    inner: Arc<Inner>,
    runtime: Runtime,
}

struct Inner {
    kv: kv::Store,
    objects: object_store::ObjectStore,
    /// For object names no other writer can pick (its inbox names are unique).
    client: async_nats::Client,
    bucket: String,
    options: NatsStoreOptions,
    /// Serializes this store's operations: a compare-and-set and the record of what it saw
    /// happen as one step.
    serial: tokio::sync::Mutex<()>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Per service, the bucket revision last read or written.
    revisions: HashMap<String, u64>,
    /// Per service, the newest generation written or loaded.
    newest: HashMap<String, u64>,
    /// Per service, the object the entry last read or written points at (a large state).
    objects: HashMap<String, String>,
}

impl NatsStore {
    /// Opens the bucket `bucket` (creating it if missing) over `client`, on the current tokio
    /// runtime (its futures run there).
    pub async fn open(client: async_nats::Client, bucket: &str, options: NatsStoreOptions) -> Result<Self, StoreError> {
        let runtime = Runtime::try_current().map_err(|e| StoreError::Backend {
            object: Location::key(describe(bucket), ""),
            source: format!("open the store from within a tokio runtime: {e}").into(),
        })?;
        let context = jetstream::new(client.clone());
        let config = BucketConfig {
            max_age: Duration::ZERO,
            replicas: options.replicas,
        };
        let kv = buckets::open_or_create(&context, bucket, config)
            .await
            .map_err(|source| StoreError::Backend {
                object: Location::key(describe(bucket), ""),
                source,
            })?;
        let objects = objects::open(&context, bucket, options.replicas)
            .await
            .map_err(|source| StoreError::Backend {
                object: Location::key(describe(bucket), ""),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                kv,
                objects,
                client,
                bucket: bucket.to_owned(),
                options,
                serial: tokio::sync::Mutex::new(()),
                seen: Mutex::default(),
            }),
            runtime,
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// Runs `work` on the store's runtime; the returned future can be polled anywhere.
    fn spawn<'a, T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        let task = self.runtime.spawn(work);
        let bucket = self.inner.bucket.clone();
        Box::pin(async move {
            task.await.unwrap_or_else(|e| {
                Err(StoreError::Backend {
                    object: Location::key(describe(&bucket), ""),
                    source: format!("the store's task ended: {e}").into(),
                })
            })
        })
    }
}

/// How errors name the bucket.
fn describe(bucket: &str) -> String {
    format!("NATS KV bucket `{bucket}`")
}

impl Inner {
    fn location(&self, service: &str) -> Location {
        Location::key(describe(&self.bucket), service)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn backend(&self, service: &str, source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Backend {
            object: self.location(service),
            source: source.into(),
        }
    }

    async fn save(&self, service: &str, object: SealedObject) -> Result<Location, StoreError> {
        check_key(service)?;
        let at = self.location(service);
        let limit = self.options.max_state_bytes;
        if object.len() as u64 > limit {
            let size = object.len() as u64;
            return Err(StoreError::TooLarge {
                object: at,
                size,
                limit,
            });
        }
        let _serial = self.serial.lock().await;
        let generation = object.generation();
        let (known, revision) = {
            let seen = self.seen();
            (seen.newest.get(service).copied(), seen.revisions.get(service).copied())
        };
        if let Some(newest) = known
            && generation <= newest
        {
            return Err(StoreError::Stale {
                object: at,
                generation,
                newest,
            });
        }
        let bytes = object.into_bytes();
        let large = bytes.len() as u64 > self.options.inline_bytes;
        let (value, object_name) = if large {
            let name = format!(
                "{service}/{generation}/{}",
                self.client.new_inbox().trim_start_matches("_INBOX.")
            );
            objects::put(&self.objects, &name, &bytes, &at).await?;
            (objects::pointer(&name), Some(name))
        } else {
            (Bytes::from(bytes), None)
        };
        let written = match revision {
            Some(revision) => self.kv.update(service, value.clone(), revision).await.map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => StoreError::Conflict {
                    object: at.clone(),
                    reason: format!(
                        "it changed since this store last read or wrote it (revision {revision}): another owner wrote it"
                    ),
                },
                _ => self.backend(service, e),
            }),
            None => self.kv.create(service, value.clone()).await.map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => StoreError::Conflict {
                    object: at.clone(),
                    reason: "it exists and this store has not read it: load it first (or another owner holds it)".into(),
                },
                _ => self.backend(service, e),
            }),
        };
        let revision = match written {
            Ok(revision) => revision,
            Err(error) => match self.landed(service, &value).await {
                // The write landed though its answer was lost (a timeout), or a retried create
                // met the write itself: it succeeded.
                Some(revision) => revision,
                None => {
                    // Nobody points at the object just written (or nobody could be shown to,
                    // and then it stays): remove it only when the entry is known to be another.
                    if let Some(name) = object_name
                        && !matches!(error, StoreError::Backend { .. })
                    {
                        objects::remove(&self.objects, &name).await;
                    }
                    return Err(error);
                }
            },
        };
        let replaced = {
            let mut seen = self.seen();
            seen.revisions.insert(service.to_owned(), revision);
            seen.newest.insert(service.to_owned(), generation);
            match object_name {
                Some(name) => seen.objects.insert(service.to_owned(), name),
                None => seen.objects.remove(service),
            }
        };
        // The entry no longer points at the previous object.
        if let Some(old) = replaced {
            objects::remove(&self.objects, &old).await;
        }
        Ok(at)
    }

    /// The revision of `service`'s entry if it holds exactly `value` (a write reported as
    /// failed that landed all the same), read again from the server.
    async fn landed(&self, service: &str, value: &Bytes) -> Option<u64> {
        match self.kv.entry(service).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put && entry.value == *value => Some(entry.revision),
            _ => None,
        }
    }

    async fn load(&self, service: &str) -> Result<Option<Stored>, StoreError> {
        check_key(service)?;
        let _serial = self.serial.lock().await;
        let entry = self.kv.entry(service).await.map_err(|e| self.backend(service, e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let location = self.location(service);
        let limit = self.options.max_state_bytes;
        if entry.value.len() as u64 > limit {
            return Err(StoreError::TooLarge {
                object: location,
                size: entry.value.len() as u64,
                limit,
            });
        }
        let pointed = objects::pointed(&entry.value).map(str::to_owned);
        let bytes = match &pointed {
            Some(name) => objects::get(&self.objects, name, limit, &location).await?,
            None => entry.value.to_vec(),
        };
        let object = SealedObject::from_bytes(bytes).map_err(|source| StoreError::Seal {
            object: location.clone(),
            source,
        })?;
        let mut seen = self.seen();
        let known = seen.newest.get(service).copied().unwrap_or(0);
        if object.generation() < known {
            return Err(StoreError::Replayed {
                object: location,
                found: object.generation(),
                newest: known,
            });
        }
        seen.revisions.insert(service.to_owned(), entry.revision);
        seen.newest.insert(service.to_owned(), object.generation());
        match pointed {
            Some(name) => seen.objects.insert(service.to_owned(), name),
            None => seen.objects.remove(service),
        };
        Ok(Some(Stored::new(location, object)))
    }

    async fn set_aside(&self, service: &str) -> Result<Option<Location>, StoreError> {
        check_key(service)?;
        let _serial = self.serial.lock().await;
        let entry = self.kv.entry(service).await.map_err(|e| self.backend(service, e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let aside = format!("{service}.rejected.{}", entry.revision);
        self.kv
            .put(&aside, entry.value)
            .await
            .map_err(|e| self.backend(&aside, e))?;
        // Only the value that was copied is removed: a write since is kept.
        self.kv
            .delete_expect_revision(service, Some(entry.revision))
            .await
            .map_err(|e| self.backend(service, e))?;
        {
            // The set-aside copy now owns the object the entry pointed at, if any.
            let mut seen = self.seen();
            seen.revisions.remove(service);
            seen.objects.remove(service);
        }
        Ok(Some(self.location(&aside)))
    }
}

impl StateStore for NatsStore {
    fn check_name(&self, service: &str) -> Result<(), StoreError> {
        check_key(service)
    }

    fn location(&self, service: &str) -> Location {
        self.inner.location(service)
    }

    fn save<'a>(&'a self, service: &'a str, object: SealedObject) -> StoreFuture<'a, Location> {
        let (inner, service) = (Arc::clone(&self.inner), service.to_owned());
        self.spawn(async move { inner.save(&service, object).await })
    }

    fn load<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Stored>> {
        let (inner, service) = (Arc::clone(&self.inner), service.to_owned());
        self.spawn(async move { inner.load(&service).await })
    }

    fn set_aside<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Location>> {
        let (inner, service) = (Arc::clone(&self.inner), service.to_owned());
        self.spawn(async move { inner.set_aside(&service).await })
    }

    fn known_generation(&self, service: &str) -> u64 {
        self.inner.seen().newest.get(service).copied().unwrap_or(0)
    }
}

impl fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsStore").field("bucket", &self.inner.bucket).finish()
    }
}
