//! Pre-copy (see [`state::precopy`](crate::state::precopy)): the `#[precopy]` map crosses in
//! rounds while the old version serves, and only the last changes and the rest of the state
//! cross in the pause.

use std::time::{Duration, Instant};

use super::transit::{self, Crossing, decode_failed};
use super::{Direction, ReplaceError, Step, guarded};
use crate::boxed::ServiceFault;
use crate::runtime::error::Status;
use crate::runtime::kernel::Shared;
use crate::runtime::slot::{HeldSlot, Plumbing};
use crate::seal::Sealer;
use crate::state::precopy::{self, Entries, FINAL_CHANGES, MAX_ROUNDS, PrecopyReceiver};
use crate::state::{HEADER_LEN, Migratable, StateTag};

/// Entries are sealed and upgraded in batches of about this many encoded bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// What crossed before the pause.
pub(crate) struct Precopied<T> {
    receiver: Box<dyn PrecopyReceiver<T>>,
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

/// Holds the slot for the pause (`hold` takes it). Before that, if the old and the new state
/// both pre-copy and the service runs, carries the map across in rounds, each starting with
/// the slot held for an instant.
pub(super) fn hold_for_pause<T: Migratable, E: HeldSlot>(
    shared: &Shared,
    service: &str,
    direction: Direction,
    hold: &mut dyn FnMut() -> Result<E, ReplaceError>,
) -> Result<(E, Option<Precopied<T>>), ReplaceError> {
    let entered = hold()?;
    if !T::PRECOPY || direction == Direction::Rollback || entered.status() != Status::Running {
        return Ok((entered, None));
    }
    let Some(old) = entered.plumbing() else {
        return Ok((entered, None));
    };
    let tag = old.state_tag();
    let (Some(source), Some(receiver)) = (old.precopy_source(), T::precopy_receiver(tag.version)) else {
        return Ok((entered, None));
    };
    let mut precopied = Precopied {
        receiver,
        tag,
        identity: source.identity(),
        bytes: 0,
        rounds: 0,
        paused_at: Instant::now(),
        retired: Vec::new(),
    };
    let mut entries = source.begin();
    drop(entered);
    loop {
        precopied.rounds += 1;
        let sent = entries.count();
        if let Err(error) = carry(shared, service, &*entries, &mut precopied) {
            abandon(hold, precopied.identity);
            return Err(error);
        }
        precopied.retired.push(entries);
        let entered = hold()?;
        let Some(source) = source_of(entered.plumbing(), precopied.identity) else {
            // Another map took its place: what crossed is not this one's.
            return Ok((entered, None));
        };
        let changed = source.changed();
        tracing::debug!(round = precopied.rounds, sent, changed, "pre-copy round");
        if changed <= FINAL_CHANGES || changed >= sent || precopied.rounds >= MAX_ROUNDS {
            precopied.paused_at = Instant::now();
            return Ok((entered, Some(precopied)));
        }
        entries = source.next_round();
    }
}

/// In the pause: the last changes cross, then the rest of the state with the map written
/// empty, through the version chain; the map that crossed takes the empty one's place.
/// `None` when the conversion touched the map (or anything else stops the entries from
/// being put back): the caller then crosses the whole state, stop-the-world.
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
    let last = source.finish();
    let in_pause = last.count();
    carry(shared, service, &*last, &mut precopied)?;
    let (address, _) = precopied.identity;
    let (crossing, touched) = precopy::converting(|| {
        precopy::exporting(address, || {
            transit::transit::<T>(shared, service, false, old, generation)
        })
    });
    let mut crossing = match crossing {
        Ok(crossing) if !touched => crossing,
        Ok(_) | Err(_) if touched => {
            tracing::warn!(
                service,
                "the state's conversion read its #[precopy] map; crossing the whole state in the pause"
            );
            return Ok(None);
        }
        Ok(_) => return Ok(None),
        // Not the map's doing: the whole crossing will meet it again and report it.
        Err(error) => {
            tracing::debug!(%error, "the pre-copied crossing failed; crossing the whole state");
            return Ok(None);
        }
    };
    let report = Report {
        rounds: precopied.rounds,
        entries: precopied.receiver.entries(),
        in_pause,
        paused_at: precopied.paused_at,
        pause: Duration::ZERO,
        retired: std::mem::take(&mut precopied.retired),
    };
    let bytes = precopied.bytes;
    if !precopied.receiver.install(&mut crossing.state) {
        tracing::warn!(
            service,
            "the state's conversion did not carry its #[precopy] map with PrecopyMap::upgrade; \
             crossing the whole state in the pause"
        );
        return Ok(None);
    }
    tracing::debug!(service, rounds = report.rounds, in_pause, bytes, "pre-copied");
    crossing.len += bytes;
    Ok(Some((crossing, report)))
}

/// The old instance's `#[precopy]` map, if it is the one the rounds started with.
fn source_of(old: Option<&dyn Plumbing>, identity: (usize, u64)) -> Option<&dyn precopy::PrecopySource> {
    old?.precopy_source().filter(|source| source.identity() == identity)
}

/// After a failed round: the old version stops recording its writes.
fn abandon<E: HeldSlot>(hold: &mut dyn FnMut() -> Result<E, ReplaceError>, identity: (usize, u64)) {
    match hold() {
        Ok(entered) => {
            if let Some(source) = source_of(entered.plumbing(), identity) {
                source.abandon();
            }
        }
        Err(error) => {
            tracing::warn!(%error, "the old version records its writes until its next replacement");
        }
    }
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
