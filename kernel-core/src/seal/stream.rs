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
//!   otherwise, and with the whole header as associated data.
//!
//! So a segment cannot be moved, dropped, repeated or taken from another envelope, and cutting
//! the envelope at a segment boundary is caught: the new last segment was sealed as not last.
//! Every segment is authenticated before any of its bytes are used.

use std::sync::mpsc::Receiver;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::cipher::Cipher;
use super::envelope::{SALT_LEN, TAG_LEN};
use super::{Algorithm, Key, SealError};
use crate::state::{HEADER_LEN, StateTag};

/// Plaintext bytes per segment in the envelopes this program writes: 1 MiB.
pub const SEGMENT_SIZE: u32 = 1 << 20;
/// A state whose encoding is longer than this is sealed in segments (format version 3); a
/// shorter one whole (format version 2), as before.
pub const SEGMENTED_ABOVE: usize = 4 << 20;
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

/// The envelope's own cipher, derived from the sealing key and the header's salt.
fn derive(key: &Key, salt: &[u8]) -> Result<Cipher, SealError> {
    let algorithm = key.algorithm();
    let mut okm = Zeroizing::new(vec![0u8; algorithm.key_len()]);
    // `extract` rather than `new`, which drops the PRK unwiped: this copy is wiped here.
    let (mut prk, hkdf) = Hkdf::<Sha256>::extract(Some(salt), key.secret());
    prk.as_mut_slice().zeroize();
    hkdf.expand(KDF_INFO, &mut okm)
        .map_err(|_| SealError::Seal(okm.len()))?;
    let derived = Key::from_bytes(algorithm, &okm).map_err(|_| SealError::Seal(okm.len()))?;
    Ok(Cipher::new(&derived))
}

/// Seals or opens the segments of one envelope, in order.
pub(crate) struct SegmentCipher {
    cipher: Cipher,
    key_id: u32,
    /// The whole header: every segment's associated data.
    header: Vec<u8>,
    prefix: [u8; 24],
    prefix_len: usize,
    next: u64,
}

impl SegmentCipher {
    /// The cipher of the envelope whose header (all of it, written or parsed) is `header`, its
    /// key derived from `key` and the header's `salt`, its nonces starting with `prefix`.
    pub(crate) fn new(key: &Key, key_id: u32, header: Vec<u8>, salt: &[u8], prefix: &[u8]) -> Result<Self, SealError> {
        let mut nonce_prefix = [0u8; 24];
        nonce_prefix[..prefix.len()].copy_from_slice(prefix); // at most 19 bytes
        Ok(Self {
            cipher: derive(key, salt)?,
            key_id,
            prefix_len: prefix.len(),
            prefix: nonce_prefix,
            header,
            next: 0,
        })
    }

    /// The index of the next segment.
    fn next_index(&self) -> u64 {
        self.next
    }

    fn nonce(&self, last: bool) -> Result<([u8; 24], usize), SealError> {
        self.nonce_at(self.next, last)
    }

    /// The nonce of segment `index`.
    fn nonce_at(&self, index: u64, last: bool) -> Result<([u8; 24], usize), SealError> {
        let index = u32::try_from(index).map_err(|_| SealError::BadSegments("more than 2^32 segments".into()))?;
        let mut nonce = self.prefix;
        let p = self.prefix_len;
        nonce[p..p + 4].copy_from_slice(&index.to_be_bytes());
        nonce[p + 4] = u8::from(last);
        Ok((nonce, p + 5))
    }

    /// Seals segment `index` held in `segment` (its plaintext, then room for the tag) in place.
    fn seal_segment(&self, index: usize, last: bool, segment: &mut [u8]) -> Result<(), SealError> {
        let len = segment.len() - TAG_LEN;
        let (nonce, n) = self.nonce_at(index as u64, last)?;
        let (body, tag_room) = segment.split_at_mut(len);
        let tag = self
            .cipher
            .seal(&nonce[..n], &self.header, body)
            .map_err(|_| SealError::Seal(len))?;
        tag_room.copy_from_slice(&tag);
        Ok(())
    }

    /// Seals the next segment: encrypts `segment` in place and appends its tag.
    pub(crate) fn seal(&mut self, segment: &mut Vec<u8>, last: bool) -> Result<(), SealError> {
        let (nonce, len) = self.nonce(last)?;
        let tag = self
            .cipher
            .seal(&nonce[..len], &self.header, segment)
            .map_err(|_| SealError::Seal(segment.len()))?;
        segment.extend_from_slice(&tag);
        self.next += 1;
        Ok(())
    }

    /// Opens the next segment (ciphertext and tag) in place; returns its plaintext's length.
    pub(crate) fn open(&mut self, segment: &mut [u8], last: bool) -> Result<usize, SealError> {
        let (nonce, len) = self.nonce(last)?;
        let failed = SealError::SegmentAuthentication {
            key_id: self.key_id,
            segment: self.next,
        };
        let plain = segment
            .len()
            .checked_sub(TAG_LEN)
            .ok_or_else(|| SealError::BadSegments(format!("segment {} is shorter than a tag", self.next)))?;
        let (body, tag) = segment.split_at_mut(plain);
        self.cipher
            .open(&nonce[..len], &self.header, body, tag)
            .map_err(|_| failed)?;
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
        cipher.seal_segment(i, i + 1 == count, &mut buffer[at..at + len + TAG_LEN])?;
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
        cipher.seal_segment(i, i + 1 == count, &mut out[at..])?;
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
