//! A service this node runs while it holds the claim, and its handover.

use std::sync::Arc;

use tokio::sync::Mutex as AsyncMutex;

use super::{HandOverError, Node, TakeOverError};
use crate::answers::Answers;
use crate::ownership::{Claim, ClaimError};
use crate::serve::Server;

/// A service this node runs and serves while it holds its claim. [`hand_over`](Self::hand_over)
/// gives it to the next node without losing a call. Dropping it is what a crash looks like to
/// the other nodes: it stops serving the service to them and stops refreshing the claim (which
/// then expires, and another node takes the service over from its last saved state); the service
/// stays registered in this node's kernel.
pub struct Owned {
    pub(super) node: Node,
    pub(super) service: String,
    pub(super) claim: Arc<Claim>,
    pub(super) server: Arc<AsyncMutex<Option<Server>>>,
    pub(super) watcher: tokio::task::JoinHandle<()>,
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
    ///    [`NodeOptions::drain_timeout`](super::NodeOptions::drain_timeout);
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
