//! Step 2's crossing: export → encode → (seal → open) → decode/upgrade, the old instance only
//! read.
//!
//! A small state is encoded straight into its envelope and decrypted where it lies, never
//! copied. A larger one (an encoding over
//! [`PIPELINED_ABOVE`](crate::seal::stream::PIPELINED_ABOVE), 256 KiB) crosses pipelined: it is
//! sealed in segments of [`CROSSING_SEGMENT_SIZE`](crate::seal::stream::CROSSING_SEGMENT_SIZE)
//! (64 KiB) as it is encoded, and each segment goes through a short channel to a thread that
//! opens and decodes it at once. The encoding and the decoding then run at the same time on two
//! cores, so the crossing takes about the slower of the two rather than their sum; and the old
//! state and the new one are in memory with a few segments between them, never the whole
//! encoding. (Saved states keep their own threshold, 4 MiB, and segment size, 1 MiB:
//! `Segmenting::SAVED`; so does a crossing on a machine with one core, where there is nothing
//! to overlap on.)

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use super::{ReplaceError, Step, guarded};
use crate::boxed::ServiceFault;
use crate::runtime::kernel::Shared;
use crate::runtime::lifecycle::{ExportError, Plumbing};
use crate::seal::writer::{SegmentSink, Segmenting, StateWriter, Written};
use crate::seal::{SealError, Sealer};
use crate::state::{self, Migratable, StateError, StateTag};

/// Sealed segments on their way to the decoding thread: with the one it reads ahead, the one it
/// decodes and the one being sealed, at most eleven segments (704 KiB) are in memory at once.
/// Deep enough that a decoding briefly slower than the encoding (or descheduled) does not stop
/// it; the decoding is the slower side for most states, and then the channel is simply full.
const PIPE_DEPTH: usize = 8;

/// The state that crossed, decoded as the new version's type.
pub(super) struct Crossing<T> {
    pub(super) state: T,
    pub(super) sealed: bool,
    /// The encoding's length.
    pub(super) len: usize,
}

/// Export → encode → (seal → open) → decode/upgrade into `T`.
pub(super) fn transit<T: Migratable>(
    shared: &Shared,
    service: &str,
    downgrade: bool,
    old: &dyn Plumbing,
    generation: u64,
) -> Result<Crossing<T>, ReplaceError> {
    let sealer = shared
        .crossing_sealer()
        .map_err(|error| ReplaceError::new(service, Step::Seal, error))?;
    std::thread::scope(|scope| {
        let mut pipe = Pipe::<T> {
            scope,
            shared,
            sealer,
            service,
            sender: None,
            decoder: None,
            sent: 0,
            hung_up: false,
            span: tracing::Span::current(),
        };
        let written = seal(sealer, service, old, downgrade, generation, &mut pipe);
        pipe.finish(written)
    })
}

/// Exports `old`'s state into `writer`, each failure the step it happened at.
pub(super) fn export(
    service: &str,
    old: &dyn Plumbing,
    downgrade: bool,
    writer: &mut StateWriter<'_>,
) -> Result<StateTag, ReplaceError> {
    let exported = old.export(downgrade, writer);
    if let Some(failure) = writer.take_failure() {
        return Err(ReplaceError::new(service, Step::Seal, failure));
    }
    exported.map_err(|e| match e {
        ExportError::Handler(source) => ReplaceError::new(service, Step::Export, source),
        ExportError::Downgrade(source) => ReplaceError::new(service, Step::Downgrade, source),
        ExportError::Encode(source) => ReplaceError::new(service, Step::Encode, source),
    })
}

/// Exports and seals: a whole envelope, or segments sent down `pipe`.
fn seal(
    sealer: &Sealer,
    service: &str,
    old: &dyn Plumbing,
    downgrade: bool,
    generation: u64,
    pipe: &mut dyn SegmentSink,
) -> Result<(StateTag, Written), ReplaceError> {
    let seal_failed = |e| ReplaceError::new(service, Step::Seal, e);
    let mut writer =
        StateWriter::sealed_with(sealer, service, generation, pipe, Segmenting::crossing()).map_err(seal_failed)?;
    let tag = export(service, old, downgrade, &mut writer)?;
    let written = writer.finish(tag).map_err(seal_failed)?;
    Ok((tag, written))
}

/// Decodes a whole encoding, a migration's failure being the step `Upgrade`.
fn decode_bytes<T: Migratable>(service: &str, bytes: &[u8]) -> Result<T, ReplaceError> {
    guarded(service, Step::Decode, || state::decode::<T>(bytes))?.map_err(|e| decode_failed(service, e))
}

pub(super) fn decode_failed(service: &str, error: StateError) -> ReplaceError {
    match error {
        StateError::Migration(source) => ReplaceError::new(service, Step::Upgrade, source),
        other => ReplaceError::new(service, Step::Decode, other),
    }
}

/// Where a segmented envelope's parts go: the first (its header) starts the decoding thread,
/// the others are sent to it.
struct Pipe<'scope, 'env, T> {
    scope: &'scope Scope<'scope, 'env>,
    shared: &'env Shared,
    sealer: &'env Sealer,
    service: &'env str,
    sender: Option<SyncSender<Vec<u8>>>,
    decoder: Option<ScopedJoinHandle<'scope, Result<(T, StateTag), ReplaceError>>>,
    /// Parts sent so far (the header is part 0).
    sent: usize,
    /// The decoding thread stopped reading before the end (it failed).
    hung_up: bool,
    /// The replacement's span, taken before any user code ran.
    span: tracing::Span,
}

impl<T: Migratable> SegmentSink for Pipe<'_, '_, T> {
    fn put(&mut self, mut part: Vec<u8>) -> Result<Option<Vec<u8>>, SealError> {
        self.sent += 1;
        let Some(sender) = &self.sender else {
            let (sender, receiver) = sync_channel(PIPE_DEPTH);
            let (sealer, service, span) = (self.sealer, self.service, self.span.clone());
            // The decoding runs user code (Deserialize, the upgrades): in the replacement's span,
            // and in its chain of calls, so that a conversion calling back into a service the
            // replacement holds is refused, as it is when a small state decodes on this thread.
            let chain = crate::runtime::caller::caller_token();
            let decoder = std::thread::Builder::new()
                .name("mk-decode".into())
                .spawn_scoped(self.scope, move || {
                    let _chain = crate::runtime::caller::Scope::enter(chain);
                    span.in_scope(|| decode_channel::<T>(sealer, service, part, receiver))
                })
                .map_err(|e| SealError::BadSegments(format!("no thread to decode on: {e}")))?;
            self.decoder = Some(decoder);
            self.sender = Some(sender);
            return Ok(None);
        };
        if self.sent == 2 {
            self.shared.persistence().inject_transit_fault(&mut part);
        }
        sender.send(part).map(|()| None).map_err(|_| {
            self.hung_up = true;
            SealError::BadSegments("the decoding stopped before the last segment".into())
        })
    }
}

impl<T: Migratable> Pipe<'_, '_, T> {
    /// The sealing side is done (or failed): closes the channel, waits for the decoding, and
    /// says which failure counts — the decoding's if it stopped first, else the sealing side's.
    fn finish(mut self, written: Result<(StateTag, Written), ReplaceError>) -> Result<Crossing<T>, ReplaceError> {
        drop(self.sender.take());
        let decoded = self.decoder.take().map(|thread| {
            thread.join().unwrap_or_else(|_| {
                Err(ReplaceError::new(
                    self.service,
                    Step::Decode,
                    ServiceFault::Panicked {
                        message: "the decoding thread panicked".into(),
                    },
                ))
            })
        });
        let service = self.service;
        match (written, decoded) {
            (Ok((tag, Written::Whole(mut blob))), None) => {
                self.shared.persistence().inject_transit_fault(&mut blob);
                let (buffer, range, _) = self
                    .sealer
                    .open_in_place(service, Some(tag), blob)
                    .map_err(|e| ReplaceError::new(service, Step::Open, e))?;
                let len = range.len();
                let state = decode_bytes::<T>(service, &buffer[range])?;
                Ok(Crossing {
                    state,
                    sealed: true,
                    len,
                })
            }
            (Ok((tag, Written::Segmented { len })), Some(decoded)) => {
                let (state, sealed_as) = decoded?;
                if sealed_as != tag {
                    let error = SealError::WrongState {
                        expected: tag,
                        found: sealed_as,
                    };
                    return Err(ReplaceError::new(service, Step::Open, error));
                }
                Ok(Crossing {
                    state,
                    sealed: true,
                    len,
                })
            }
            (Err(_), Some(Err(decoding))) if self.hung_up => Err(decoding),
            (Err(sealing), _) => Err(sealing),
            (Ok(_), _) => Err(ReplaceError::new(
                service,
                Step::Seal,
                SealError::BadSegments("the envelope was neither whole nor segmented".into()),
            )),
        }
    }
}

/// The decoding thread: opens the header, then each segment as it arrives, decoding as it goes.
/// Returns the state and the tag the header names.
fn decode_channel<T: Migratable>(
    sealer: &Sealer,
    service: &str,
    header: Vec<u8>,
    receiver: Receiver<Vec<u8>>,
) -> Result<(T, StateTag), ReplaceError> {
    let open_failed = |e| ReplaceError::new(service, Step::Open, e);
    let (mut segments, tag) = sealer.open_channel(service, header, receiver).map_err(open_failed)?;
    let decoded = guarded(service, Step::Decode, || state::Stream::decode_own::<T>(&mut segments))?;
    if let Some(failure) = segments.take_failure() {
        return Err(open_failed(failure));
    }
    let state = decoded.map_err(|e| decode_failed(service, e))?;
    Ok((state, tag))
}
