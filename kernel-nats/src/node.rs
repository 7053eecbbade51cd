//! A kernel as one node of several: it runs a service only while it holds its claim, serves it
//! to the other nodes, and hands it over to another node without losing or doubling a call.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use kernel_core::{Kernel, LifecycleError};
use tokio::sync::Mutex as AsyncMutex;

use crate::answers::Answers;
use crate::buckets::{self, BucketConfig};
use crate::calls::RemoteCallError;
use crate::ownership::{Claim, ClaimError, Claims};
use crate::serve::{ServeMode, Server};

/// Taking a service over, or handing it over, failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TakeOverError {
    /// The claim could not be made (another node kept it past the wait, or the server failed).
    Claim(ClaimError),
    /// Registering, restoring, the fencing write, the start or the stop failed; on taking
    /// over, the claim was released.
    Lifecycle(LifecycleError),
    /// Serving the service to the other nodes failed.
    Serve(RemoteCallError),
    /// The requests taken were not all answered within the drain timeout (a handler that does
    /// not return): the handover did not happen.
    Drain {
        /// The service.
        service: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The record of answered calls could not be moved (written by the old owner, or read and
    /// opened by the new one).
    Answers {
        /// The service.
        service: String,
        /// What was wrong.
        reason: String,
    },
}

impl std::fmt::Display for TakeOverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TakeOverError::Claim(e) => write!(f, "moving the service failed: {e}"),
            TakeOverError::Lifecycle(e) => write!(f, "moving the service failed: {e}"),
            TakeOverError::Serve(e) => write!(f, "moving the service failed: {e}"),
            TakeOverError::Drain { service, timeout } => write!(
                f,
                "moving `{service}` failed: the requests it took were not answered within {timeout:?}"
            ),
            TakeOverError::Answers { service, reason } => {
                write!(f, "moving the record of answered calls of `{service}` failed: {reason}")
            }
        }
    }
}

impl std::error::Error for TakeOverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TakeOverError::Claim(e) => Some(e),
            TakeOverError::Lifecycle(e) => Some(e),
            TakeOverError::Serve(e) => Some(e),
            TakeOverError::Answers { .. } | TakeOverError::Drain { .. } => None,
        }
    }
}

/// How a [`Node`] keeps its claims and records.
#[derive(Debug, Clone)]
#[must_use]
pub struct NodeOptions {
    claims_bucket: String,
    answers_bucket: String,
    claim_ttl: Duration,
    answers_ttl: Duration,
    write_through: bool,
    poll: Duration,
    drain_timeout: Duration,
    replicas: usize,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            claims_bucket: "mk-owners".into(),
            answers_bucket: "mk-answers".into(),
            claim_ttl: Duration::from_secs(10),
            answers_ttl: Duration::from_secs(600),
            write_through: false,
            poll: Duration::from_millis(20),
            drain_timeout: Duration::from_secs(30),
            replicas: 1,
        }
    }
}

impl NodeOptions {
    /// The ownership bucket (default `mk-owners`).
    pub fn claims_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.claims_bucket = bucket.into();
        self
    }

    /// The bucket of records of answered calls moved at handovers (default `mk-answers`).
    pub fn answers_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.answers_bucket = bucket.into();
        self
    }

    /// A claim's time to live (default 10 s): a dead owner's services are taken over this long
    /// after its last refresh. Every node of a system must use the same.
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// Save each service's state after every handled request, before its reply (default off):
    /// a reply never announces a change that a crash of this node could lose, at the price of a
    /// store write per request (see BENCHMARKS.md).
    pub fn write_through(mut self, on: bool) -> Self {
        self.write_through = on;
        self
    }

    /// How long a handover waits for the requests already taken to be answered (default 30 s);
    /// past it the handover fails and the service goes on here.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long a record of answered calls left at a handover is kept in its bucket if
    /// nobody takes the service over (default 10 minutes; used when the bucket is created).
    pub fn answers_ttl(mut self, ttl: Duration) -> Self {
        self.answers_ttl = ttl;
        self
    }

    /// How many servers of a NATS cluster keep the ownership bucket and the bucket of moved
    /// records (default 1; used when they are created). Give the state store the same
    /// (`NatsStoreOptions::replicas`).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// How often a node waiting for a claim looks again (default 20 ms).
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }
}

/// One node: a kernel, its connection, its claims. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    kernel: Kernel,
    client: async_nats::Client,
    claims: Claims,
    answers: kv::Store,
    options: NodeOptions,
}

impl Node {
    /// Node `name` of the system whose kernels share `client`'s server: opens (creating them
    /// if missing) the ownership bucket and the bucket of moved records.
    pub async fn open(
        kernel: &Kernel,
        client: async_nats::Client,
        name: &str,
        options: NodeOptions,
    ) -> Result<Self, ClaimError> {
        let claims = Claims::open_replicated(
            client.clone(),
            &options.claims_bucket,
            name,
            options.claim_ttl,
            options.replicas,
        )
        .await?;
        let answers = open_answers(&client, &options).await?;
        Ok(Self {
            inner: Arc::new(NodeInner {
                kernel: kernel.clone(),
                client,
                claims,
                answers,
                options,
            }),
        })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        self.inner.claims.node()
    }

    /// The node's kernel.
    pub fn kernel(&self) -> &Kernel {
        &self.inner.kernel
    }

    /// The node's view of the ownership bucket.
    pub fn claims(&self) -> &Claims {
        &self.inner.claims
    }

    /// Takes `service` over on this node:
    ///
    /// 1. claims it, waiting up to `wait` while another node holds it (a dead owner's claim
    ///    expires after its time to live; a handing-over owner releases it at once);
    /// 2. registers it with `register` — with the kernel's store, the registration restores
    ///    the newest saved state, upgraded through its chain;
    /// 3. makes the fencing write (a checkpoint of the state just restored): from then on, any
    ///    write by the previous owner fails with `StoreError::Conflict`;
    /// 4. reads the record of calls the previous owner answered (if it handed over), so that a
    ///    retry of one of them is answered, not handled again;
    /// 5. starts it and serves it to the other nodes (subject `mk.call.<service>`);
    ///
    /// and stops serving it the moment the claim is lost. On a failure after the claim, the
    /// claim is given up.
    pub async fn take_over<F, Fut>(&self, service: &str, wait: Duration, register: F) -> Result<Owned, TakeOverError>
    where
        F: FnOnce(Kernel) -> Fut,
        Fut: Future<Output = Result<(), LifecycleError>>,
    {
        let claim = Arc::new(self.claim(service, wait).await?);
        if let Err(error) = register(self.inner.kernel.clone()).await {
            let _ = claim.release().await;
            return Err(TakeOverError::Lifecycle(error));
        }
        let server = match self.ready(service, &claim).await {
            Ok(server) => server,
            Err(error) => {
                // Registered here but not taken over: leave nothing running or registered.
                self.abandon(service).await;
                let _ = claim.release().await;
                return Err(error);
            }
        };
        let server = Arc::new(AsyncMutex::new(Some(server)));
        let watcher = self.watch(service, &claim, &server);
        Ok(Owned {
            node: self.clone(),
            service: service.to_owned(),
            claim,
            server,
            watcher,
        })
    }

    /// Stops serving and running `service` when `claim` is lost.
    fn watch(
        &self,
        service: &str,
        claim: &Arc<Claim>,
        server: &Arc<AsyncMutex<Option<Server>>>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(stop_when_lost(
            self.clone(),
            service.to_owned(),
            Arc::clone(claim),
            Arc::clone(server),
        ))
    }

    /// Stops and unregisters a service this node does not (or no longer) own.
    async fn abandon(&self, service: &str) {
        if let Err(error) = self.inner.kernel.stop_cascade_async(service).await {
            tracing::warn!(service, %error, "stopping a service this node gives up failed");
        }
        self.forget(service).await;
    }

    async fn claim(&self, service: &str, wait: Duration) -> Result<Claim, TakeOverError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.inner.claims.claim(service).await {
                Ok(claim) => return Ok(claim),
                Err(ClaimError::Held { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(self.inner.options.poll).await;
                }
                Err(error) => return Err(TakeOverError::Claim(error)),
            }
        }
    }

    /// Steps 3 to 5 of a take-over.
    async fn ready(&self, service: &str, claim: &Arc<Claim>) -> Result<Server, TakeOverError> {
        let kernel = &self.inner.kernel;
        let name = service.to_owned();
        kernel
            .blocking(move |k| k.checkpoint_service(&name).map(drop))
            .await
            .map_err(TakeOverError::Lifecycle)?;
        let answers = self.moved_answers(service).await?;
        kernel.start_async(service).await.map_err(TakeOverError::Lifecycle)?;
        self.serve(service, Arc::new(answers), claim).await
    }

    async fn serve(&self, service: &str, answers: Arc<Answers>, claim: &Arc<Claim>) -> Result<Server, TakeOverError> {
        let mode = ServeMode {
            write_through: self.inner.options.write_through,
        };
        let client = &self.inner.client;
        Server::start(
            &self.inner.kernel,
            client,
            service,
            answers,
            mode,
            Some(Arc::clone(claim)),
        )
        .await
        .map_err(|e| {
            TakeOverError::Serve(RemoteCallError::Backend {
                service: service.to_owned(),
                source: e.into(),
            })
        })
    }

    /// The record the previous owner of `service` left at its handover (none after a crash).
    async fn moved_answers(&self, service: &str) -> Result<Answers, TakeOverError> {
        let failed = |reason: String| TakeOverError::Answers {
            service: service.to_owned(),
            reason,
        };
        let answers = Answers::default();
        let (mut part, mut parts) = (0, 1);
        while part < parts {
            let key = part_key(service, part);
            let blob = self.inner.answers.get(&key).await.map_err(|e| failed(e.to_string()))?;
            let Some(blob) = blob else {
                if part == 0 {
                    return Ok(answers); // never handed over: nothing to read
                }
                return Err(failed(format!("part {part} of {parts} is missing")));
            };
            let sealer = self
                .inner
                .kernel
                .sealer()
                .ok_or_else(|| failed("the kernel has no sealer to open it with".into()))?;
            let count = answers
                .open_part(sealer, service, part, &blob)
                .map_err(|e| failed(format!("part {part}: {e}")))?;
            if part == 0 {
                parts = count;
            } else if count != parts {
                return Err(failed(format!("part {part} belongs to another record")));
            }
            part += 1;
        }
        Ok(answers)
    }

    /// Unregisters a service this node no longer runs, so that taking it back later registers
    /// it afresh from the state saved since.
    async fn forget(&self, service: &str) {
        let name = service.to_owned();
        if let Err(error) = self.inner.kernel.blocking(move |k| k.unregister(&name)).await {
            tracing::warn!(service, %error, "a service this node gave up stays registered here");
        }
    }

    /// Seals and writes `answers` for the next owner of `service`.
    async fn leave_answers(&self, service: &str, answers: &Answers) -> Result<(), TakeOverError> {
        let failed = |reason: String| TakeOverError::Answers {
            service: service.to_owned(),
            reason,
        };
        let sealer = self
            .inner
            .kernel
            .sealer()
            .ok_or_else(|| failed("the kernel has no sealer to seal it with".into()))?;
        let parts = answers.seal(sealer, service).map_err(|e| failed(e.to_string()))?;
        // The first part last: a reader that finds it finds the others of its record.
        for (part, blob) in parts.into_iter().enumerate().rev() {
            self.inner
                .answers
                .put(part_key(service, part), Bytes::from(blob))
                .await
                .map_err(|e| failed(format!("part {part}: {e}")))?;
        }
        Ok(())
    }
}

/// Where part `part` of `service`'s moved record is kept: `<part>.<service>` (a number first,
/// so that no service's parts meet another's).
fn part_key(service: &str, part: usize) -> String {
    format!("{part}.{service}")
}

/// Opens (creating it if missing) the bucket of moved records.
async fn open_answers(client: &async_nats::Client, options: &NodeOptions) -> Result<kv::Store, ClaimError> {
    let config = BucketConfig {
        max_age: options.answers_ttl,
        replicas: options.replicas,
    };
    let context = jetstream::new(client.clone());
    buckets::open_or_create(&context, &options.answers_bucket, config)
        .await
        .map_err(|source| ClaimError::Backend {
            service: format!("(bucket {})", options.answers_bucket),
            source,
        })
}

/// Stops serving and running `service` when its claim is lost: another node may take it over.
async fn stop_when_lost(node: Node, service: String, claim: Arc<Claim>, server: Arc<AsyncMutex<Option<Server>>>) {
    claim.lost().await;
    tracing::error!(service, "claim lost: stopping the service on this node");
    // No draining: the server may be out of reach (a drain would wait for it), and another
    // node may start the service once the claim expires. Taking no more requests comes first.
    drop(server.lock().await.take());
    node.abandon(&service).await;
}

/// A service this node runs and serves while it holds its claim. [`hand_over`](Self::hand_over)
/// gives it to the next node without losing a call. Dropping it is what a crash looks like to
/// the other nodes: it stops serving the service to them and stops refreshing the claim (which
/// then expires, and another node takes the service over from its last saved state); the service
/// stays registered in this node's kernel.
pub struct Owned {
    node: Node,
    service: String,
    claim: Arc<Claim>,
    server: Arc<AsyncMutex<Option<Server>>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Owned {
    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Whether this node still holds the claim (see [`Claim::is_valid`]).
    pub fn is_valid(&self) -> bool {
        self.claim.is_valid()
    }

    /// Hands the service over to whichever node takes it next (one waiting in
    /// [`Node::take_over`] does at once):
    ///
    /// 1. stops taking requests (the subscription ends; callers meanwhile see "no responders"
    ///    and retry) and answers every request already taken, waiting at most
    ///    [`NodeOptions::drain_timeout`];
    /// 2. stops the service (and its dependants), saving its state — a fenced write;
    /// 3. leaves the record of answered calls, sealed, for the next owner;
    /// 4. unregisters it here and releases the claim.
    ///
    /// If step 1, 2 or 3 fails while the claim is still held, the service is started and
    /// served here again, with its record: [`HandOverError::into_owned`] gives it back, and the
    /// old version keeps serving. If the claim was lost, the service is stopped here and there is
    /// nothing to give back.
    pub async fn hand_over(self) -> Result<(), HandOverError> {
        self.watcher.abort();
        if !self.claim.is_valid() {
            return Err(self.lost().await);
        }
        let server = self.server.lock().await.take();
        let Some(server) = server else {
            return Err(self.lost().await); // the watcher took it: the claim was lost
        };
        let answers = server.answers();
        let drain_timeout = self.node.inner.options.drain_timeout;
        if tokio::time::timeout(drain_timeout, server.drain()).await.is_err() {
            let error = TakeOverError::Drain {
                service: self.service.clone(),
                timeout: drain_timeout,
            };
            return Err(self.resume(answers, error).await);
        }
        let kernel = &self.node.inner.kernel;
        let saved = match kernel.stop_cascade_async(&self.service).await {
            Ok(()) => self.node.leave_answers(&self.service, &answers).await,
            Err(error) => Err(TakeOverError::Lifecycle(error)),
        };
        if let Err(error) = saved {
            return Err(self.resume(answers, error).await);
        }
        self.node.forget(&self.service).await;
        self.claim.release().await.map_err(|e| HandOverError {
            error: TakeOverError::Claim(e),
            owned: None,
        })
    }

    /// The claim was lost: the service stops here (if the watcher has not stopped it yet).
    async fn lost(self) -> HandOverError {
        drop(self.server.lock().await.take());
        self.node.abandon(&self.service).await;
        HandOverError {
            error: TakeOverError::Claim(ClaimError::Lost {
                service: self.service.clone(),
            }),
            owned: None,
        }
    }

    /// Serves the service here again after a failed handover, if the claim is still held.
    async fn resume(mut self, answers: Arc<Answers>, error: TakeOverError) -> HandOverError {
        tracing::error!(service = self.service, %error, "handover failed: serving here again");
        if !self.claim.is_valid() {
            let lost = self.lost().await;
            return HandOverError {
                error,
                owned: lost.owned,
            };
        }
        let restarted = async {
            self.node
                .inner
                .kernel
                .start_async(&self.service)
                .await
                .map_err(TakeOverError::Lifecycle)?;
            self.node.serve(&self.service, answers, &self.claim).await
        };
        match restarted.await {
            Ok(server) => {
                *self.server.lock().await = Some(server);
                self.watcher = self.node.watch(&self.service, &self.claim, &self.server);
                HandOverError {
                    error,
                    owned: Some(self),
                }
            }
            Err(resume_error) => {
                tracing::error!(service = self.service, %resume_error, "serving again after a failed handover failed");
                let _ = self.claim.release().await;
                self.node.abandon(&self.service).await;
                HandOverError { error, owned: None }
            }
        }
    }
}

/// A handover failed; [`into_owned`](Self::into_owned) gives the service back if it is served
/// here again.
#[derive(Debug)]
pub struct HandOverError {
    error: TakeOverError,
    owned: Option<Owned>,
}

impl HandOverError {
    /// What failed.
    pub fn error(&self) -> &TakeOverError {
        &self.error
    }

    /// The service, served by this node again, if the claim was still held.
    pub fn into_owned(self) -> Option<Owned> {
        self.owned
    }
}

impl std::fmt::Display for HandOverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let still = if self.owned.is_some() {
            "still served here"
        } else {
            "no longer served here"
        };
        write!(f, "handing the service over failed ({still}): {}", self.error)
    }
}

impl std::error::Error for HandOverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl std::fmt::Debug for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owned")
            .field("service", &self.service)
            .field("node", &self.node.name())
            .finish_non_exhaustive()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}
