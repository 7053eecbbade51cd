//! Calls between nodes: a service a kernel serves is reachable from any node on the subject
//! `mk.call.<service>` (queue group `mk`: one node answers each call). Requests and replies are
//! the `Event`/`Reply` pair encoded with postcard, each with its schema fingerprint in the
//! `Mk-Shape` header so that a node refuses a message of another shape (415); the caller's
//! deadline travels in `Mk-Deadline` (milliseconds since the Unix epoch) and a call id in
//! `Mk-Call`: a retried call is answered from the serving node's record of answers (kept past
//! the deadline, and moved to the next owner at a handover), not handled twice.
//!
//! Retries, all with the same call id and all within the caller's deadline:
//! - "no responders" (nobody serves the subject right now: a service between two nodes) is
//!   retried with a doubling backoff (5 ms up to 500 ms);
//! - an attempt that got no reply within its own timeout (100 ms, doubling, but never more
//!   than [`MAX_ATTEMPT`] nor what is left of the deadline) is sent again. This is not a blind
//!   retry: the call id makes it idempotent — a call the service already handled is answered
//!   from the record, one still being handled is answered when it ends. It is what recovers a
//!   request lost in flight (a subscription ending as a node hands a service over) and one
//!   routed to an owner that stopped answering.
//!
//! A retry after a timeout goes to `mk.retry.<service>`, which every node serving the service
//! under a claim ([`Node::take_over`](crate::Node::take_over)) subscribes to outside the queue
//! group: it reaches every such node, and only the one whose claim is valid answers (the others
//! drop it). NATS routes a queue group's requests at random among its members, and an owner
//! that was paused (SIGSTOP, a long GC-like stall) or cut off stays a member until the server
//! notices (minutes, by its pings): a retry sent to the queue group again could be routed to it
//! again, each time for a whole attempt. If nobody listens on `mk.retry.<service>` (services
//! served by [`serve`], without claims), the retry goes to the queue group.
//!
//! **How long a call waits for a paused or cut-off owner.** Its claim is no longer refreshed
//! and expires at most the claim's time to live ([`NodeOptions::claim_ttl`]) after the owner
//! stopped; a node waiting in `take_over` then claims the service, restores it, makes its
//! fencing write and serves it. From then on, the call's next attempt — at most
//! [`MAX_ATTEMPT`] later — reaches the new owner. So a call waits at most about
//! `claim_ttl + take-over + MAX_ATTEMPT` (1 s), provided its deadline is longer; new calls
//! meanwhile lose at most their first attempt (100 ms) to the stalled node.
//!
//! The answers a serving node gives besides its service's own are listed in [`code`]; a reply
//! of code [`code::HANDLED_NOT_SAVED`] says the call was handled: do not send it again.
//!
//! Past the deadline the call fails with [`RemoteCallError::Timeout`] (it may have been handled)
//! or [`RemoteCallError::NoResponders`] (nobody took it). Call cycles across nodes are bounded
//! by the deadline: a cycle ends in a timeout.
//!
//! [`NodeOptions::claim_ttl`]: crate::NodeOptions::claim_ttl

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use kernel_core::{Event, Kernel, Reply};

use crate::answers::{Answers, now_ms};
use crate::serve::{ServeMode, Server};

pub use crate::wire::subject;
use crate::wire::{CALL_ID, DEADLINE, SHAPE, event_shape, reply_shape, retry_subject};

/// The first attempt's timeout; each further attempt waits twice as long, up to
/// [`MAX_ATTEMPT`]. It bounds the pause of a call whose request was lost as a subscription
/// ended (see [`crate::Owned::hand_over`]).
const FIRST_ATTEMPT: Duration = Duration::from_millis(100);

/// The longest one attempt of a call waits for its reply before the call is sent again (with
/// the same call id). It bounds how long a call stays with an owner that stopped answering once
/// another node serves the service (see the [module](self) documentation): a call waits at most
/// about the claim's time to live, plus the next owner's take-over, plus this.
///
/// A handler that runs longer than this is not a problem: each retry of a call still being
/// handled waits, on the serving node, for the first attempt's answer.
pub const MAX_ATTEMPT: Duration = Duration::from_secs(1);

pub use crate::wire::code;

/// A call to another node failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoteCallError {
    /// Nobody served the service before the deadline.
    NoResponders {
        /// The service.
        service: String,
    },
    /// The call was sent but no reply came before the deadline (it may have been handled).
    Timeout {
        /// The service.
        service: String,
    },
    /// The reply was not a `Reply` of the shape this node knows.
    BadReply {
        /// The service.
        service: String,
        /// What was wrong.
        reason: String,
    },
    /// The connection failed.
    Backend {
        /// The service.
        service: String,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl std::fmt::Display for RemoteCallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteCallError::NoResponders { service } => {
                write!(f, "no node served `{service}` before the call's deadline")
            }
            RemoteCallError::Timeout { service } => write!(
                f,
                "no reply from `{service}` before the call's deadline (it may have been handled, once)"
            ),
            RemoteCallError::BadReply { service, reason } => write!(f, "bad reply from `{service}`: {reason}"),
            RemoteCallError::Backend { service, source } => write!(f, "calling `{service}` failed: {source}"),
        }
    }
}

impl std::error::Error for RemoteCallError {}

/// Calls `event.to` on whichever node serves it, waiting at most `timeout` in all. A reply is
/// returned as it is, never sent again (a reply of code [`code::HANDLED_NOT_SAVED`] included);
/// only an attempt that got no reply is, with the same call id. An owner that stopped answering
/// delays the call by at most about the claim's time to live, the next owner's take-over and
/// [`MAX_ATTEMPT`] (see the [module](self) documentation).
pub async fn call(client: &async_nats::Client, event: Event, timeout: Duration) -> Result<Reply, RemoteCallError> {
    let service = event.to.to_string();
    let started = Instant::now();
    // Unique across nodes and processes: the client's inbox names are (a NUID each).
    let call_id = client.new_inbox().trim_start_matches("_INBOX.").to_owned();
    let payload = Bytes::from(postcard::to_allocvec(&event).map_err(|e| RemoteCallError::Backend {
        service: service.clone(),
        source: e.into(),
    })?);
    let to = async_nats::Subject::from(subject(&service));
    let retry_to = async_nats::Subject::from(retry_subject(&service));
    let mut backoff = Duration::from_millis(5);
    let mut attempt = FIRST_ATTEMPT;
    let mut sent = false; // whether some attempt reached a server that took it
    loop {
        // After an attempt timed out, to the nodes serving under a claim first (every one of
        // them: only the valid owner answers), so that a stalled member of the queue group
        // cannot be chosen again; to the queue group if none listens.
        let subjects: &[&async_nats::Subject] = if sent { &[&retry_to, &to] } else { &[&to] };
        let mut timed_out = false;
        for subject in subjects {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            let mut headers = HeaderMap::new();
            headers.insert(SHAPE, event_shape());
            headers.insert(DEADLINE, (now_ms() + left.as_millis() as u64).to_string().as_str());
            headers.insert(CALL_ID, call_id.as_str());
            let request = async_nats::Request::new()
                .headers(headers)
                .payload(payload.clone())
                .timeout(Some(attempt.min(left)));
            match client.send_request((*subject).clone(), request).await {
                Ok(message) => return decode_reply(&service, &message),
                Err(e) if e.kind() == RequestErrorKind::NoResponders => continue,
                Err(e) if e.kind() == RequestErrorKind::TimedOut => {
                    timed_out = true;
                    break;
                }
                Err(e) => {
                    return Err(RemoteCallError::Backend {
                        service,
                        source: e.into(),
                    });
                }
            }
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(if sent || timed_out {
                RemoteCallError::Timeout { service }
            } else {
                RemoteCallError::NoResponders { service }
            });
        }
        if timed_out {
            // Sent again with the same call id: answered once, whoever serves it now.
            sent = true;
            attempt = (attempt * 2).min(MAX_ATTEMPT);
        } else {
            // Nobody serves it right now (a service between two nodes).
            tokio::time::sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

fn decode_reply(service: &str, message: &async_nats::Message) -> Result<Reply, RemoteCallError> {
    let bad = |reason: String| RemoteCallError::BadReply {
        service: service.to_owned(),
        reason,
    };
    let shape = message
        .headers
        .as_ref()
        .and_then(|h| h.get(SHAPE))
        .map(|v| v.as_str().to_owned());
    if shape.as_deref() != Some(reply_shape()) {
        return Err(bad(format!("shape {shape:?}, expected {}", reply_shape())));
    }
    postcard::from_bytes(&message.payload).map_err(|e| bad(e.to_string()))
}

/// This node's services, served to the other nodes; dropping it stops serving them.
pub struct Serving {
    servers: Vec<Server>,
}

impl Serving {
    /// The services served.
    pub fn services(&self) -> Vec<&str> {
        self.servers.iter().map(Server::service).collect()
    }
}

/// Serves `services` of `kernel` (its `Event`/`Reply` services, sync or async) to the other
/// nodes over `client`, on the current tokio runtime; each service has its own record of
/// answers. A service that moves between nodes is better served through
/// [`Node::take_over`](crate::Node::take_over), which moves its record with it.
pub async fn serve(
    kernel: &Kernel,
    client: &async_nats::Client,
    services: &[&str],
) -> Result<Serving, RemoteCallError> {
    let mut servers = Vec::with_capacity(services.len());
    for service in services {
        servers.push(
            Server::start(
                kernel,
                client,
                service,
                Arc::new(Answers::default()),
                ServeMode::default(),
                None,
            )
            .await
            .map_err(|e| RemoteCallError::Backend {
                service: (*service).to_owned(),
                source: e.into(),
            })?,
        );
    }
    Ok(Serving { servers })
}

/// [`RemoteCalls`](kernel_core::asynchronous::RemoteCalls) over NATS: give it to
/// `KernelBuilder::remote`, and `kernel.call_async(name, event)` reaches a service that runs on
/// another node (one that [`serve`]s it) when no local service has the name.
#[derive(Clone)]
pub struct NatsCalls {
    client: async_nats::Client,
    timeout: Duration,
}

impl NatsCalls {
    /// Calls over `client`, each bounded by `timeout` unless the caller gives its own.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }
}

impl kernel_core::asynchronous::RemoteCalls for NatsCalls {
    fn call(&self, event: Event, timeout: Option<Duration>) -> kernel_core::asynchronous::CallFuture<Reply> {
        let (client, timeout) = (self.client.clone(), timeout.unwrap_or(self.timeout));
        Box::pin(async move {
            let service = event.to.to_string();
            call(&client, event, timeout)
                .await
                .map_err(|error| kernel_core::CallError::Remote {
                    service,
                    reason: error.to_string(),
                })
        })
    }
}
