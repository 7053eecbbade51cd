//! Pre-copy (see [`state::precopy`](crate::state::precopy)): the `#[precopy]` map crosses in
//! rounds while the old version serves, and only the last changes and the rest of the state
//! cross in the pause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::transit::{self, Crossing, decode_failed};
use super::{Direction, ReplaceError, Step, guarded};
use crate::boxed::ServiceFault;
use crate::runtime::error::Status;
use crate::runtime::kernel::Shared;
use crate::runtime::slot::{HeldSlot, Plumbing};
use crate::seal::writer::{SegmentSink, Segmenting, StateWriter, Written};
use crate::seal::{SealError, Sealer};
use crate::state::precopy::{self, Entries, FINAL_CHANGES, MAX_ROUNDS, PrecopyReceiver, PrecopySource};
use crate::state::{HEADER_LEN, Migratable, StateTag};

/// Entries are sealed and upgraded in batches of about this many encoded bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// What crossed before the pause.
pub(crate) struct Precopied<T> {
    receiver: Box<dyn PrecopyReceiver<T>>,
    /// This pre-copy, as the old map knows it: while it lives, the map records its writes;
    /// once dropped (the replacement ended, whichever way), the map stops at its next write.
    listener: Arc<()>,
    /// The old version's state type, which the entries were written as.
    tag: StateTag,
    /// The map's address in the old instance and its id, to find it again (and notice a
    /// handler that put another map in its place).
    identity: (usize, u64),
    /// Encoded bytes that crossed.
    bytes: usize,
    rounds: u32,
    /// When the slot was taken for the pause.
    paused_at: Instant,
    /// The snapshots of the rounds so far. Dropping one frees the entries the service has
    /// replaced since (its writes copy the paths they change), often many thousands of small
    /// allocations; the allocator then tidies its free lists at the next large allocation,
    /// which would fall in the pause. So they are dropped after it, with the old instance.
    retired: Vec<Box<dyn Entries>>,
}

/// How a pre-copy went, for [`Notice::Precopied`](crate::Notice::Precopied).
pub(crate) struct Report {
    pub(crate) rounds: u32,
    pub(crate) entries: usize,
    pub(crate) in_pause: usize,
    /// When the slot was taken for the pause.
    pub(crate) paused_at: Instant,
    /// How long it was held, once it is released.
    pub(crate) pause: Duration,
    /// The rounds' snapshots, to drop once the slot is released (see [`Precopied::retired`]).
    pub(crate) retired: Vec<Box<dyn Entries>>,
}

/// Carries the `#[precopy]` map across in rounds, if the old and the new state both pre-copy
/// and the service runs, each round starting with the slot held (`hold`) for an instant. Ends
/// with the slot released; the map records its writes until [`finish`] takes the last ones.
/// `None`: nothing crossed, the replacement crosses stop-the-world.
///
/// It runs before the replacement takes the kernel's lifecycle lock: a handler that starts or
/// stops a service meanwhile is not kept waiting (holding its own slot) for the whole copy, and
/// other services' lifecycles go on. What may change meanwhile is checked at each hold and in
/// [`finish`]: another instance in the slot, another map in the field, or another pre-copy of
/// the map each make the replacement cross stop-the-world.
pub(super) fn copy_ahead<T: Migratable, E: HeldSlot>(
    shared: &Shared,
    service: &str,
    direction: Direction,
    hold: &mut dyn FnMut() -> Result<E, ReplaceError>,
) -> Result<Option<Precopied<T>>, ReplaceError> {
    if !T::PRECOPY || direction == Direction::Rollback {
        return Ok(None);
    }
    let listener = Arc::new(());
    let (mut precopied, mut entries) = {
        let entered = hold()?;
        let Some(old) = entered.plumbing().filter(|_| entered.status() == Status::Running) else {
            return Ok(None);
        };
        let tag = old.state_tag();
        let (Some(source), Some(receiver)) = (old.precopy_source(), T::precopy_receiver(tag)) else {
            return Ok(None);
        };
        let Some(entries) = source.begin(&listener) else {
            return Ok(None);
        };
        let precopied = Precopied {
            receiver,
            listener,
            tag,
            identity: source.identity(),
            bytes: 0,
            rounds: 0,
            paused_at: Instant::now(),
            retired: Vec::new(),
        };
        (precopied, entries)
    };
    loop {
        precopied.rounds += 1;
        let sent = entries.count();
        carry(shared, service, &*entries, &mut precopied)?;
        precopied.retired.push(entries);
        let entered = hold()?;
        let Some(source) = source_of(entered.plumbing(), precopied.identity) else {
            // Another map took its place: what crossed is not this one's.
            return Ok(None);
        };
        let Some(changed) = source.changed(&precopied.listener) else {
            return Ok(None);
        };
        tracing::debug!(round = precopied.rounds, sent, changed, "pre-copy round");
        if changed <= FINAL_CHANGES || changed >= sent || precopied.rounds >= MAX_ROUNDS {
            return Ok(Some(precopied));
        }
        let Some(next) = source.next_round(&precopied.listener) else {
            return Ok(None);
        };
        entries = next;
    }
}

impl<T> Precopied<T> {
    /// The pause begins now (the slot is held for it).
    pub(super) fn pausing(mut self) -> Self {
        self.paused_at = Instant::now();
        self
    }
}

/// In the pause: the last changes cross, then the rest of the state with the map written
/// empty; it is decoded as the old version, its map made a placeholder, and upgraded through
/// the chain; the entries that crossed take the placeholder's place. `None` when that cannot
/// give what a stop-the-world crossing would (the map was replaced, the conversion touched or
/// copied the placeholder, or failed): the caller then crosses the whole state.
pub(super) fn finish<T: Migratable>(
    shared: &Shared,
    service: &str,
    old: &dyn Plumbing,
    mut precopied: Precopied<T>,
    generation: u64,
) -> Result<Option<(Crossing<T>, Report)>, ReplaceError> {
    let Some(source) = source_of(Some(old), precopied.identity) else {
        return Ok(None);
    };
    let Some(last) = source.finish(&precopied.listener) else {
        return Ok(None);
    };
    let in_pause = last.count();
    carry(shared, service, &*last, &mut precopied)?;
    let state = match paused_crossing(shared, service, old, source, &*precopied.receiver, generation) {
        Ok(state) => state,
        Err(error) => {
            // The whole crossing meets a failure of its own again, and reports it.
            tracing::warn!(%error, service, "the pre-copied state's pause crossing failed; crossing the whole state");
            return Ok(None);
        }
    };
    let mut crossing = Crossing {
        state,
        sealed: true,
        len: precopied.bytes,
    };
    let report = Report {
        rounds: precopied.rounds,
        entries: precopied.receiver.entries(),
        in_pause,
        paused_at: precopied.paused_at,
        pause: Duration::ZERO,
        retired: std::mem::take(&mut precopied.retired),
    };
    if !precopied.receiver.install(&mut crossing.state) {
        tracing::warn!(
            service,
            "the state's conversion touched, copied or did not carry its #[precopy] map \
             (carry it with PrecopyMap::upgrade only); crossing the whole state in the pause"
        );
        return Ok(None);
    }
    tracing::debug!(
        service,
        rounds = report.rounds,
        in_pause,
        bytes = crossing.len,
        "pre-copied"
    );
    Ok(Some((crossing, report)))
}

/// The state without its map's entries: exported with the map written empty, sealed whole,
/// opened, and decoded and upgraded by the receiver, on this thread.
fn paused_crossing<T>(
    shared: &Shared,
    service: &str,
    old: &dyn Plumbing,
    source: &dyn PrecopySource,
    receiver: &dyn PrecopyReceiver<T>,
    generation: u64,
) -> Result<T, ReplaceError> {
    let sealer = shared
        .crossing_sealer()
        .map_err(|error| ReplaceError::new(service, Step::Seal, error))?;
    let seal_failed = |error| ReplaceError::new(service, Step::Seal, error);
    let whole = Segmenting {
        above: usize::MAX,
        ..Segmenting::CROSSING
    };
    let mut never = Unsegmented;
    let mut writer = StateWriter::sealed_with(sealer, service, generation, &mut never, whole).map_err(seal_failed)?;
    let (address, _) = source.identity();
    let tag = precopy::exporting(address, || transit::export(service, old, false, &mut writer))?;
    let Written::Whole(blob) = writer.finish(tag).map_err(seal_failed)? else {
        return Err(seal_failed(SealError::BadSegments(
            "a whole envelope went segmented".into(),
        )));
    };
    let (opened, range, _) = sealer
        .open_in_place(service, Some(tag), blob)
        .map_err(|error| ReplaceError::new(service, Step::Open, error))?;
    guarded(service, Step::Decode, || receiver.decode_paused(&opened[range]))?
        .map_err(|error| decode_failed(service, error))
}

/// The sink of a writer that never goes segmented.
struct Unsegmented;

impl SegmentSink for Unsegmented {
    fn put(&mut self, _: Vec<u8>) -> Result<Option<Vec<u8>>, SealError> {
        Err(SealError::BadSegments("the paused state is sealed whole".into()))
    }
}

/// The old instance's `#[precopy]` map, if it is the one the rounds started with.
fn source_of(old: Option<&dyn Plumbing>, identity: (usize, u64)) -> Option<&dyn PrecopySource> {
    old?.precopy_source().filter(|source| source.identity() == identity)
}

/// Encodes, seals, opens and upgrades `entries` into the new version's map, batch by batch.
fn carry<T>(
    shared: &Shared,
    service: &str,
    entries: &dyn Entries,
    precopied: &mut Precopied<T>,
) -> Result<(), ReplaceError> {
    let sealer = shared
        .crossing_sealer()
        .map_err(|error| ReplaceError::new(service, Step::Seal, error))?;
    let mut failure = None;
    let encoded = guarded(service, Step::Encode, || {
        entries.encode(&precopied.tag.to_bytes(), BATCH_BYTES, &mut |batch| match cross_batch(
            sealer,
            service,
            precopied.tag,
            batch,
            &mut *precopied.receiver,
        ) {
            Ok(()) => {
                precopied.bytes += batch.len() - HEADER_LEN;
                true
            }
            Err(error) => {
                failure = Some(error);
                false
            }
        })
    })?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    encoded.map_err(|error| ReplaceError::new(service, Step::Encode, ServiceFault::Error(Box::new(error))))
}

/// One batch (the old state's header, then entries): sealed and opened as any crossing is,
/// then decoded and upgraded entry by entry.
fn cross_batch<T>(
    sealer: &Sealer,
    service: &str,
    tag: StateTag,
    batch: &[u8],
    receiver: &mut dyn PrecopyReceiver<T>,
) -> Result<(), ReplaceError> {
    let sealed = sealer
        .seal_at(service, tag, 0, batch)
        .map_err(|error| ReplaceError::new(service, Step::Seal, error))?;
    let (opened, range, _) = sealer
        .open_in_place(service, Some(tag), sealed)
        .map_err(|error| ReplaceError::new(service, Step::Open, error))?;
    let entries = &opened[range.start + HEADER_LEN..range.end];
    guarded(service, Step::Upgrade, || receiver.absorb(entries))?.map_err(|error| decode_failed(service, error))
}
