//! How a node keeps its claims and records.

use std::time::Duration;

/// How a [`Node`](super::Node) keeps its claims and records.
#[derive(Debug, Clone)]
#[must_use]
pub struct NodeOptions {
    pub(super) claims_bucket: String,
    pub(super) answers_bucket: String,
    pub(super) claim_ttl: Duration,
    pub(super) answers_ttl: Duration,
    pub(super) write_through: bool,
    pub(super) poll: Duration,
    pub(super) drain_timeout: Duration,
    pub(super) replicas: usize,
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
    ///
    /// It also bounds how long a call waits for an owner that stopped answering without leaving
    /// (paused by SIGSTOP or a stall, cut off from the server while its connection lingers):
    /// about this time to live, plus the next owner's take-over (claim, restore, fencing write,
    /// start), plus one attempt of the call ([`calls::MAX_ATTEMPT`](crate::calls::MAX_ATTEMPT),
    /// 1 s) — if a node is waiting in [`Node::take_over`](super::Node::take_over) for it and the
    /// call's deadline is longer. The stalled owner stops answering calls the moment its claim
    /// could have expired, by its own clock, even if it wakes up.
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// Save each service's state after every handled request, before its reply (default off):
    /// a reply never announces a change that a crash of this node could lose, at the price of a
    /// store write per request (see docs/PERFORMANCE.md).
    ///
    /// If that save fails, the call was still handled: its effect is in the service's memory
    /// (made durable by the next save that succeeds, lost if this node crashes or loses the
    /// service first). A successful reply is then answered with code
    /// [`calls::code::HANDLED_NOT_SAVED`](crate::calls::code::HANDLED_NOT_SAVED) (202) and the
    /// service's message and data, never as "not handled"; another reply is the service's own.
    /// That answer is recorded under the call id like any other, so a retry of the same call is
    /// answered again, not handled again. A caller must not send such a call again as a new
    /// call: its effect would be applied twice. A save refused because another node has taken
    /// the service over (a fenced write) is the exception: that effect will never be saved,
    /// and the call is answered 503 "Not handled: the service moved to another node".
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
