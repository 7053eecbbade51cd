//! The sealed envelope, format version 1 (specified in `docs/FORMAT.md`):
//!
//! ```text
//! offset   size  field
//! 0        4     magic             "MKSE"
//! 4        1     format version    1
//! 5        1     algorithm id      1 aes-128-gcm, 2 aes-256-gcm, 3 chacha20-poly1305, 4 xchacha20-poly1305
//! 6        4     key id            u32, little endian
//! 10       4     state version     u32, little endian
//! 14       8     state fingerprint u64, little endian
//! 22       1     name length L     1..=255
//! 23       L     service name      UTF-8
//! 23+L     N     nonce             N = 12, or 24 for xchacha20-poly1305
//! 23+L+N   ..    ciphertext        the encoded state (its 12-byte tag, then postcard)
//! end-16   16    tag               AEAD authentication tag
//! ```
//!
//! The associated data is the whole header, bytes `0 .. 23+L+N`: the service name, state
//! version and fingerprint are bound to the ciphertext, so a blob cannot be opened as another
//! service's state or relabelled as another version.

use super::{Algorithm, KeyId, SealError};
use crate::state::{Fingerprint, StateTag};

/// The four magic bytes.
pub const MAGIC: [u8; 4] = *b"MKSE";
/// The format version this program writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the service name.
pub const FIXED_LEN: usize = 23;
/// The AEAD tag length.
pub const TAG_LEN: usize = 16;

/// A parsed envelope header (everything before the ciphertext).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The sealing key's id.
    pub key_id: KeyId,
    /// Version and fingerprint of the sealed state.
    pub state: StateTag,
    /// The service the state belongs to.
    pub service: &'a str,
    /// The nonce.
    pub nonce: &'a [u8],
}

impl<'a> Header<'a> {
    /// Length of the header in bytes: the associated data.
    pub fn len(&self) -> usize {
        FIXED_LEN + self.service.len() + self.nonce.len()
    }

    /// Whether the header is empty (never: kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parses and checks the header, strictly, before any decryption: magic, version,
    /// algorithm, name, nonce length, and room for the tag.
    pub fn parse(blob: &'a [u8]) -> Result<(Self, &'a [u8]), SealError> {
        let need = |n: usize| {
            if blob.len() < n {
                Err(SealError::Truncated {
                    len: blob.len(),
                    need: n,
                })
            } else {
                Ok(())
            }
        };
        need(6)?;
        if blob[..4] != MAGIC {
            return Err(SealError::BadMagic);
        }
        if blob[4] != FORMAT_VERSION {
            return Err(SealError::UnsupportedVersion(blob[4]));
        }
        let algorithm = Algorithm::from_id(blob[5]).ok_or(SealError::UnknownAlgorithm(blob[5]))?;
        need(FIXED_LEN)?;
        let key_id = KeyId(u32::from_le_bytes(blob[6..10].try_into().expect("4 bytes")));
        let state = StateTag {
            version: u32::from_le_bytes(blob[10..14].try_into().expect("4 bytes")),
            fingerprint: Fingerprint(u64::from_le_bytes(blob[14..22].try_into().expect("8 bytes"))),
        };
        let name_len = usize::from(blob[22]);
        if name_len == 0 {
            return Err(SealError::BadServiceName);
        }
        let nonce_at = FIXED_LEN + name_len;
        let body_at = nonce_at + algorithm.nonce_len();
        need(body_at + TAG_LEN)?;
        let service = std::str::from_utf8(&blob[FIXED_LEN..nonce_at]).map_err(|_| SealError::BadServiceName)?;
        let header = Header {
            algorithm,
            key_id,
            state,
            service,
            nonce: &blob[nonce_at..body_at],
        };
        Ok((header, &blob[body_at..]))
    }

    /// Appends the header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), SealError> {
        let name_len = u8::try_from(self.service.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| SealError::ServiceNameTooLong(self.service.to_owned()))?;
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.algorithm.id());
        out.extend_from_slice(&self.key_id.0.to_le_bytes());
        out.extend_from_slice(&self.state.version.to_le_bytes());
        out.extend_from_slice(&self.state.fingerprint.0.to_le_bytes());
        out.push(name_len);
        out.extend_from_slice(self.service.as_bytes());
        out.extend_from_slice(self.nonce);
        Ok(())
    }
}
