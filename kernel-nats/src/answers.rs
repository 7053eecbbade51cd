//! The record of calls a service answered (and is answering), by call id: what makes a retried
//! call be answered once, on this node and — moved with the service at a handover — on the
//! next.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kernel_core::Reply;
use kernel_core::seal::{SealError, Sealer};
use kernel_core::state::{DataModelType, HEADER_LEN, NamedType, NamedValue, Schema, StateTag, fingerprint};
use tokio::sync::watch;

/// How long past a call's deadline its answer is kept: covers clocks that disagree between the
/// caller and the serving nodes by up to this much.
pub(crate) const KEPT_PAST_DEADLINE: Duration = Duration::from_secs(30);

/// The farthest deadline a call may carry (a later one is cut to this): bounds how long an
/// answer is kept, whatever a caller claims.
pub(crate) const MAX_DEADLINE: Duration = Duration::from_secs(600);

/// The longest call id kept (ours are 22 characters).
pub(crate) const MAX_CALL_ID: usize = 128;

/// How many answers one service keeps at most; past it, new calls are refused (503) rather
/// than answered without a record that makes their retries safe.
pub(crate) const MAX_ANSWERS: usize = 200_000;

/// The plaintext of one sealed part of a moved record stays under this (a message must fit the
/// server's `max_payload`, 1 MiB by default).
const PART_BYTES: usize = 512 << 10;

/// Milliseconds since the Unix epoch (wall clock: deadlines cross nodes).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a call id has come to.
pub(crate) enum Seen {
    /// Never seen: the caller handles it, then calls [`Answers::finish`].
    New(watch::Sender<Option<Reply>>),
    /// The record is full: refuse the call (it was not handled).
    Full,
    /// Answered: the same answer again.
    Answered(Reply),
    /// Being handled (a retry arrived while the first attempt runs): wait for its answer.
    InFlight(watch::Receiver<Option<Reply>>),
}

/// One service's record. Entries expire [`KEPT_PAST_DEADLINE`] after their call's deadline.
#[derive(Default)]
pub(crate) struct Answers {
    inner: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    /// Call id → (keep until, Unix ms; the answer).
    done: HashMap<String, (u64, Reply)>,
    /// The same ids by when they expire, soonest first: expiry costs O(log n) per answer, not
    /// a scan of the record per call.
    expiry: BinaryHeap<Reverse<(u64, String)>>,
    in_flight: HashMap<String, watch::Receiver<Option<Reply>>>,
}

impl Record {
    fn keep(&mut self, id: String, until: u64, reply: Reply) {
        self.expiry.push(Reverse((until, id.clone())));
        self.done.insert(id, (until, reply));
    }

    /// Drops the answers whose keeping time has passed.
    fn expire(&mut self, now: u64) {
        while let Some(Reverse((until, _))) = self.expiry.peek() {
            if *until > now {
                break;
            }
            let Some(Reverse((until, id))) = self.expiry.pop() else {
                break;
            };
            // Only if not kept longer since (the same id answered again).
            if self.done.get(&id).is_some_and(|(kept, _)| *kept == until) {
                self.done.remove(&id);
            }
        }
    }
}

/// The record as it travels between nodes (sealed with the kernel's sealer, bound to the
/// service's name): the answers still within their keeping time.
#[derive(serde::Serialize, serde::Deserialize)]
struct Moved {
    /// How many parts the record has (each sealed on its own, part `i` bound to its index).
    parts: u32,
    /// (call id, keep until in Unix ms, the answer).
    done: Vec<(String, u64, Reply)>,
}

impl Schema for Moved {
    const SCHEMA: &'static NamedType = &NamedType {
        name: "AnswersMoved",
        ty: &DataModelType::Struct(&[
            &NamedValue {
                name: "parts",
                ty: <u32 as Schema>::SCHEMA,
            },
            &NamedValue {
                name: "done",
                ty: <Vec<(String, u64, Reply)> as Schema>::SCHEMA,
            },
        ]),
    };
}

/// The version of [`Moved`]'s encoding.
const MOVED_VERSION: u32 = 1;

fn moved_tag() -> StateTag {
    StateTag {
        version: MOVED_VERSION,
        fingerprint: fingerprint(<Moved as Schema>::SCHEMA, MOVED_VERSION),
    }
}

/// The name part `part` of the record is sealed under: the service's and the part's, so that
/// one service's record (or part) cannot be passed off as another's.
fn sealed_name(service: &str, part: usize) -> String {
    format!("{service}.answers.{part}")
}

impl Answers {
    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks `id` up, marking it in flight when it is new.
    pub(crate) fn begin(&self, id: &str) -> Seen {
        let mut record = self.record();
        let now = now_ms();
        record.expire(now);
        if let Some((_, reply)) = record.done.get(id) {
            return Seen::Answered(reply.clone());
        }
        if let Some(waiting) = record.in_flight.get(id) {
            return Seen::InFlight(waiting.clone());
        }
        if record.done.len() + record.in_flight.len() >= MAX_ANSWERS {
            return Seen::Full;
        }
        let (tx, rx) = watch::channel(None);
        record.in_flight.insert(id.to_owned(), rx);
        Seen::New(tx)
    }

    /// Records the answer to `id`, kept until `deadline_ms` plus [`KEPT_PAST_DEADLINE`], and
    /// wakes the retries waiting for it.
    pub(crate) fn finish(&self, id: &str, deadline_ms: u64, reply: &Reply, waiting: watch::Sender<Option<Reply>>) {
        let deadline_ms = deadline_ms.min(now_ms().saturating_add(MAX_DEADLINE.as_millis() as u64));
        let until = deadline_ms.saturating_add(KEPT_PAST_DEADLINE.as_millis() as u64);
        let mut record = self.record();
        record.in_flight.remove(id);
        record.keep(id.to_owned(), until, reply.clone());
        let _ = waiting.send(Some(reply.clone()));
    }

    /// How many answers are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.record().done.len()
    }

    /// The record sealed for the next owner of `service`, in parts that each fit a message.
    /// Call it once no call is in flight.
    pub(crate) fn seal(&self, sealer: &Sealer, service: &str) -> Result<Vec<Vec<u8>>, SealError> {
        let now = now_ms();
        let mut parts: Vec<Vec<(String, u64, Reply)>> = vec![Vec::new()];
        let mut size = 0;
        for (id, (until, reply)) in self.record().done.iter().filter(|(_, (until, _))| *until > now) {
            let entry = id.len() + reply.message.len() + reply.data.len() + 16;
            if size + entry > PART_BYTES && !parts[parts.len() - 1].is_empty() {
                parts.push(Vec::new());
                size = 0;
            }
            size += entry;
            let last = parts.len() - 1;
            parts[last].push((id.clone(), *until, reply.clone()));
        }
        let count = parts.len() as u32;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, done)| {
                // An encoded state: its tag, then the body.
                let plain = moved_tag().to_bytes().to_vec();
                let plain = postcard::to_extend(&Moved { parts: count, done }, plain)
                    .map_err(|_| SealError::InconsistentPlaintext)?;
                sealer.seal(&sealed_name(service, i), moved_tag(), &plain)
            })
            .collect()
    }

    /// Opens part `part` of the record a previous owner of `service` sealed, adding its answers
    /// to this record; returns how many parts the record has.
    pub(crate) fn open_part(
        &self,
        sealer: &Sealer,
        service: &str,
        part: usize,
        blob: &[u8],
    ) -> Result<usize, SealError> {
        let plain = sealer.open_state(&sealed_name(service, part), moved_tag(), blob)?;
        let body = plain.get(HEADER_LEN..).ok_or(SealError::InconsistentPlaintext)?;
        let moved: Moved = postcard::from_bytes(body).map_err(|_| SealError::InconsistentPlaintext)?;
        let now = now_ms();
        let mut record = self.record();
        for (id, until, reply) in moved.done.into_iter().filter(|(_, until, _)| *until > now) {
            record.keep(id, until, reply);
        }
        Ok(moved.parts as usize)
    }
}

#[cfg(test)]
mod tests {
    use kernel_core::seal::{Algorithm, Key, Keyring};

    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(Keyring::new(1, Key::generate(Algorithm::XChaCha20Poly1305).unwrap()))
    }

    #[test]
    fn a_retry_gets_the_first_answer_and_the_record_moves_sealed() {
        let answers = Answers::default();
        let Seen::New(tx) = answers.begin("c1") else {
            panic!("c1 is new")
        };
        assert!(
            matches!(answers.begin("c1"), Seen::InFlight(_)),
            "a retry while in flight waits"
        );
        answers.finish("c1", now_ms() + 1_000, &Reply::ok("done", "1"), tx);
        assert!(matches!(answers.begin("c1"), Seen::Answered(r) if r.data == "1"));

        let sealer = sealer();
        let parts = answers.seal(&sealer, "counter").unwrap();
        assert_eq!(parts.len(), 1);
        let moved = Answers::default();
        assert_eq!(moved.open_part(&sealer, "counter", 0, &parts[0]).unwrap(), 1);
        assert!(matches!(moved.begin("c1"), Seen::Answered(r) if r.data == "1"));
        assert!(matches!(moved.begin("c2"), Seen::New(_)));
        // Bound to the service and the part: not another's, not another part.
        assert!(Answers::default().open_part(&sealer, "other", 0, &parts[0]).is_err());
        assert!(Answers::default().open_part(&sealer, "counter", 1, &parts[0]).is_err());
    }

    #[test]
    fn a_large_record_moves_in_parts_that_fit_a_message() {
        let answers = Answers::default();
        let big = "x".repeat(100_000);
        for i in 0..20 {
            let id = format!("call-{i}");
            let Seen::New(tx) = answers.begin(&id) else { panic!() };
            answers.finish(&id, now_ms() + 60_000, &Reply::ok("done", big.clone()), tx);
        }
        let sealer = sealer();
        let parts = answers.seal(&sealer, "svc").unwrap();
        assert!(parts.len() >= 4, "2 MB of answers in {} parts", parts.len());
        assert!(
            parts.iter().all(|p| p.len() < 1 << 20),
            "each part fits a 1 MiB message"
        );
        let moved = Answers::default();
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(moved.open_part(&sealer, "svc", i, part).unwrap(), parts.len());
        }
        assert_eq!(moved.len(), 20);
    }

    #[test]
    fn a_far_deadline_is_cut_and_the_record_is_bounded() {
        let answers = Answers::default();
        let Seen::New(tx) = answers.begin("far") else { panic!() };
        answers.finish("far", u64::MAX, &Reply::ok("done", ""), tx);
        let until = answers.record().done["far"].0;
        let bound = now_ms() + (MAX_DEADLINE + KEPT_PAST_DEADLINE).as_millis() as u64;
        assert!(until <= bound, "kept until {until}, past {bound}");
    }

    #[test]
    fn answers_past_their_keeping_time_are_dropped() {
        let answers = Answers::default();
        let Seen::New(tx) = answers.begin("old") else { panic!() };
        // A deadline long past: kept only until deadline + KEPT_PAST_DEADLINE, also past.
        answers.finish("old", 1, &Reply::ok("done", ""), tx);
        assert_eq!(answers.len(), 1, "kept until the next lookup");
        assert!(matches!(answers.begin("old"), Seen::New(_)), "expired: handled as new");
        assert_eq!(answers.len(), 0);
    }
}
