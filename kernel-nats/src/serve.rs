//! The serving side of calls between nodes: one subscription per service (queue group `mk`, so
//! one node answers each call), each request answered from the local kernel, each answer
//! recorded by call id.
//!
//! A [`Server`] can be *drained*: it stops taking requests, finishes every one it took, and
//! gives back its record of answers — the first step of a handover.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use kernel_core::store::StoreError;
use kernel_core::{Event, Kernel, LifecycleError, Reply, code};
use tokio::sync::{mpsc, oneshot};

use crate::answers::{Answers, MAX_CALL_ID, Seen, now_ms};
use crate::ownership::Claim;
use crate::wire::code::HANDLED_NOT_SAVED;
use crate::wire::{CALL_ID, DEADLINE, SHAPE, event_shape, reply_shape, retry_subject, subject};

/// The queue group every serving node joins: NATS hands each request to one member.
const QUEUE: &str = "mk";

/// The message of the 503 answering a call whose write-through save was fenced off.
const FENCED_OFF: &str = "Not handled: the service moved to another node";

/// When a request carries no deadline (a caller that is not ours).
const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// How one service is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServeMode {
    /// Save the service's state (a fenced write through the kernel's store) after every handled
    /// request and before its reply: a reply then never announces a change a crash could lose.
    pub(crate) write_through: bool,
}

/// One service served to the other nodes.
pub(crate) struct Server {
    service: String,
    answers: Arc<Answers>,
    stop: Option<oneshot::Sender<()>>,
    receiving: tokio::task::JoinHandle<()>,
    /// Each answering task holds a clone of the sender: when all are gone, nothing is in flight.
    in_flight: Option<mpsc::Sender<()>>,
    all_done: mpsc::Receiver<()>,
}

impl Server {
    /// Subscribes to `service`'s subject and answers from `kernel`, with `answers` as the record
    /// (empty, or moved from the previous owner).
    pub(crate) async fn start(
        kernel: &Kernel,
        client: &async_nats::Client,
        service: &str,
        answers: Arc<Answers>,
        mode: ServeMode,
        claim: Option<Arc<Claim>>,
    ) -> Result<Self, async_nats::SubscribeError> {
        let subscription = client.queue_subscribe(subject(service), QUEUE.to_owned()).await?;
        // Retries reach every node serving under a claim; only the valid owner answers them.
        let retries = match claim {
            Some(_) => Some(client.subscribe(retry_subject(service)).await?),
            None => None,
        };
        let (stop, stopped) = oneshot::channel();
        let (in_flight, all_done) = mpsc::channel(1);
        let receiving = tokio::spawn(receive(
            Answering {
                kernel: kernel.clone(),
                client: client.clone(),
                service: service.to_owned(),
                answers: Arc::clone(&answers),
                mode,
                claim,
                _in_flight: in_flight.clone(),
            },
            subscription,
            retries,
            stopped,
        ));
        Ok(Self {
            service: service.to_owned(),
            answers,
            stop: Some(stop),
            receiving,
            in_flight: Some(in_flight),
            all_done,
        })
    }

    /// The service.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// The record of answers (shared: answers still being given land in it).
    pub(crate) fn answers(&self) -> Arc<Answers> {
        Arc::clone(&self.answers)
    }

    /// Stops taking requests, answers every request already taken, and returns the record of
    /// answers. A request the server routed here as the subscription ended may be dropped by
    /// the client library; its caller retries it with the same call id after an attempt's
    /// timeout, and the record (moved to the next owner) answers it once.
    pub(crate) async fn drain(mut self) -> Arc<Answers> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.receiving).await;
        self.in_flight = None;
        // `None` once every answering task (each holding a sender) has ended.
        while self.all_done.recv().await.is_some() {}
        Arc::clone(&self.answers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.receiving.abort();
    }
}

/// What an answering task needs.
#[derive(Clone)]
struct Answering {
    kernel: Kernel,
    client: async_nats::Client,
    service: String,
    answers: Arc<Answers>,
    mode: ServeMode,
    /// The claim this node serves the service under, if any: a request is not handled once it
    /// is no longer valid (the caller retries, and the next owner answers).
    claim: Option<Arc<Claim>>,
    /// Held, never sent on: [`Server::drain`] waits until every clone is dropped.
    _in_flight: mpsc::Sender<()>,
}

/// Takes requests (calls, and retries when serving under a claim) until told to stop, then
/// drains the subscriptions: the messages the client already holds are answered too.
async fn receive(
    answering: Answering,
    mut calls: async_nats::Subscriber,
    mut retries: Option<async_nats::Subscriber>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            message = calls.next() => match message {
                Some(message) => answer_soon(&answering, message).await,
                None => return,
            },
            message = next_retry(&mut retries) => match message {
                Some(message) => answer_soon(&answering, message).await,
                None => retries = None, // ended (the connection closed): calls end too
            },
        }
    }
    if let Err(error) = calls.drain().await {
        tracing::warn!(service = answering.service, %error, "draining a subscription failed");
    }
    if let Some(retries) = retries.as_mut()
        && let Err(error) = retries.drain().await
    {
        tracing::warn!(service = answering.service, %error, "draining a subscription failed");
    }
    while let Some(message) = calls.next().await {
        answer_soon(&answering, message).await;
    }
    if let Some(mut retries) = retries {
        while let Some(message) = retries.next().await {
            answer_soon(&answering, message).await;
        }
    }
}

/// The next retry, or never when there is no subscription to retries.
async fn next_retry(retries: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match retries {
        Some(retries) => retries.next().await,
        None => std::future::pending().await,
    }
}

/// Answers on this task if the answer is ready at once (the common case: a free service, a
/// quick handler), else on a task of its own, so that a slow call never holds up the next
/// request. Handing every request to a new task would cost a wake-up on another worker thread
/// per call (about 12 µs on a 2-core machine, a third of a loopback round trip).
async fn answer_soon(answering: &Answering, message: async_nats::Message) {
    let answering = answering.clone();
    let mut answering_task = Box::pin(async move { answer(&answering, message).await });
    let done = std::future::poll_fn(|cx| std::task::Poll::Ready(answering_task.as_mut().poll(cx).is_ready())).await;
    if !done {
        tokio::spawn(answering_task);
    }
}

fn header<'m>(message: &'m async_nats::Message, name: &str) -> Option<&'m str> {
    message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str())
}

async fn answer(answering: &Answering, message: async_nats::Message) {
    let Some(reply_to) = message.reply.clone() else { return };
    if answering.claim.as_ref().is_some_and(|claim| !claim.is_valid()) {
        // No longer ours (a claim that expired while this node was paused or cut off): not
        // handled, not answered. The caller sends it again after its attempt's timeout (at most
        // `calls::MAX_ATTEMPT`), to every node serving under a claim, and the next owner answers.
        return;
    }
    let deadline_ms = header(&message, DEADLINE)
        .and_then(|d| d.parse::<u64>().ok())
        .unwrap_or_else(|| now_ms() + DEFAULT_DEADLINE.as_millis() as u64);
    let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
    let reply = if header(&message, SHAPE) != Some(event_shape()) {
        Reply::new(
            code::UNSUPPORTED,
            "Unsupported request shape",
            format!("expected {}", event_shape()),
        )
    } else {
        match header(&message, CALL_ID) {
            None => handle(answering, &message.payload).await,
            Some(id) if id.len() > MAX_CALL_ID => Reply::new(
                code::UNSUPPORTED,
                "Call id too long",
                format!("{} bytes, at most {MAX_CALL_ID}", id.len()),
            ),
            Some(id) => match answering.answers.begin(id) {
                Seen::Full => Reply::new(
                    code::UNAVAILABLE,
                    "Too many calls answered recently",
                    "not handled; try again later",
                ),
                // A retry of a call answered here (or by the previous owner): the same answer.
                Seen::Answered(reply) => reply,
                Seen::InFlight(mut first) => {
                    match tokio::time::timeout(remaining, first.wait_for(Option::is_some)).await {
                        Ok(Ok(reply)) => reply.clone().unwrap_or_default(),
                        _ => return, // the caller's deadline passed: it has gone
                    }
                }
                Seen::New(waiting) => {
                    let reply = handle(answering, &message.payload).await;
                    answering.answers.finish(id, deadline_ms, &reply, waiting);
                    reply
                }
            },
        }
    };
    publish(answering, reply_to, &reply).await;
}

/// Decodes and handles one request on the local kernel. The handling is not cut short at the
/// caller's deadline: a request the service took is driven to completion and its answer
/// recorded, so that a late retry is answered, not handled again.
async fn handle(answering: &Answering, payload: &[u8]) -> Reply {
    let event = match postcard::from_bytes::<Event>(payload) {
        Err(e) => return Reply::new(code::UNSUPPORTED, "Undecodable request", e.to_string()),
        Ok(event) => event,
    };
    if event.to != answering.service.as_str() {
        return Reply::new(
            code::NOT_FOUND,
            "Wrong subject",
            format!("a request for `{}` on the subject of `{}`", event.to, answering.service),
        );
    }
    // Local services only: a name served here but not registered must not bounce back out to
    // the network.
    let reply = match answering.kernel.async_handle(&answering.service) {
        Ok(handle) => handle.call(event).await,
        Err(error) => Err(error),
    };
    let reply = match reply {
        Ok(reply) => reply,
        Err(error) => return error.to_reply(),
    };
    if answering.mode.write_through {
        let (kernel, name) = (answering.kernel.clone(), answering.service.clone());
        if let Err(error) = kernel.blocking(move |k| k.checkpoint_service(&name)).await {
            if let LifecycleError::Save {
                source: StoreError::Conflict { .. },
                ..
            } = error
            {
                // Fenced off: another node took the service over and wrote its state. This
                // node's copy, and the call's effect on it, will never be saved: the call did
                // not take effect in the system, and sending it again is safe.
                tracing::error!(
                    service = answering.service,
                    %error,
                    "write-through save fenced off: the call's effect is lost"
                );
                return Reply::new(code::UNAVAILABLE, FENCED_OFF, error.to_string());
            }
            tracing::error!(
                service = answering.service,
                %error,
                reply_code = reply.code,
                "write-through save failed after the call was handled: answered as handled, not saved"
            );
            return not_saved(reply);
        }
    }
    reply
}

/// The answer to a call that was handled but whose write-through save failed: the call took
/// effect (in the service's memory), so it must not read as "not handled" — a caller that
/// retried it as a new call would apply it twice. A success keeps the service's message and
/// data under [`HANDLED_NOT_SAVED`]; any other reply is the service's own, as it is without
/// write-through. Like every answer, it is recorded under the call id: a retry gets it again.
fn not_saved(reply: Reply) -> Reply {
    if reply.code != code::OK {
        return reply;
    }
    Reply::new(HANDLED_NOT_SAVED, reply.message, reply.data)
}

async fn publish(answering: &Answering, reply_to: async_nats::Subject, reply: &Reply) {
    let Ok(payload) = postcard::to_allocvec(reply) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(SHAPE, reply_shape());
    if let Err(error) = answering
        .client
        .publish_with_headers(reply_to, headers, Bytes::from(payload))
        .await
    {
        tracing::warn!(service = answering.service, %error, "could not send a reply to another node");
    }
}
