//! Decoding a state from segments handed out one at a time (a segmented envelope being opened),
//! so that each segment can be freed once decoded and a large state is never in memory twice,
//! encoded and decoded.

use postcard::de_flavors::Flavor;
use typed_arena::Arena;

use super::encoding::HEADER_LEN;
use super::{CodecError, Migratable, StateError, StateTag};

/// Gathering buffer kept between values (larger ones are freed): two segments' worth.
const SCRATCH_KEPT: usize = 2 << 20;

/// Where a streamed state's plaintext comes from: its segments in order, each already
/// authenticated when handed out.
pub trait SegmentSource {
    /// The next segment's bytes, or `None` at the end — or when a segment failed to open: the
    /// source keeps the reason. The decoder then reports the input as cut short, unless the
    /// failure came after the state was read (while it checks that nothing follows), so a
    /// caller must ask its source for a failure after decoding, whatever the result.
    fn next_segment(&mut self) -> Option<Vec<u8>>;
    /// Bytes in the segments not yet handed out, if known (a source fed while it is read does
    /// not know).
    fn remaining(&self) -> Option<usize>;
}

/// The body of an encoded state, after its tag: bytes in memory, or segments still to come.
#[doc(hidden)]
pub enum Body<'a, 's> {
    /// The whole body.
    Bytes(&'a [u8]),
    /// A body read segment by segment.
    Stream(&'a mut Stream<'s>),
}

/// The reading position in a segmented body.
#[doc(hidden)]
pub struct Stream<'s> {
    source: &'s mut dyn SegmentSource,
    current: Vec<u8>,
    at: usize,
    /// Bytes gathered across a segment boundary.
    scratch: Vec<u8>,
    /// The input's length as far as pre-allocation goes when the source does not know it:
    /// `None` for a source of any origin (the budget's default for an unknown input),
    /// `usize::MAX` for this process's own encoding (only the budget's memory cap applies).
    unknown_as: Option<usize>,
}

impl<'s> Stream<'s> {
    fn new(source: &'s mut dyn SegmentSource) -> Self {
        Self {
            source,
            current: Vec::new(),
            at: 0,
            scratch: Vec::new(),
            unknown_as: None,
        }
    }

    /// Bytes not read yet, at most (`usize::MAX` when the source does not know).
    fn left(&self) -> usize {
        let here = self.current.len() - self.at;
        self.source
            .remaining()
            .map_or(usize::MAX, |rest| here.saturating_add(rest))
    }

    /// Reads to the end (every segment is still opened, so authenticated) and counts the bytes.
    fn rest(&mut self) -> usize {
        self.scratch = Vec::new();
        let mut count = self.current.len() - self.at;
        self.at = self.current.len();
        while let Some(segment) = self.source.next_segment() {
            count += segment.len();
        }
        count
    }

    /// Moves to the next non-empty segment (the previous one is freed here).
    fn advance(&mut self) -> bool {
        while self.at == self.current.len() {
            match self.source.next_segment() {
                Some(segment) => {
                    self.current = segment;
                    self.at = 0;
                }
                None => return false,
            }
        }
        true
    }

    #[inline]
    fn pop(&mut self) -> Option<u8> {
        // The common case: the current segment has the byte.
        if let Some(&byte) = self.current.get(self.at) {
            self.at += 1;
            return Some(byte);
        }
        if !self.advance() {
            return None;
        }
        let byte = self.current[self.at];
        self.at += 1;
        Some(byte)
    }

    /// The next `n` bytes: borrowed from the segment if it holds them, else gathered. A lying
    /// length cannot make it allocate: it refuses more than the bytes left when the source knows
    /// them, and otherwise the gathering grows only with the bytes that actually arrive.
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.left() {
            return None;
        }
        if self.current.len() - self.at >= n {
            let start = self.at;
            self.at += n;
            return Some(&self.current[start..start + n]);
        }
        // A long value gathered before is not kept for the rest of the decoding.
        if self.scratch.capacity() > SCRATCH_KEPT {
            self.scratch = Vec::new();
        }
        self.scratch.clear();
        self.scratch.reserve(n.min(self.current.len() - self.at + SCRATCH_KEPT));
        while self.scratch.len() < n {
            if !self.advance() {
                return None;
            }
            let k = (n - self.scratch.len()).min(self.current.len() - self.at);
            self.scratch.extend_from_slice(&self.current[self.at..self.at + k]);
            self.at += k;
        }
        Some(&self.scratch)
    }
}

/// postcard's view of a [`Stream`]. Bytes a type wants to borrow for the whole decoding (it
/// deserializes with `deserialize_str` or `deserialize_bytes`: `String`, `Vec<u8>` and
/// `serde_bytes` do not, some types from other crates do) are copied into `arena`, which lives
/// as long as the decoding does: such fields cost their size again until the state is decoded.
struct StreamFlavor<'de, 's> {
    stream: &'de mut Stream<'s>,
    arena: &'de Arena<u8>,
}

impl<'de, 's: 'de> Flavor<'de> for StreamFlavor<'de, 's> {
    type Remainder = usize;
    type Source = ();

    fn pop(&mut self) -> postcard::Result<u8> {
        self.stream.pop().ok_or(postcard::Error::DeserializeUnexpectedEnd)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.stream.left()).filter(|left| *left != usize::MAX)
    }

    fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        let bytes = self.stream.take(ct).ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        Ok(self.arena.alloc_extend(bytes.iter().copied()))
    }

    fn try_take_n_temp<'a>(&'a mut self, ct: usize) -> postcard::Result<&'a [u8]>
    where
        'de: 'a,
    {
        self.stream.take(ct).ok_or(postcard::Error::DeserializeUnexpectedEnd)
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.stream.rest())
    }
}

/// Decodes a state of any version in `T`'s chain from `source`, upgrading as needed, with the
/// same checks as [`decode`](super::decode): a tag, a known version and fingerprint, nothing
/// after the body.
pub fn decode_segments<T: Migratable>(source: &mut dyn SegmentSource) -> Result<T, StateError> {
    decode_stream::<T>(Stream::new(source))
}

impl Stream<'_> {
    /// [`decode_segments`] of an encoding this process made and authenticated (a replacement's
    /// pipelined crossing, sealed under the kernel's own key as the old version's `Serialize`
    /// wrote it), whose length is not known until its last segment: the helpers that
    /// pre-allocate by the input's length (`hash_map`, `bulk_btree_map`) reserve what the
    /// encoding claims, up to the budget's memory cap, as they do for a whole encoding, instead
    /// of the few thousand elements allowed for an input of unknown origin.
    pub(crate) fn decode_own<T: Migratable>(source: &mut dyn SegmentSource) -> Result<T, StateError> {
        let mut stream = Stream::new(source);
        stream.unknown_as = Some(usize::MAX);
        decode_stream::<T>(stream)
    }
}

fn decode_stream<T: Migratable>(mut stream: Stream<'_>) -> Result<T, StateError> {
    let tag = stream
        .take(HEADER_LEN)
        .ok_or(StateError::Truncated { len: 0 })
        .and_then(StateTag::split)?
        .0;
    super::encoding::decode_body::<T>(tag, Body::Stream(&mut stream))
}

/// Decodes `T` exactly from the rest of `stream`: nothing may follow.
pub(super) fn decode_exact_stream<T: Migratable>(stream: &mut Stream<'_>) -> Result<T, StateError> {
    let arena = Arena::new();
    // Pre-allocation is bounded by the bytes left when the source knows them; otherwise the
    // budget's default for an unknown input applies.
    let known = stream.source.remaining().map(|_| stream.left()).or(stream.unknown_as);
    let flavor = StreamFlavor { stream, arena: &arena };
    let mut deserializer = postcard::Deserializer::from_flavor(flavor);
    let mut deserialize = || super::depth::deserialize::<T, _>(&mut deserializer);
    let value = match known {
        Some(left) => super::budget::with_input_len(left, &mut deserialize),
        None => deserialize(),
    };
    let value = value.map_err(super::encoding::bounded_error::<T>)?;
    let decode_error = |error| StateError::Decode {
        ty: T::TYPE_NAME,
        version: T::VERSION,
        source: CodecError(error),
    };
    let extra = deserializer.finalize().map_err(decode_error)?;
    if extra != 0 {
        return Err(StateError::TrailingBytes {
            ty: T::TYPE_NAME,
            version: T::VERSION,
            extra,
        });
    }
    Ok(value)
}
