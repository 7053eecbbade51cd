//! Writing a state's encoding straight into its envelope: whole (format version 2) while it is
//! at most a threshold's bytes, then in sealed segments (format version 3) handed to a sink one
//! by one, so a large state's encoding is never held whole beside the state. The threshold and
//! the segment size are [`Segmenting`]'s: [`SEGMENTED_ABOVE`] and [`SEGMENT_SIZE`] for an
//! envelope that may be saved, smaller ones for a replacement's crossing, whose segments are
//! decoded on another thread as they are sealed.

use std::io;

use super::sealer::SealBuffer;
use super::stream::{CROSSING_SEGMENT_SIZE, PIPELINED_ABOVE, SEGMENT_SIZE, SEGMENTED_ABOVE, SegmentCipher};
use super::{SealError, Sealer};
use crate::state::{HEADER_LEN, StateTag};

/// Where the parts of a segmented envelope go as they are sealed: first its header, then each
/// segment (ciphertext and tag) in order.
pub(crate) trait SegmentSink {
    /// Takes the next part; gives its buffer back if it did not keep it, for the next segment.
    fn put(&mut self, part: Vec<u8>) -> Result<Option<Vec<u8>>, SealError>;
}

/// When a sealing [`StateWriter`] goes segmented, and in segments of what size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segmenting {
    /// An encoding longer than this is sealed in segments.
    pub(crate) above: usize,
    /// Plaintext bytes per segment (a size [`check_segment_size`](super::stream::check_segment_size) accepts).
    pub(crate) size: u32,
}

impl Segmenting {
    /// An envelope that may be saved or sent: whole up to [`SEGMENTED_ABOVE`], then in
    /// segments of [`SEGMENT_SIZE`] (what `docs/FORMAT.md` describes and the fixtures hold).
    pub(crate) const SAVED: Self = Self {
        above: SEGMENTED_ABOVE,
        size: SEGMENT_SIZE,
    };
    /// A replacement's crossing, opened in the same process as it is sealed: segmented from
    /// [`PIPELINED_ABOVE`], in segments of [`CROSSING_SEGMENT_SIZE`], so that the decoding
    /// starts early and overlaps the encoding.
    pub(crate) const CROSSING: Self = Self {
        above: PIPELINED_ABOVE,
        size: CROSSING_SEGMENT_SIZE,
    };

    /// A replacement's crossing on this machine: [`CROSSING`](Self::CROSSING) where there are
    /// cores to overlap on, else [`SAVED`](Self::SAVED) — on one core the decoding thread only
    /// takes turns with the encoding, so only a state too large to hold encoded goes segmented.
    pub(crate) fn crossing() -> Self {
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
        if cores > 1 { Self::CROSSING } else { Self::SAVED }
    }
}

/// What a [`StateWriter`] wrote.
pub(crate) enum Written {
    /// A whole envelope (format version 2).
    Whole(Vec<u8>),
    /// A segmented envelope: its parts went to the sink. `len`: the encoding's length.
    Segmented { len: usize },
}

/// An encoding being written and sealed as it goes. Its `io::Write` errors stand for a
/// [`SealError`] that [`finish`](Self::finish) returns.
pub(crate) struct StateWriter<'a> {
    mode: Mode<'a>,
    failure: Option<SealError>,
    /// Plaintext bytes written.
    written: usize,
    /// The whole envelope's largest body, then the segments' size.
    above: usize,
    size: usize,
}

enum Mode<'a> {
    Plain(Vec<u8>),
    Whole {
        sealer: &'a Sealer,
        service: &'a str,
        generation: u64,
        buffer: SealBuffer,
        sink: &'a mut dyn SegmentSink,
    },
    Segmented {
        cipher: SegmentCipher,
        segment: Vec<u8>,
        sink: &'a mut dyn SegmentSink,
    },
    /// Between two modes, or after a failure.
    Failed,
}

impl<'a> StateWriter<'a> {
    /// A writer that only collects the encoding.
    pub(crate) fn plain() -> Self {
        Self {
            mode: Mode::Plain(Vec::new()),
            failure: None,
            written: 0,
            above: SEGMENTED_ABOVE,
            size: SEGMENT_SIZE as usize,
        }
    }

    /// A writer sealing for `service` at `generation` with `sealer`'s primary key; if the
    /// encoding grows past [`SEGMENTED_ABOVE`], its segments go to `sink`
    /// ([`Segmenting::SAVED`]).
    pub(crate) fn sealed(
        sealer: &'a Sealer,
        service: &'a str,
        generation: u64,
        sink: &'a mut dyn SegmentSink,
    ) -> Result<Self, SealError> {
        Self::sealed_with(sealer, service, generation, sink, Segmenting::SAVED)
    }

    /// [`sealed`](Self::sealed), going segmented as `segmenting` says.
    pub(crate) fn sealed_with(
        sealer: &'a Sealer,
        service: &'a str,
        generation: u64,
        sink: &'a mut dyn SegmentSink,
        segmenting: Segmenting,
    ) -> Result<Self, SealError> {
        super::stream::check_segment_size(segmenting.size)?;
        // Room for a small state up front; a larger one grows the buffer as it is encoded.
        let buffer = sealer.begin(service, generation, 256)?;
        Ok(Self {
            mode: Mode::Whole {
                sealer,
                service,
                generation,
                buffer,
                sink,
            },
            failure: None,
            written: 0,
            // The switch reads the tag from the whole envelope's body: it must be there.
            above: segmenting.above.max(HEADER_LEN),
            size: segmenting.size as usize,
        })
    }

    /// What a [`plain`](Self::plain) writer collected (nothing, for a sealing one).
    pub(crate) fn into_plain(self) -> Vec<u8> {
        match self.mode {
            Mode::Plain(bytes) => bytes,
            _ => Vec::new(),
        }
    }

    /// The tag at the start of a plain writer's bytes, if it has one.
    pub(crate) fn tag_written(&self) -> Option<StateTag> {
        match &self.mode {
            Mode::Plain(bytes) => StateTag::split(bytes).ok().map(|(tag, _)| tag),
            _ => None,
        }
    }

    /// Takes the sealing failure behind an `io::Error` this writer returned, if any.
    pub(crate) fn take_failure(&mut self) -> Option<SealError> {
        self.failure.take()
    }

    /// Ends the encoding of a state tagged `tag`: seals what is left.
    pub(crate) fn finish(self, tag: StateTag) -> Result<Written, SealError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        match self.mode {
            Mode::Plain(_) => Err(SealError::BadSegments("a plain writer seals nothing".into())),
            Mode::Whole { sealer, mut buffer, .. } => {
                buffer.set_state(tag);
                sealer.finish(buffer).map(Written::Whole)
            }
            Mode::Segmented {
                mut cipher,
                mut segment,
                sink,
            } => {
                cipher.seal(&mut segment, true)?;
                sink.put(segment)?;
                Ok(Written::Segmented { len: self.written })
            }
            Mode::Failed => Err(SealError::BadSegments("the writer failed before".into())),
        }
    }

    /// The envelope has grown past its threshold: writes a segmented header instead and
    /// seals the encoding so far in segments, keeping the last (1 to a segment's bytes) open.
    fn switch(&mut self) -> Result<(), SealError> {
        let Mode::Whole {
            sealer,
            service,
            generation,
            buffer,
            sink,
        } = std::mem::replace(&mut self.mode, Mode::Failed)
        else {
            return Ok(());
        };
        let (body, key_id, algorithm) = buffer.into_body();
        // The encoding starts with its tag (`state::encode_into` writes it first).
        let (state, _) =
            StateTag::split(&body[..HEADER_LEN.min(body.len())]).map_err(|_| SealError::InconsistentPlaintext)?;
        let size = self.size;
        // `sealed_with` checked the size, which therefore fits a u32.
        let (written, mut cipher) =
            sealer.segmented_header(service, state, generation, size as u32, key_id, algorithm)?;
        sink.put(written)?;
        // All but the last chunk are sealed now; the last stays open for what follows.
        let last_at = (body.len() - 1) / size * size;
        for chunk in body[..last_at].chunks(size) {
            let mut segment = Vec::with_capacity(size + super::envelope::TAG_LEN);
            segment.extend_from_slice(chunk);
            cipher.seal(&mut segment, false)?;
            sink.put(segment)?;
        }
        let mut segment = Vec::with_capacity(size + super::envelope::TAG_LEN);
        segment.extend_from_slice(&body[last_at..]);
        self.mode = Mode::Segmented { cipher, segment, sink };
        Ok(())
    }

    fn write_segmented(&mut self, mut data: &[u8]) -> Result<(), SealError> {
        let size = self.size;
        let Mode::Segmented { cipher, segment, sink } = &mut self.mode else {
            return Ok(());
        };
        while !data.is_empty() {
            if segment.len() == size {
                cipher.seal(segment, false)?;
                let given_back = sink.put(std::mem::take(segment))?;
                *segment = match given_back {
                    Some(mut buffer) => {
                        buffer.clear();
                        buffer
                    }
                    None => Vec::with_capacity(size + super::envelope::TAG_LEN),
                };
            }
            let take = (size - segment.len()).min(data.len());
            segment.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn fail(&mut self, error: SealError) -> io::Error {
        self.mode = Mode::Failed;
        // The first failure is the one to report (a Serialize may go on writing after it).
        self.failure.get_or_insert(error);
        io::Error::other("sealing the state failed")
    }
}

impl io::Write for StateWriter<'_> {
    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.written += data.len();
        // postcard writes a byte or a few at a time: the common cases first, one branch each.
        let (above, size) = (self.above, self.size);
        match &mut self.mode {
            Mode::Segmented { segment, .. } if segment.len() + data.len() <= size => {
                segment.extend_from_slice(data);
                return Ok(data.len());
            }
            Mode::Whole { buffer, .. } if buffer.body_len() + data.len() <= above => {
                buffer.body().extend_from_slice(data);
                return Ok(data.len());
            }
            Mode::Plain(bytes) => {
                bytes.extend_from_slice(data);
                return Ok(data.len());
            }
            _ => {}
        }
        self.write_slow(data).map_err(|error| self.fail(error))?;
        Ok(data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.write(data).map(drop)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StateWriter<'_> {
    /// A write that fills a segment, or takes the envelope past the segmenting threshold.
    #[cold]
    fn write_slow(&mut self, data: &[u8]) -> Result<(), SealError> {
        let above = self.above;
        match &mut self.mode {
            Mode::Plain(bytes) => {
                bytes.extend_from_slice(data);
                Ok(())
            }
            Mode::Whole { buffer, .. } => {
                // Only up to the threshold goes into the whole envelope (a single long string
                // is written at once: the rest goes straight into segments).
                let room = above.saturating_sub(buffer.body_len()).min(data.len());
                let (now, rest) = data.split_at(room);
                buffer.body().extend_from_slice(now);
                if rest.is_empty() {
                    return Ok(());
                }
                self.switch()?;
                self.write_segmented(rest)
            }
            Mode::Segmented { .. } => self.write_segmented(data),
            Mode::Failed => Err(SealError::BadSegments("the writer failed before".into())),
        }
    }
}
