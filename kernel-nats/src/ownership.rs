//! Which node runs a service: claims in a key-value bucket whose entries expire.
//!
//! A node claims a service by creating its key (create-if-absent: a second claimant fails with
//! [`ClaimError::Held`], naming the owner), and keeps the claim by rewriting the key, a
//! compare-and-set on the revision it last wrote, every third of the time to live. The bucket's
//! `max_age` is the time to live (servers before 2.11 ignore per-key TTLs): a claim its owner
//! stopped refreshing ages out, and another node may claim the service. An owner that cannot
//! refresh in time (its server unreachable, its writes refused) considers the claim lost a
//! margin *before* it could expire, by its own monotonic clock, so that it stops serving before
//! anyone else may start: [`Claim::is_valid`] turns false and [`Claim::lost`] resolves.
//!
//! A new owner's first act should be a fencing write of the service's state through the
//! [`NatsStore`](crate::NatsStore) (load, then save): the old owner's store then holds a stale
//! revision, and any write it still attempts fails with `StoreError::Conflict`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tokio::sync::watch;

use crate::buckets::{self, BucketConfig};
use crate::names::check_key;

/// A claim could not be made, kept or released.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClaimError {
    /// Another node holds the service.
    Held {
        /// The service.
        service: String,
        /// The node holding it.
        owner: String,
    },
    /// The claim was lost (not refreshed in time, or overwritten).
    Lost {
        /// The service.
        service: String,
    },
    /// The service name cannot be a key, or the bucket cannot be used.
    Invalid {
        /// What was wrong.
        reason: String,
    },
    /// The server failed.
    Backend {
        /// The service (or the bucket).
        service: String,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl std::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimError::Held { service, owner } => write!(f, "service `{service}` is held by node `{owner}`"),
            ClaimError::Lost { service } => write!(f, "the claim on service `{service}` was lost"),
            ClaimError::Invalid { reason } => f.write_str(reason),
            ClaimError::Backend { service, source } => write!(f, "claiming `{service}` failed: {source}"),
        }
    }
}

impl std::error::Error for ClaimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClaimError::Backend { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// One node's view of the ownership bucket.
#[derive(Clone)]
pub struct Claims {
    kv: kv::Store,
    node: Arc<str>,
    ttl: Duration,
}

impl Claims {
    /// Opens (creating it if missing) the ownership bucket `bucket`, whose entries live `ttl`,
    /// as node `node`.
    pub async fn open(
        client: async_nats::Client,
        bucket: &str,
        node: impl Into<String>,
        ttl: Duration,
    ) -> Result<Self, ClaimError> {
        Self::open_replicated(client, bucket, node, ttl, 1).await
    }

    /// [`open`](Self::open), the bucket (if this call creates it) kept by `replicas` servers of
    /// a NATS cluster.
    pub async fn open_replicated(
        client: async_nats::Client,
        bucket: &str,
        node: impl Into<String>,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self, ClaimError> {
        let node: String = node.into();
        check_key(&node).map_err(|e| ClaimError::Invalid { reason: e.to_string() })?;
        if ttl < Duration::from_millis(300) {
            return Err(ClaimError::Invalid {
                reason: format!("a claim's time to live of {ttl:?} is too short to refresh; give 300 ms or more"),
            });
        }
        let backend = |source: Box<dyn std::error::Error + Send + Sync>| ClaimError::Backend {
            service: format!("(bucket {bucket})"),
            source,
        };
        let context = jetstream::new(client);
        let config = BucketConfig { max_age: ttl, replicas };
        let kv = buckets::open_or_create(&context, bucket, config)
            .await
            .map_err(backend)?;
        // A claim lives as long as the bucket keeps it: a bucket made by nodes with another
        // time to live would let this node believe a claim valid after the server dropped it.
        let stream = context
            .get_stream(format!("KV_{bucket}"))
            .await
            .map_err(|e| backend(e.into()))?;
        let kept = stream.cached_info().config.max_age;
        if kept != ttl {
            return Err(ClaimError::Invalid {
                reason: format!(
                    "the ownership bucket `{bucket}` keeps claims for {kept:?}, but this node was given a time to live of {ttl:?}: every node must use the bucket's"
                ),
            });
        }
        Ok(Self {
            kv,
            node: node.into(),
            ttl,
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node holding `service`, if any.
    pub async fn owner(&self, service: &str) -> Result<Option<String>, ClaimError> {
        let entry = self.kv.entry(service).await.map_err(|e| self.backend(service, e))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }

    /// Claims `service` for this node, unless another node holds it; the claim is refreshed
    /// on the current tokio runtime until it is released or dropped.
    pub async fn claim(&self, service: &str) -> Result<Claim, ClaimError> {
        check_key(service).map_err(|e| ClaimError::Invalid { reason: e.to_string() })?;
        let started = Instant::now();
        let created = self.kv.create(service, Bytes::from(self.node.to_string())).await;
        let revision = match created {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let owner = self.owner(service).await?.unwrap_or_else(|| "(just released)".into());
                return Err(ClaimError::Held {
                    service: service.to_owned(),
                    owner,
                });
            }
            Err(e) => return Err(self.backend(service, e)),
        };
        Ok(Claim::start(self.clone(), service.to_owned(), revision, started))
    }

    /// The claim's current revision and whether it is this node's, if there is one.
    async fn current(&self, service: &str) -> Result<Option<(u64, bool)>, ClaimError> {
        let entry = self.kv.entry(service).await.map_err(|e| self.backend(service, e))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| (e.revision, *e.value == *self.node.as_bytes())))
    }

    fn backend(&self, service: &str, source: impl std::error::Error + Send + Sync + 'static) -> ClaimError {
        ClaimError::Backend {
            service: service.to_owned(),
            source: source.into(),
        }
    }

    /// How long before its expiry an owner gives a claim up: a tenth of the time to live, at
    /// least 100 ms.
    fn margin(&self) -> Duration {
        (self.ttl / 10).max(Duration::from_millis(100))
    }
}

/// A service this node holds. Refreshed in the background; dropping it stops the refreshes (the
/// claim then expires), [`release`](Self::release) gives it up at once.
pub struct Claim {
    claims: Claims,
    service: String,
    shared: Arc<ClaimState>,
    lost: watch::Receiver<bool>,
    refresher: tokio::task::JoinHandle<()>,
}

struct ClaimState {
    /// The revision this node last wrote, and until when (by this node's clock) it is valid.
    held: Mutex<(u64, Instant)>,
}

impl Claim {
    fn start(claims: Claims, service: String, revision: u64, started: Instant) -> Self {
        let valid_until = started + claims.ttl - claims.margin();
        let shared = Arc::new(ClaimState {
            held: Mutex::new((revision, valid_until)),
        });
        let (tx, lost) = watch::channel(false);
        let refresher = tokio::spawn(refresh(claims.clone(), service.clone(), Arc::clone(&shared), tx));
        Self {
            claims,
            service,
            shared,
            lost,
            refresher,
        }
    }

    /// The service claimed.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Whether this node may still serve the service: the claim was refreshed recently enough
    /// that it cannot have expired yet (with the margin).
    pub fn is_valid(&self) -> bool {
        !*self.lost.borrow() && Instant::now() < self.shared.held.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// Resolves when the claim is lost: stop serving the service then.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Gives the service up: the key is removed if this node still holds it.
    pub async fn release(&self) -> Result<(), ClaimError> {
        self.refresher.abort();
        let revision = self.shared.held.lock().unwrap_or_else(PoisonError::into_inner).0;
        let kv = &self.claims.kv;
        if kv.delete_expect_revision(&self.service, Some(revision)).await.is_ok() {
            return Ok(());
        }
        // A refresh in flight as the refresher stopped may have moved the revision on: the
        // claim is released if it is still this node's, and left alone if it is another's.
        match self.claims.current(&self.service).await? {
            Some((revision, true)) => kv
                .delete_expect_revision(&self.service, Some(revision))
                .await
                .map_err(|e| self.claims.backend(&self.service, e)),
            _ => Ok(()),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// Rewrites the claim every third of its time to live; gives it up when a refresh cannot
/// succeed before the claim's validity (by this node's clock) ends. A refresh that fails for
/// want of the server (a restart, a broken connection) is tried again until then; one the
/// server refuses (someone else wrote the claim) loses the claim at once.
async fn refresh(claims: Claims, service: String, shared: Arc<ClaimState>, lost: watch::Sender<bool>) {
    let every = claims.ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        if let Err(why) = refresh_once(&claims, &service, &shared).await {
            tracing::error!(service, "claim lost: {why}");
            let _ = lost.send(true);
            return;
        }
    }
}

async fn refresh_once(claims: &Claims, service: &str, shared: &ClaimState) -> Result<(), String> {
    let (revision, valid_until) = *shared.held.lock().unwrap_or_else(PoisonError::into_inner);
    // The server keeps a landed write `ttl` from when it stored it, no sooner than this.
    let first_try = Instant::now();
    loop {
        let started = Instant::now();
        let remaining = valid_until.saturating_duration_since(started);
        if remaining.is_zero() {
            return Err("no refresh before it could expire".into());
        }
        let value = Bytes::from(claims.node.to_string());
        match tokio::time::timeout(remaining, claims.kv.update(service, value, revision)).await {
            Ok(Ok(revision)) => {
                *shared.held.lock().unwrap_or_else(PoisonError::into_inner) =
                    (revision, started + claims.ttl - claims.margin());
                return Ok(());
            }
            Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // An earlier try whose answer was lost may have landed: then the claim is
                // still this node's, at the revision that try wrote.
                return match claims.current(service).await {
                    Ok(Some((landed, true))) if landed > revision => {
                        *shared.held.lock().unwrap_or_else(PoisonError::into_inner) =
                            (landed, first_try + claims.ttl - claims.margin());
                        Ok(())
                    }
                    _ => Err(format!("its refresh was refused: {error}")),
                };
            }
            Ok(Err(error)) => {
                tracing::warn!(service, %error, "a claim's refresh failed; trying again");
                tokio::time::sleep(Duration::from_millis(100).min(remaining)).await;
            }
            Err(_) => return Err("no refresh before it could expire".into()),
        }
    }
}
