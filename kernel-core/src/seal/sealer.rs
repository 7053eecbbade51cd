//! Sealing and opening envelopes with a keyring.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{PoisonError, RwLock};

use rand::Rng as _;

use super::envelope::{Header, TAG_LEN};
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
/// Nonces come from `rand`'s thread-local CSPRNG (ChaCha, seeded and reseeded from the OS), so a
/// seal costs no system call.
pub struct Sealer {
    keyring: RwLock<Keyring>,
    limit_override: Option<u64>,
}

impl Sealer {
    /// A sealer over `keyring`.
    pub fn new(keyring: Keyring) -> Self {
        Self {
            keyring: RwLock::new(keyring),
            limit_override: None,
        }
    }

    /// Lowers the per-key seal limit (for tests of rotation; it can only be lowered).
    pub fn with_seal_limit(mut self, limit: u64) -> Self {
        self.limit_override = Some(limit);
        self
    }

    /// Changes the keyring (add, promote, retire keys) while the sealer is in use.
    pub fn update_keyring<R>(&self, f: impl FnOnce(&mut Keyring) -> R) -> R {
        f(&mut self.keyring.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the keyring.
    pub fn with_keyring<R>(&self, f: impl FnOnce(&Keyring) -> R) -> R {
        f(&self.keyring.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Seals an encoded state for `service` with the primary key.
    pub fn seal_state(&self, service: &str, state: EncodedState) -> Result<Vec<u8>, SealError> {
        let tag = state.tag();
        self.seal(service, tag, state.as_bytes())
    }

    /// Seals `plaintext` (an encoded state with tag `state`) for `service`.
    pub fn seal(&self, service: &str, state: StateTag, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let keyring = self.keyring.read().unwrap_or_else(PoisonError::into_inner);
        let (key_id, key) = keyring.primary_entry();
        let algorithm = key.cipher.algorithm();
        let limit = self
            .limit_override
            .unwrap_or(u64::MAX)
            .min(random_nonce_limit(algorithm));
        if key.seals.fetch_add(1, Ordering::Relaxed) >= limit {
            key.seals.fetch_sub(1, Ordering::Relaxed);
            return Err(SealError::KeyExhausted { key_id, limit });
        }
        let mut nonce = [0u8; 24];
        let nonce = &mut nonce[..algorithm.nonce_len()];
        rand::rng().fill_bytes(nonce);
        let header = Header {
            algorithm,
            key_id: KeyId(key_id),
            state,
            service,
            nonce,
        };
        let mut out = Vec::with_capacity(header.len() + plaintext.len() + TAG_LEN);
        header.write(&mut out)?;
        let body_at = out.len();
        out.extend_from_slice(plaintext);
        let (aad, body) = out.split_at_mut(body_at);
        let tag = key
            .cipher
            .seal(nonce_of(aad, algorithm), aad, body)
            .map_err(|_| SealError::Seal(plaintext.len()))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a blob sealed for `service`, whatever state version it holds; returns the encoded
    /// state (decode it with [`state::decode`](crate::state::decode)).
    pub fn open(&self, service: &str, blob: &[u8]) -> Result<EncodedState, SealError> {
        let (header, body) = Header::parse(blob)?;
        if header.service != service {
            return Err(SealError::WrongService {
                expected: service.to_owned(),
                found: header.service.to_owned(),
            });
        }
        let plaintext = self.decrypt(&header, &blob[..header.len()], body)?;
        let encoded = EncodedState::from_bytes(plaintext).map_err(|_| SealError::InconsistentPlaintext)?;
        if encoded.tag() != header.state {
            return Err(SealError::InconsistentPlaintext);
        }
        Ok(encoded)
    }

    /// Opens a blob that must hold exactly the state version `expected` for `service`.
    pub fn open_state(&self, service: &str, expected: StateTag, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        let (header, _) = Header::parse(blob)?;
        if header.service == service && header.state != expected {
            return Err(SealError::WrongState {
                expected,
                found: header.state,
            });
        }
        self.open(service, blob).map(EncodedState::into_bytes)
    }

    /// Opens a blob with whichever key sealed it and seals it again with the primary key.
    pub fn reseal(&self, service: &str, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        let state = self.open(service, blob)?;
        self.seal_state(service, state)
    }

    fn decrypt(&self, header: &Header<'_>, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, SealError> {
        let keyring = self.keyring.read().unwrap_or_else(PoisonError::into_inner);
        let key_id = header.key_id.0;
        let key = keyring.get(key_id).ok_or(SealError::UnknownKey(key_id))?;
        let key_algorithm = key.cipher.algorithm();
        if key_algorithm != header.algorithm {
            return Err(SealError::AlgorithmMismatch {
                key_id,
                key: key_algorithm,
                envelope: header.algorithm,
            });
        }
        let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
        let mut plaintext = ciphertext.to_vec();
        key.cipher
            .open(header.nonce, aad, &mut plaintext, tag)
            .map_err(|_| SealError::Authentication { key_id })?;
        Ok(plaintext)
    }
}

/// The nonce is the last bytes of the header.
fn nonce_of(header: &[u8], algorithm: Algorithm) -> &[u8] {
    &header[header.len() - algorithm.nonce_len()..]
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_keyring(|k| f.debug_struct("Sealer").field("keyring", k).finish())
    }
}
