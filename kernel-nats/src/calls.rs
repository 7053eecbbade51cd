//! Calls between nodes: a service a kernel serves is reachable from any node on the subject
//! `mk.call.<service>` (queue group `mk`: one node answers each call). Requests and replies are
//! the `Event`/`Reply` pair encoded with postcard, each with its schema fingerprint in the
//! `Mk-Shape` header so that a node refuses a message of another shape (415); the caller's
//! deadline travels in `Mk-Deadline` (milliseconds since the Unix epoch) and a call id in
//! `Mk-Call`: a retried call is answered from the serving node's record of answers (kept past
//! the deadline), not handled twice.
//!
//! "No responders" (nobody serves the subject right now: a service between two nodes) is retried
//! with a doubling backoff until the deadline; a timeout is not retried (the call may have been
//! handled). Call cycles across nodes are bounded by the deadline: a cycle ends in a timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use kernel_core::state::{Schema, fingerprint};
use kernel_core::{Event, Kernel, Reply, code};

/// The subject a service is called on.
pub fn subject(service: &str) -> String {
    format!("mk.call.{service}")
}

const SHAPE: &str = "Mk-Shape";
const DEADLINE: &str = "Mk-Deadline";
const CALL_ID: &str = "Mk-Call";

fn shape_of<T: Schema>() -> String {
    format!("{:016x}", fingerprint(T::SCHEMA, 1).0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

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
                "no reply from `{service}` before the call's deadline (it may have been handled; not retried)"
            ),
            RemoteCallError::BadReply { service, reason } => write!(f, "bad reply from `{service}`: {reason}"),
            RemoteCallError::Backend { service, source } => write!(f, "calling `{service}` failed: {source}"),
        }
    }
}

impl std::error::Error for RemoteCallError {}

/// Calls `event.to` on whichever node serves it, waiting at most `timeout` in all.
pub async fn call(client: &async_nats::Client, event: Event, timeout: Duration) -> Result<Reply, RemoteCallError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let service = event.to.to_string();
    let started = Instant::now();
    let call_id = format!(
        "{}-{}-{}",
        std::process::id(),
        now_ms(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let payload = Bytes::from(postcard::to_allocvec(&event).map_err(|e| RemoteCallError::Backend {
        service: service.clone(),
        source: e.into(),
    })?);
    let mut backoff = Duration::from_millis(5);
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(RemoteCallError::NoResponders { service });
        }
        let mut headers = HeaderMap::new();
        headers.insert(SHAPE, shape_of::<Event>().as_str());
        headers.insert(DEADLINE, (now_ms() + left.as_millis() as u64).to_string().as_str());
        headers.insert(CALL_ID, call_id.as_str());
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(payload.clone())
            .timeout(Some(left));
        match client.send_request(subject(&service), request).await {
            Ok(message) => return decode_reply(&service, &message),
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                tokio::time::sleep(backoff.min(timeout.saturating_sub(started.elapsed()))).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(e) if e.kind() == RequestErrorKind::TimedOut => return Err(RemoteCallError::Timeout { service }),
            Err(e) => {
                return Err(RemoteCallError::Backend {
                    service,
                    source: e.into(),
                });
            }
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
    if shape.as_deref() != Some(shape_of::<Reply>().as_str()) {
        return Err(bad(format!("shape {shape:?}, expected {}", shape_of::<Reply>())));
    }
    postcard::from_bytes(&message.payload).map_err(|e| bad(e.to_string()))
}

/// Answers already given, by call id, until a while after their deadline.
#[derive(Default)]
struct Answered {
    replies: HashMap<String, (Instant, Reply)>,
}

impl Answered {
    fn get(&mut self, id: &str) -> Option<Reply> {
        let now = Instant::now();
        self.replies.retain(|_, (until, _)| *until > now);
        self.replies.get(id).map(|(_, reply)| reply.clone())
    }
}

/// This node's services, served to the other nodes; dropping it stops serving them.
pub struct Serving {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Serves `services` of `kernel` (its `Event`/`Reply` services, sync or async) to the other
/// nodes over `client`, on the current tokio runtime.
pub async fn serve(
    kernel: &Kernel,
    client: &async_nats::Client,
    services: &[&str],
) -> Result<Serving, RemoteCallError> {
    let mut tasks = Vec::new();
    let answered = Arc::new(Mutex::new(Answered::default()));
    for service in services {
        let mut subscription = client
            .queue_subscribe(subject(service), "mk".to_owned())
            .await
            .map_err(|e| RemoteCallError::Backend {
                service: (*service).to_owned(),
                source: e.into(),
            })?;
        let (kernel, client, answered) = (kernel.clone(), client.clone(), Arc::clone(&answered));
        tasks.push(tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(message) = subscription.next().await {
                let (kernel, client, answered) = (kernel.clone(), client.clone(), Arc::clone(&answered));
                tokio::spawn(async move { answer(&kernel, &client, &answered, message).await });
            }
        }));
    }
    Ok(Serving { tasks })
}

async fn answer(
    kernel: &Kernel,
    client: &async_nats::Client,
    answered: &Mutex<Answered>,
    message: async_nats::Message,
) {
    let Some(reply_to) = message.reply.clone() else { return };
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let call_id = header(CALL_ID);
    let remaining = header(DEADLINE)
        .and_then(|d| d.parse::<u64>().ok())
        .map(|deadline| Duration::from_millis(deadline.saturating_sub(now_ms())))
        .unwrap_or(Duration::from_secs(30));
    let reply = if header(SHAPE).as_deref() != Some(shape_of::<Event>().as_str()) {
        Reply::new(
            code::UNSUPPORTED,
            "Unsupported request shape",
            format!("expected {}", shape_of::<Event>()),
        )
    } else if let Some(done) = call_id
        .as_deref()
        .and_then(|id| answered.lock().unwrap_or_else(PoisonError::into_inner).get(id))
    {
        done // a retry of a call already answered here: the same answer, not a second handling
    } else {
        let reply = match postcard::from_bytes::<Event>(&message.payload) {
            Err(e) => Reply::new(code::UNSUPPORTED, "Undecodable request", e.to_string()),
            Ok(event) => {
                let to = event.to.to_string();
                // Local services only: a name served here but not registered must not bounce
                // back out to the network.
                let local = async {
                    match kernel.async_handle(&to) {
                        Ok(handle) => handle.call(event).await,
                        Err(error) => Err(error),
                    }
                };
                match tokio::time::timeout(remaining, local).await {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(error)) => error.to_reply(),
                    Err(_) => return, // past the caller's deadline: it has gone
                }
            }
        };
        if let Some(id) = call_id {
            // Kept past the deadline, so that a late retry is not handled twice.
            let until = Instant::now() + remaining + Duration::from_secs(30);
            answered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .replies
                .insert(id, (until, reply.clone()));
        }
        reply
    };
    let Ok(payload) = postcard::to_allocvec(&reply) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(SHAPE, shape_of::<Reply>().as_str());
    if let Err(error) = client
        .publish_with_headers(reply_to, headers, Bytes::from(payload))
        .await
    {
        tracing::warn!(%error, "could not send a reply to another node");
    }
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
