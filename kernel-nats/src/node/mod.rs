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

mod error;
mod options;
mod owned;

pub use error::{HandOverError, TakeOverError};
pub use options::NodeOptions;
pub use owned::Owned;

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
