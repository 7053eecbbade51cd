//! Segmented sealing (envelope format version 3): a large state sealed in segments, so that it
//! never has to be in memory whole, encoded and sealed, beside the state itself.
//!
//! The construction is the STREAM one of Hoffmann, Reyhanitabar, Rogaway and Vizár, as Tink's
//! streaming AEAD (AES-GCM-HKDF) uses it:
//!
//! - each envelope has a key of its own, derived with HKDF-SHA256 from the sealing key and a
//!   random 32-byte salt in the header (info: [`KDF_INFO`]), so segment nonces can never repeat
//!   across envelopes and the sealing key's nonce budget is spent once per envelope;
//! - segment `i` is sealed with the nonce `prefix ‖ i (u32, big endian) ‖ last`, where `prefix`
//!   is random (7 bytes, 19 for XChaCha20-Poly1305) and `last` is 1 for the final segment and 0
//!   otherwise, and with the whole header as associated data. That nonce is RustCrypto's
//!   [`aead_stream::StreamBE32`], which builds it here: this module cuts the body into segments,
//!   positions each and checks lengths, and leaves the nonces and the AEAD calls to that crate.
//!
//! So a segment cannot be moved, dropped, repeated or taken from another envelope, and cutting
//! the envelope at a segment boundary is caught: the new last segment was sealed as not last.
//! Every segment is authenticated before any of its bytes are used.

use std::sync::mpsc::Receiver;

use aead_stream::aead::array::ArraySize;
use aead_stream::aead::array::typenum::{U5, Unsigned as _};
use aead_stream::aead::{self, AeadCore, AeadInOut, Buffer, KeyInit};
use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::envelope::{SALT_LEN, TAG_LEN};
use super::{Algorithm, Key, SealError};
use crate::state::{HEADER_LEN, StateTag};

/// Plaintext bytes per segment in the envelopes this program writes: 1 MiB.
pub const SEGMENT_SIZE: u32 = 1 << 20;
/// A state whose encoding is longer than this is sealed in segments (format version 3); a
/// shorter one whole (format version 2), as before.
pub const SEGMENTED_ABOVE: usize = 4 << 20;
/// A replacement's state whose encoding is longer than this crosses pipelined: sealed in
/// segments of [`CROSSING_SEGMENT_SIZE`] as it is encoded, each opened and decoded on another
/// thread as it arrives. A shorter one crosses in one envelope, on the caller's thread: below
/// about 128 KiB a thread of its own costs more than the overlap saves (`docs/PERFORMANCE.md`,
/// "Pipelined crossing"). Only in-process crossings: what is saved or sent follows
/// [`SEGMENTED_ABOVE`].
pub const PIPELINED_ABOVE: usize = 256 << 10;
/// Plaintext bytes per segment of a pipelined crossing: small, so that the decoding starts
/// after the first 64 KiB are encoded rather than the first MiB (1 MiB segments were slower).
pub const CROSSING_SEGMENT_SIZE: u32 = 64 << 10;
/// The HKDF info string of an envelope's own key.
pub const KDF_INFO: &[u8] = b"microkernel segmented envelope v3";
/// The smallest and largest segment sizes a reader accepts (powers of two only).
const SEGMENT_SIZES: std::ops::RangeInclusive<u32> = (1 << 12)..=(1 << 24);

/// Refuses a segment size that is not a power of two from 4 KiB to 16 MiB.
pub(crate) fn check_segment_size(size: u32) -> Result<(), SealError> {
    if size.is_power_of_two() && SEGMENT_SIZES.contains(&size) {
        Ok(())
    } else {
        Err(SealError::BadSegmentSize(size))
    }
}

/// Length of the random nonce prefix: the nonce less the counter (4 bytes) and the flag (1).
pub(crate) fn prefix_len(algorithm: Algorithm) -> usize {
    algorithm.nonce_len() - 5
}

/// How a body of `body_len` bytes falls into segments of `size` plaintext bytes: the number of
/// segments and the length (with its tag) of the last. Refuses an empty body, a last segment
/// shorter than a tag, and an empty last segment after others (the writer never makes one).
pub(crate) fn segment_lengths(size: u32, body_len: usize) -> Result<(usize, usize), SealError> {
    let full = size as usize + TAG_LEN;
    if body_len < TAG_LEN {
        return Err(SealError::Truncated {
            len: body_len,
            need: TAG_LEN,
        });
    }
    let count = body_len.div_ceil(full);
    let last = body_len - (count - 1) * full;
    if last <= TAG_LEN && count > 1 {
        return Err(SealError::BadSegments(format!(
            "the last of {count} segments is {last} bytes, not more than a tag"
        )));
    }
    if last < TAG_LEN {
        return Err(SealError::BadSegments(format!(
            "the last segment is {last} bytes, shorter than a tag"
        )));
    }
    Ok((count, last))
}

/// HKDF's HMAC holds SHA-256 states keyed by the extracted key (the PRK), and `expand` clones
/// them: with sha2's `zeroize` feature, each is wiped when dropped. This fails to compile if that
/// feature is ever lost. (Temporaries inside hkdf, hmac and sha2 — the padded key block, the
/// output blocks — are theirs to wipe, and they do not.)
const _: fn() = || {
    fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    zeroized_on_drop::<Sha256>();
};

/// The STREAM of one envelope: the AEAD keyed with the envelope's own key, and the nonce prefix.
/// The AEADs zeroize their key schedules on drop (their `zeroize` feature); the prefix is public.
enum Stream {
    Aes128(Box<StreamBE32<Aes128Gcm>>),
    Aes256(Box<StreamBE32<Aes256Gcm>>),
    ChaCha(Box<StreamBE32<ChaCha20Poly1305>>),
    XChaCha(Box<StreamBE32<XChaCha20Poly1305>>),
}

/// The STREAM of AEAD `A` keyed with `secret`, its nonces starting with `prefix`.
fn stream_of<A>(secret: &[u8], prefix: &[u8]) -> Result<Box<StreamBE32<A>>, SealError>
where
    A: AeadInOut + KeyInit,
    A::NonceSize: std::ops::Sub<U5>,
    <<A as AeadCore>::NonceSize as std::ops::Sub<U5>>::Output: ArraySize,
{
    let aead = A::new_from_slice(secret).map_err(|_| SealError::Seal(secret.len()))?;
    let prefix = aead_stream::Nonce::<A, StreamBE32<A>>::try_from(prefix).map_err(|_| {
        SealError::BadSegments(format!(
            "a nonce prefix of {} bytes, not {}",
            prefix.len(),
            <A as AeadCore>::NonceSize::USIZE - 5
        ))
    })?;
    Ok(Box::new(StreamBE32::from_aead(aead, &prefix)))
}

impl Stream {
    /// The envelope's own STREAM: its key derived from the sealing key and the header's salt,
    /// its nonces starting with `prefix`.
    fn derive(key: &Key, salt: &[u8], prefix: &[u8]) -> Result<Self, SealError> {
        let algorithm = key.algorithm();
        let mut okm = Zeroizing::new(vec![0u8; algorithm.key_len()]);
        // `extract` rather than `new`, which drops the PRK unwiped: this copy is wiped here.
        let (mut prk, hkdf) = Hkdf::<Sha256>::extract(Some(salt), key.secret());
        prk.as_mut_slice().zeroize();
        hkdf.expand(KDF_INFO, &mut okm)
            .map_err(|_| SealError::Seal(okm.len()))?;
        Ok(match algorithm {
            Algorithm::Aes128Gcm => Stream::Aes128(stream_of(&okm, prefix)?),
            Algorithm::Aes256Gcm => Stream::Aes256(stream_of(&okm, prefix)?),
            Algorithm::ChaCha20Poly1305 => Stream::ChaCha(stream_of(&okm, prefix)?),
            Algorithm::XChaCha20Poly1305 => Stream::XChaCha(stream_of(&okm, prefix)?),
        })
    }

    /// Seals the message in `buffer` in place as segment `position` and appends its tag.
    fn seal(&self, position: u32, last: bool, aad: &[u8], buffer: &mut dyn Buffer) -> aead::Result<()> {
        match self {
            Stream::Aes128(s) => s.encrypt_in_place(position, last, aad, buffer),
            Stream::Aes256(s) => s.encrypt_in_place(position, last, aad, buffer),
            Stream::ChaCha(s) => s.encrypt_in_place(position, last, aad, buffer),
            Stream::XChaCha(s) => s.encrypt_in_place(position, last, aad, buffer),
        }
    }

    /// Opens segment `position` (ciphertext, then tag) in `buffer` in place if its tag
    /// authenticates it, and cuts the tag off.
    fn open(&self, position: u32, last: bool, aad: &[u8], buffer: &mut dyn Buffer) -> aead::Result<()> {
        match self {
            Stream::Aes128(s) => s.decrypt_in_place(position, last, aad, buffer),
            Stream::Aes256(s) => s.decrypt_in_place(position, last, aad, buffer),
            Stream::ChaCha(s) => s.decrypt_in_place(position, last, aad, buffer),
            Stream::XChaCha(s) => s.decrypt_in_place(position, last, aad, buffer),
        }
    }
}

/// A segment where it lies: its first `len` bytes are the message, and the tag is written (or
/// read) right after them, within the slice, so sealing and opening move nothing.
struct InPlace<'a> {
    bytes: &'a mut [u8],
    len: usize,
}

impl AsRef<[u8]> for InPlace<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl AsMut<[u8]> for InPlace<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

impl Buffer for InPlace<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> aead::Result<()> {
        let end = self
            .len
            .checked_add(other.len())
            .filter(|&end| end <= self.bytes.len())
            .ok_or(aead::Error)?;
        self.bytes[self.len..end].copy_from_slice(other);
        self.len = end;
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// Seals or opens the segments of one envelope, in order.
pub(crate) struct SegmentCipher {
    stream: Stream,
    key_id: u32,
    /// The whole header: every segment's associated data.
    header: Vec<u8>,
    next: u64,
}

impl SegmentCipher {
    /// The cipher of the envelope whose header (all of it, written or parsed) is `header`, its
    /// key derived from `key` and the header's `salt`, its nonces starting with `prefix`.
    pub(crate) fn new(key: &Key, key_id: u32, header: Vec<u8>, salt: &[u8], prefix: &[u8]) -> Result<Self, SealError> {
        Ok(Self {
            stream: Stream::derive(key, salt, prefix)?,
            key_id,
            header,
            next: 0,
        })
    }

    /// The index of the next segment.
    fn next_index(&self) -> u64 {
        self.next
    }

    /// Segment `index`'s position in the STREAM: its 32-bit counter.
    fn position(index: u64) -> Result<u32, SealError> {
        u32::try_from(index).map_err(|_| SealError::BadSegments("more than 2^32 segments".into()))
    }

    /// Seals segment `index` held in `segment` (its plaintext, then room for the tag) in place.
    fn seal_segment(&self, index: u64, last: bool, segment: &mut [u8]) -> Result<(), SealError> {
        let len = segment.len() - TAG_LEN;
        let position = Self::position(index)?;
        let mut buffer = InPlace { bytes: segment, len };
        self.stream
            .seal(position, last, &self.header, &mut buffer)
            .map_err(|_| SealError::Seal(len))
    }

    /// Seals the next segment: encrypts `segment` in place and appends its tag.
    pub(crate) fn seal(&mut self, segment: &mut Vec<u8>, last: bool) -> Result<(), SealError> {
        segment.resize(segment.len() + TAG_LEN, 0);
        self.seal_segment(self.next, last, segment)?;
        self.next += 1;
        Ok(())
    }

    /// Opens the next segment (ciphertext and tag) in place; returns its plaintext's length.
    pub(crate) fn open(&mut self, segment: &mut [u8], last: bool) -> Result<usize, SealError> {
        let position = Self::position(self.next)?;
        let failed = SealError::SegmentAuthentication {
            key_id: self.key_id,
            segment: self.next,
        };
        if segment.len() < TAG_LEN {
            return Err(SealError::BadSegments(format!(
                "segment {} is shorter than a tag",
                self.next
            )));
        }
        let len = segment.len();
        let mut buffer = InPlace { bytes: segment, len };
        self.stream
            .open(position, last, &self.header, &mut buffer)
            .map_err(|_| failed)?;
        let plain = buffer.len;
        self.next += 1;
        Ok(plain)
    }
}

/// Seals `buffer` (the plaintext) in place into the segmented envelope `header` ‖ segments,
/// with segments of `size` bytes: the buffer grows by the header and a tag per segment and
/// nothing else is allocated, so sealing a large state to save it needs no second copy. The
/// segments are moved right, the last first, each onto bytes already moved.
pub(crate) fn seal_in_place(
    cipher: &mut SegmentCipher,
    size: usize,
    header: &[u8],
    buffer: &mut Vec<u8>,
) -> Result<(), SealError> {
    let plain = buffer.len();
    let count = plain.div_ceil(size).max(1);
    buffer.resize(header.len() + plain + TAG_LEN * count, 0);
    for i in (0..count).rev() {
        let from = i * size..((i + 1) * size).min(plain);
        let at = header.len() + i * (size + TAG_LEN);
        let len = from.len();
        buffer.copy_within(from, at);
        cipher.seal_segment(i as u64, i + 1 == count, &mut buffer[at..at + len + TAG_LEN])?;
    }
    buffer[..header.len()].copy_from_slice(header);
    Ok(())
}

/// Seals `plaintext` into a new segmented envelope `header` ‖ segments, with segments of
/// `size` bytes: each segment is copied once, next to the one before, and sealed there.
pub(crate) fn seal_copy(
    cipher: &mut SegmentCipher,
    size: usize,
    header: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let count = plaintext.len().div_ceil(size).max(1);
    let mut out = Vec::with_capacity(header.len() + plaintext.len() + TAG_LEN * count);
    out.extend_from_slice(header);
    for (i, chunk) in plaintext.chunks(size).enumerate() {
        let at = out.len();
        out.extend_from_slice(chunk);
        out.extend_from_slice(&[0; TAG_LEN]);
        cipher.seal_segment(i as u64, i + 1 == count, &mut out[at..])?;
    }
    Ok(out)
}

/// Opens the segments of a whole envelope in place: each is authenticated and its plaintext
/// moved left over the header and tags before it. Returns the plaintext's length, at the start
/// of `blob`.
pub(crate) fn open_in_place(
    cipher: &mut SegmentCipher,
    size: usize,
    blob: &mut [u8],
    body_at: usize,
) -> Result<usize, SealError> {
    let (count, _) = segment_lengths(size as u32, blob.len() - body_at)?;
    let mut plain = 0;
    for i in 0..count {
        let at = body_at + i * (size + TAG_LEN);
        let end = (at + size + TAG_LEN).min(blob.len());
        let len = cipher.open(&mut blob[at..end], i + 1 == count)?;
        blob.copy_within(at..at + len, plain);
        plain += len;
    }
    Ok(plain)
}

/// The random parts of a new segmented header: salt and nonce prefix.
pub(crate) fn fresh_salt_and_prefix(
    algorithm: Algorithm,
    fill: impl Fn(&mut [u8]) -> Result<(), SealError>,
) -> Result<([u8; SALT_LEN], Vec<u8>), SealError> {
    let mut salt = [0u8; SALT_LEN];
    fill(&mut salt)?;
    let mut prefix = vec![0u8; prefix_len(algorithm)];
    fill(&mut prefix)?;
    Ok((salt, prefix))
}

/// The segments of an opened envelope, handed out one at a time as they are authenticated, for
/// a decoder to read from while the rest are still sealed.
pub(crate) struct OpenSegments {
    cipher: SegmentCipher,
    /// The state the header names: the plaintext must begin with its tag.
    state: StateTag,
    /// The segments to come: each is freed once decoded.
    sealed: Parts,
    /// Plaintext bytes in the segments not yet handed out, if known.
    remaining: Option<usize>,
    /// Why a segment could not be opened, if one could not.
    failure: Option<SealError>,
    /// Plaintext bytes per segment.
    size: usize,
}

/// The sealed segments still to open, as a sealing thread sends them; the channel closes after
/// the last. One is read ahead, to know whether the one before it is the last.
struct Parts {
    receiver: Receiver<Vec<u8>>,
    ahead: Option<Vec<u8>>,
}

impl Parts {
    /// The next sealed segment, and whether it is the last.
    fn next(&mut self) -> Option<(Vec<u8>, bool)> {
        let segment = self.ahead.take().or_else(|| self.receiver.recv().ok())?;
        self.ahead = self.receiver.recv().ok();
        Some((segment, self.ahead.is_none()))
    }
}

impl OpenSegments {
    /// The segments of the envelope whose cipher is `cipher` as they arrive on `receiver`
    /// (each its ciphertext and tag; the channel closes after the last): their lengths and
    /// contents are checked as they are read.
    pub(crate) fn from_channel(cipher: SegmentCipher, size: u32, state: StateTag, receiver: Receiver<Vec<u8>>) -> Self {
        Self {
            cipher,
            state,
            sealed: Parts { receiver, ahead: None },
            remaining: None,
            failure: None,
            size: size as usize,
        }
    }

    /// Why a segment could not be opened, if one could not.
    pub(crate) fn take_failure(&mut self) -> Option<SealError> {
        self.failure.take()
    }

    fn open_next(&mut self) -> Result<Option<Vec<u8>>, SealError> {
        let Some((mut segment, last)) = self.sealed.next() else {
            return Ok(None);
        };
        let full = self.size + TAG_LEN;
        if segment.len() > full || (!last && segment.len() != full) || segment.len() <= TAG_LEN {
            return Err(SealError::BadSegments(format!(
                "segment {} is {} bytes",
                self.cipher.next_index(),
                segment.len()
            )));
        }
        let first = self.cipher.next_index() == 0;
        let plain = self.cipher.open(&mut segment, last)?;
        segment.truncate(plain);
        // The plaintext starts with the state's tag, which must be the one the header names.
        if first && segment.get(..HEADER_LEN) != Some(&self.state.to_bytes()[..]) {
            return Err(SealError::InconsistentPlaintext);
        }
        self.remaining = self.remaining.map(|r| r - plain);
        Ok(Some(segment))
    }
}

impl crate::state::SegmentSource for OpenSegments {
    fn next_segment(&mut self) -> Option<Vec<u8>> {
        if self.failure.is_some() {
            return None;
        }
        match self.open_next() {
            Ok(segment) => segment,
            Err(error) => {
                self.failure = Some(error);
                None
            }
        }
    }

    fn remaining(&self) -> Option<usize> {
        self.remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::envelope::Header;

    /// The key of the golden fixtures in `tests/fixtures/` (a test key, as `tests/fixtures.rs`).
    const TEST_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// Each golden segmented fixture, opened, sealed again with its own header, salt and nonce
    /// prefix, is the same bytes, by each of the three ways this module seals: the nonces and
    /// the AEAD calls `aead-stream` makes are the ones the fixtures were written with.
    #[test]
    fn golden_segmented_fixtures_seal_again_byte_for_byte() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/structural/sealed");
        for algorithm in Algorithm::ALL {
            let name = format!("big_v3.{}.bin", algorithm.name());
            let blob = std::fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let key = Key::from_hex(algorithm, &TEST_KEY_HEX[..2 * algorithm.key_len()]).unwrap();
            let (header, body_at) = Header::parse_fields(&blob).unwrap();
            let segments = header.segments.unwrap();
            let (size, salt, prefix) = (segments.size as usize, segments.salt, header.nonce);
            assert_eq!(prefix.len(), prefix_len(algorithm), "{name}");
            let head = &blob[..body_at];
            let cipher = || SegmentCipher::new(&key, header.key_id.0, head.to_vec(), salt, prefix).unwrap();

            let mut opened = blob.clone();
            let len = open_in_place(&mut cipher(), size, &mut opened, body_at).unwrap();
            let plain = &opened[..len];
            assert_eq!(plain.len().div_ceil(size), 3, "{name}: three segments");

            assert_eq!(
                seal_copy(&mut cipher(), size, head, plain).unwrap(),
                blob,
                "{name}: seal_copy"
            );

            let mut buffer = plain.to_vec();
            seal_in_place(&mut cipher(), size, head, &mut buffer).unwrap();
            assert_eq!(buffer, blob, "{name}: seal_in_place");

            let mut one_by_one = head.to_vec();
            let mut sealing = cipher();
            let count = plain.len().div_ceil(size);
            for (i, chunk) in plain.chunks(size).enumerate() {
                let mut segment = chunk.to_vec();
                sealing.seal(&mut segment, i + 1 == count).unwrap();
                one_by_one.extend_from_slice(&segment);
            }
            assert_eq!(one_by_one, blob, "{name}: SegmentCipher::seal");
        }
    }

    /// The nonce of segment `i` is `prefix ‖ i (u32, big endian) ‖ last`: a segment sealed by
    /// hand with that nonce opens as segment `i`, and not as another index or flag.
    #[test]
    fn segment_nonces_are_prefix_big_endian_counter_and_last_flag() {
        let key = Key::from_hex(Algorithm::Aes256Gcm, TEST_KEY_HEX).unwrap();
        let (salt, prefix) = ([5u8; SALT_LEN], [9u8; 7]);
        let header = b"header".to_vec();
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&salt), key.secret())
            .expand(KDF_INFO, &mut okm)
            .unwrap();
        let aead = Aes256Gcm::new_from_slice(&okm).unwrap();
        let index: u32 = 0x0102_0304;
        let mut nonce = prefix.to_vec();
        nonce.extend_from_slice(&[1, 2, 3, 4, 1]);
        let mut sealed = b"segment".to_vec();
        let tag = aead
            .encrypt_inout_detached(
                nonce.as_slice().try_into().unwrap(),
                &header,
                sealed.as_mut_slice().into(),
            )
            .unwrap();
        sealed.extend_from_slice(&tag);
        let try_open = |at: u32, last: bool| {
            let mut cipher = SegmentCipher::new(&key, 1, header.clone(), &salt, &prefix).unwrap();
            cipher.next = u64::from(at);
            let mut segment = sealed.clone();
            cipher.open(&mut segment, last).map(|len| segment[..len].to_vec())
        };
        assert_eq!(try_open(index, true).unwrap(), b"segment");
        assert!(try_open(index, false).is_err());
        assert!(try_open(index.swap_bytes(), true).is_err());
    }

    /// A nonce prefix of the wrong length is refused with a reason, not a panic.
    #[test]
    fn a_prefix_of_the_wrong_length_is_refused() {
        let key = Key::from_hex(Algorithm::Aes128Gcm, &TEST_KEY_HEX[..32]).unwrap();
        let refused = SegmentCipher::new(&key, 1, Vec::new(), &[0; SALT_LEN], &[0; 19]);
        assert!(matches!(refused, Err(SealError::BadSegments(reason)) if reason.contains("19 bytes, not 7")));
    }
}
