//! Sealing and opening envelopes with a keyring.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::envelope::{Header, TAG_LEN};
use super::stream::SegmentCipher;
use super::{Algorithm, KeyId, Keyring, SealError};
use crate::state::{EncodedState, StateTag};

/// How many messages one key may seal with random nonces: 2^32 for 96-bit nonces (NIST SP
/// 800-38D §8.3 keeps the collision chance below 2^-32), 2^64 - 1 for XChaCha's 192-bit nonces.
/// Past it, sealing fails with [`SealError::KeyExhausted`] until a new key is promoted.
pub const fn random_nonce_limit(algorithm: Algorithm) -> u64 {
    match algorithm.nonce_len() {
        12 => 1 << 32,
        _ => u64::MAX,
    }
}

/// Seals and opens state envelopes. Thread-safe; the keyring can be rotated while in use.
///
/// Cheap to clone: clones share one keyring and one seal counter per key, so every seal made
/// with one key — across replacements and the store's saves (`KernelBuilder::sealer` seals
/// both), and across any clones an application keeps — is counted against its nonce limit once.
///
/// Nonces come from `rand`'s thread-local CSPRNG (ChaCha, seeded and reseeded from the OS), reseeded
/// in a forked child before its first seal, so nonces never repeat across processes either.
pub struct Sealer {
    shared: Arc<Shared>,
}

/// What the clones of a sealer share.
struct Shared {
    keyring: RwLock<Keyring>,
    /// The per-key seal limit, if lowered (`u64::MAX`: the algorithm's own).
    limit_override: AtomicU64,
    /// Every nonce straight from the operating system (see `with_nonces_from_os`).
    os_nonces: std::sync::atomic::AtomicBool,
}

impl Clone for Sealer {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Sealer {
    /// A sealer over `keyring`.
    pub fn new(keyring: Keyring) -> Self {
        Self {
            shared: Arc::new(Shared {
                keyring: RwLock::new(keyring),
                limit_override: AtomicU64::new(u64::MAX),
                os_nonces: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Draws every nonce from the operating system, for this sealer and its clones, instead of
    /// the thread's generator (reseeded in a new process). For the cases a process-id check
    /// cannot see: a forked descendant given a dead ancestor's recycled process id, or a virtual
    /// machine restored twice from one snapshot (both copies would continue one generator).
    /// Costs a system call per seal (about 0.2 µs here).
    pub fn with_nonces_from_os(self) -> Self {
        self.shared.os_nonces.store(true, Ordering::Relaxed);
        self
    }

    /// Lowers the per-key seal limit, for this sealer and its clones (for tests of rotation;
    /// it can only be lowered).
    pub fn with_seal_limit(self, limit: u64) -> Self {
        self.shared.limit_override.fetch_min(limit, Ordering::Relaxed);
        self
    }

    /// Changes the keyring (add, promote, retire keys) while the sealer is in use.
    pub fn update_keyring<R>(&self, f: impl FnOnce(&mut Keyring) -> R) -> R {
        f(&mut self.shared.keyring.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the keyring.
    pub fn with_keyring<R>(&self, f: impl FnOnce(&Keyring) -> R) -> R {
        f(&self.shared.keyring.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Seals an encoded state for `service` with the primary key, with generation 0 (no save
    /// counter; the store and replacements use [`seal_state_at`](Self::seal_state_at)).
    pub fn seal_state(&self, service: &str, state: EncodedState) -> Result<Vec<u8>, SealError> {
        self.seal_state_at(service, state, 0)
    }

    /// Seals an encoded state for `service`, recording `generation` (the service's save counter)
    /// in the authenticated header.
    ///
    /// A state over [`SEGMENTED_ABOVE`](super::stream::SEGMENTED_ABOVE) bytes is sealed in
    /// segments in its own buffer, without a second copy.
    pub fn seal_state_at(&self, service: &str, state: EncodedState, generation: u64) -> Result<Vec<u8>, SealError> {
        let tag = state.tag();
        if state.as_bytes().len() <= super::stream::SEGMENTED_ABOVE {
            return self.seal_at(service, tag, generation, state.as_bytes());
        }
        self.seal_segmented_owned(
            service,
            tag,
            generation,
            state.into_bytes(),
            super::stream::SEGMENT_SIZE,
        )
    }

    /// Seals `plaintext` (an encoded state with tag `state`) for `service`, with generation 0.
    pub fn seal(&self, service: &str, state: StateTag, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_at(service, state, 0, plaintext)
    }

    /// Seals `plaintext` (an encoded state with tag `state`) for `service` at `generation`:
    /// whole (format version 2) up to [`SEGMENTED_ABOVE`](super::stream::SEGMENTED_ABOVE) bytes,
    /// in segments (format version 3) above.
    pub fn seal_at(
        &self,
        service: &str,
        state: StateTag,
        generation: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        if plaintext.len() <= super::stream::SEGMENTED_ABOVE {
            let mut buffer = self.begin(service, generation, plaintext.len())?;
            buffer.body().extend_from_slice(plaintext);
            buffer.set_state(state);
            return self.finish(buffer);
        }
        self.seal_segmented(service, state, generation, plaintext, super::stream::SEGMENT_SIZE)
    }

    /// Starts an envelope for `service`: draws the nonce, writes the header (with a state tag to
    /// be set) and leaves the buffer ready for the plaintext to be written in place.
    pub(crate) fn begin(&self, service: &str, generation: u64, capacity: usize) -> Result<SealBuffer, SealError> {
        // Before the seal is counted against the key: a name refused costs no seal.
        super::envelope::check_service_name(service)?;
        let keyring = self.shared.keyring.read().unwrap_or_else(PoisonError::into_inner);
        let (key_id, key) = keyring.primary_entry();
        let algorithm = key.cipher.algorithm();
        let limit = self
            .shared
            .limit_override
            .load(Ordering::Relaxed)
            .min(random_nonce_limit(algorithm));
        if key.seals.fetch_add(1, Ordering::Relaxed) >= limit {
            key.seals.fetch_sub(1, Ordering::Relaxed);
            return Err(SealError::KeyExhausted { key_id, limit });
        }
        let mut nonce = [0u8; 24];
        let nonce = &mut nonce[..algorithm.nonce_len()]; // nonce_len is 12 or 24
        if let Err(error) = self.fill_random(nonce) {
            key.seals.fetch_sub(1, Ordering::Relaxed);
            return Err(error);
        }
        let unset = StateTag {
            version: 0,
            fingerprint: crate::state::Fingerprint(0),
        };
        let header = Header {
            format: super::envelope::FORMAT_VERSION,
            algorithm,
            key_id: KeyId(key_id),
            state: unset,
            generation,
            service,
            nonce,
            segments: None,
        };
        let mut buf = Vec::with_capacity(header.len() + capacity + TAG_LEN);
        header.write(&mut buf)?;
        Ok(SealBuffer {
            body_at: buf.len(),
            buf,
            key_id,
            algorithm,
        })
    }

    /// Fills `bytes` from the nonce generator (the OS's if [`with_nonces_from_os`](Self::with_nonces_from_os)).
    pub(crate) fn fill_random(&self, bytes: &mut [u8]) -> Result<(), SealError> {
        if self.shared.os_nonces.load(Ordering::Relaxed) {
            super::nonce::fill_from_os(bytes)
        } else {
            super::nonce::fill(bytes)
        }
    }

    /// A copy of key `key_id` (zeroized when dropped), for deriving a segmented envelope's key.
    pub(crate) fn key(&self, key_id: u32) -> Result<super::Key, SealError> {
        let keyring = self.shared.keyring.read().unwrap_or_else(PoisonError::into_inner);
        keyring
            .get(key_id)
            .map(|k| k.key.clone())
            .ok_or(SealError::UnknownKey(key_id))
    }

    /// Refuses an envelope for another service or (if one is expected) another state.
    pub(crate) fn check_header(
        &self,
        service: &str,
        expected: Option<StateTag>,
        header: &Header<'_>,
    ) -> Result<(), SealError> {
        if header.service != service {
            return Err(SealError::WrongService {
                expected: service.to_owned(),
                found: header.service.to_owned(),
            });
        }
        if let Some(expected) = expected.filter(|e| *e != header.state) {
            return Err(SealError::WrongState {
                expected,
                found: header.state,
            });
        }
        Ok(())
    }

    /// Encrypts the body in place and appends the tag.
    pub(crate) fn finish(&self, sealing: SealBuffer) -> Result<Vec<u8>, SealError> {
        let SealBuffer {
            mut buf,
            body_at,
            key_id,
            algorithm,
        } = sealing;
        let keyring = self.shared.keyring.read().unwrap_or_else(PoisonError::into_inner);
        // The key may have been retired since `begin`; the envelope names it, so it must exist.
        let key = keyring.get(key_id).ok_or(SealError::UnknownKey(key_id))?;
        let (aad, body) = buf.split_at_mut(body_at); // the header was written: len >= body_at
        let body_len = body.len();
        let tag = key
            .cipher
            .seal(nonce_of(aad, algorithm), aad, body)
            .map_err(|_| SealError::Seal(body_len))?;
        buf.extend_from_slice(&tag);
        Ok(buf)
    }

    /// Opens a blob sealed for `service`, whatever state version it holds; returns the encoded
    /// state (decode it with [`state::decode`](crate::state::decode)).
    pub fn open(&self, service: &str, blob: &[u8]) -> Result<EncodedState, SealError> {
        self.open_owned(service, blob.to_vec())
    }

    /// [`open`](Self::open), decrypting in the blob's own buffer.
    pub fn open_owned(&self, service: &str, blob: Vec<u8>) -> Result<EncodedState, SealError> {
        self.open_generation(service, blob).map(|(state, _)| state)
    }

    /// [`open_owned`](Self::open_owned), also returning the authenticated generation (0 for a
    /// format version 1 envelope).
    pub fn open_generation(&self, service: &str, blob: Vec<u8>) -> Result<(EncodedState, u64), SealError> {
        let (mut buf, body, generation) = self.open_in_place(service, None, blob)?;
        buf.truncate(body.end);
        buf.drain(..body.start);
        let state = EncodedState::from_bytes(buf).map_err(|_| SealError::InconsistentPlaintext)?;
        Ok((state, generation))
    }

    /// Opens a blob that must hold exactly the state version `expected` for `service`.
    pub fn open_state(&self, service: &str, expected: StateTag, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        let (mut buf, body, _) = self.open_in_place(service, Some(expected), blob.to_vec())?;
        buf.truncate(body.end);
        buf.drain(..body.start);
        Ok(buf)
    }

    /// Checks the header, decrypts in place and returns the buffer with the plaintext's range
    /// and the (now authenticated) generation.
    pub(crate) fn open_in_place(
        &self,
        service: &str,
        expected: Option<StateTag>,
        mut blob: Vec<u8>,
    ) -> Result<(Vec<u8>, Range<usize>, u64), SealError> {
        let (header, _) = Header::parse(&blob)?;
        self.check_header(service, expected, &header)?;
        if let Some(segments) = header.segments {
            let (generation, state) = (header.generation, header.state);
            let body_at = header.len();
            let key = self.key_for(header.key_id.0, header.algorithm)?;
            let (salt, prefix) = (segments.salt.to_vec(), header.nonce.to_vec());
            let mut cipher = SegmentCipher::new(&key, header.key_id.0, blob[..body_at].to_vec(), &salt, &prefix)?;
            let len = super::stream::open_in_place(&mut cipher, segments.size as usize, &mut blob, body_at)?;
            check_plaintext_tag(&blob[..len], state)?;
            return Ok((blob, 0..len, generation));
        }
        let (state, key_id, algorithm, header_len) = (header.state, header.key_id.0, header.algorithm, header.len());
        let generation = header.generation;
        let body = header_len..blob.len() - TAG_LEN;
        self.decrypt(key_id, algorithm, &mut blob, header_len)?;
        check_plaintext_tag(&blob[body.clone()], state)?;
        Ok((blob, body, generation))
    }

    /// Opens a blob with whichever key sealed it and seals it again with the primary key,
    /// keeping its generation.
    pub fn reseal(&self, service: &str, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        let (state, generation) = self.open_generation(service, blob.to_vec())?;
        self.seal_state_at(service, state, generation)
    }

    /// Decrypts `blob[header_len .. len - 16]` in place, authenticating the header.
    fn decrypt(&self, key_id: u32, algorithm: Algorithm, blob: &mut [u8], header_len: usize) -> Result<(), SealError> {
        let keyring = self.shared.keyring.read().unwrap_or_else(PoisonError::into_inner);
        let key = keyring.get(key_id).ok_or(SealError::UnknownKey(key_id))?;
        let key_algorithm = key.cipher.algorithm();
        if key_algorithm != algorithm {
            return Err(SealError::AlgorithmMismatch {
                key_id,
                key: key_algorithm,
                envelope: algorithm,
            });
        }
        // `Header::parse` checked that the blob holds the header and a tag after it.
        let (aad, rest) = blob.split_at_mut(header_len);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        key.cipher
            .open(nonce_of(aad, algorithm), aad, body, tag)
            .map_err(|_| SealError::Authentication { key_id })
    }
}

/// An envelope being written: header done, plaintext going into the body in place.
pub(crate) struct SealBuffer {
    buf: Vec<u8>,
    body_at: usize,
    key_id: u32,
    algorithm: Algorithm,
}

impl SealBuffer {
    /// The plaintext written so far, and the key and algorithm the envelope was begun with.
    pub(crate) fn into_body(self) -> (Vec<u8>, u32, Algorithm) {
        let mut buf = self.buf;
        buf.drain(..self.body_at);
        (buf, self.key_id, self.algorithm)
    }

    #[inline]
    /// Plaintext bytes written so far.
    pub(crate) fn body_len(&self) -> usize {
        self.buf.len() - self.body_at
    }

    #[inline]
    /// The buffer to append the plaintext to (after the header).
    pub(crate) fn body(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Records the state tag in the header (offsets 10..22 of docs/FORMAT.md, in both formats).
    pub(crate) fn set_state(&mut self, state: StateTag) {
        // The buffer starts with a written header, longer than 22 bytes.
        self.buf[10..14].copy_from_slice(&state.version.to_le_bytes());
        self.buf[14..22].copy_from_slice(&state.fingerprint.0.to_le_bytes());
    }
}

/// The decrypted plaintext must begin with the state tag its header names.
fn check_plaintext_tag(plaintext: &[u8], state: StateTag) -> Result<(), SealError> {
    match StateTag::split(plaintext) {
        Ok((tag, _)) if tag == state => Ok(()),
        _ => Err(SealError::InconsistentPlaintext),
    }
}

/// The nonce is the last bytes of the header.
fn nonce_of(header: &[u8], algorithm: Algorithm) -> &[u8] {
    &header[header.len() - algorithm.nonce_len()..] // the header ends with the nonce
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_keyring(|k| f.debug_struct("Sealer").field("keyring", k).finish())
    }
}
