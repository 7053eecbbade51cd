//! The sealed envelope, format version 2 (specified in `docs/FORMAT.md`):
//!
//! ```text
//! offset   size  field
//! 0        4     magic             "MKSE"
//! 4        1     format version    2
//! 5        1     algorithm id      1 aes-128-gcm, 2 aes-256-gcm, 3 chacha20-poly1305, 4 xchacha20-poly1305
//! 6        4     key id            u32, little endian
//! 10       4     state version     u32, little endian
//! 14       8     state fingerprint u64, little endian
//! 22       8     generation        u64, little endian: the service's save counter
//! 30       1     name length L     1..=255
//! 31       L     service name      UTF-8
//! 31+L     N     nonce             N = 12, or 24 for xchacha20-poly1305
//! 31+L+N   ..    ciphertext        the encoded state (its 12-byte tag, then postcard)
//! end-16   16    tag               AEAD authentication tag
//! ```
//!
//! The associated data is the whole header, bytes `0 .. 31+L+N`: the service name, state
//! version, fingerprint and generation are bound to the ciphertext, so a blob cannot be opened
//! as another service's state, relabelled as another version, or passed off as a newer save.
//!
//! Format version 1 (written before generations) is still read: the same header without the
//! generation field (the name length at 22, the name at 23); its generation reads as 0.
//!
//! Format version 3, the segmented envelope, seals a large state in segments that can be
//! opened one at a time (see [`super::stream`] and `docs/FORMAT.md`): the same fields up to the
//! name, then the segment size, a salt and a nonce prefix instead of the nonce, then the
//! segments, each its ciphertext and tag.

use super::{Algorithm, KeyId, SealError};
use crate::state::{Fingerprint, StateTag};

/// The four magic bytes.
pub const MAGIC: [u8; 4] = *b"MKSE";
/// The format version this program writes for a state sealed whole (up to
/// [`SEGMENTED_ABOVE`](super::stream::SEGMENTED_ABOVE) bytes of encoding).
pub const FORMAT_VERSION: u8 = 2;
/// The format version of a segmented envelope (a larger state).
pub const SEGMENTED_FORMAT_VERSION: u8 = 3;
/// The oldest format version this program reads.
pub const OLDEST_FORMAT_VERSION: u8 = 1;
/// The newest format version this program reads.
pub const NEWEST_FORMAT_VERSION: u8 = SEGMENTED_FORMAT_VERSION;
/// Bytes before the service name (format version 2).
pub const FIXED_LEN: usize = 31;
/// Bytes before the service name in format version 1.
pub const FIXED_LEN_V1: usize = 23;
/// Offset of the generation field (format version 2).
pub const GENERATION_AT: usize = 22;
/// The AEAD tag length.
pub const TAG_LEN: usize = 16;
/// The longest service name an envelope holds (its length is one byte).
pub const MAX_NAME_LEN: usize = 255;
/// Length of a segmented envelope's segment size field.
const SEGMENT_SIZE_LEN: usize = 4;
/// Length of a segmented envelope's salt.
pub const SALT_LEN: usize = 32;

/// A parsed envelope header (everything before the ciphertext).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The format version it was written in (1, 2, or 3 for a segmented envelope).
    pub format: u8,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The sealing key's id.
    pub key_id: KeyId,
    /// Version and fingerprint of the sealed state.
    pub state: StateTag,
    /// The service's save counter when the state was exported (0 in format version 1).
    pub generation: u64,
    /// The service the state belongs to.
    pub service: &'a str,
    /// The nonce; in a segmented envelope, the nonce prefix of its segments.
    pub nonce: &'a [u8],
    /// How a segmented envelope (format version 3) is cut; `None` in versions 1 and 2.
    pub segments: Option<Segments<'a>>,
}

/// The fields only a segmented envelope (format version 3) has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments<'a> {
    /// Plaintext bytes in every segment but the last (which holds 1 to this many).
    pub size: u32,
    /// The salt from which the envelope's own key is derived (32 bytes).
    pub salt: &'a [u8],
}

impl<'a> Header<'a> {
    /// Length of the header in bytes: the associated data.
    pub fn len(&self) -> usize {
        let segments = self.segments.map_or(0, |s| SEGMENT_SIZE_LEN + s.salt.len());
        fixed_len(self.format) + self.service.len() + segments + self.nonce.len()
    }

    /// Whether the header is empty (never: kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parses and checks the header, strictly, before any decryption: magic, format version,
    /// algorithm, name, nonce length, and room for the tag.
    pub fn parse(blob: &'a [u8]) -> Result<(Self, &'a [u8]), SealError> {
        let (header, body_at) = Self::parse_fields(blob)?;
        if blob.len() < body_at + TAG_LEN {
            return Err(SealError::Truncated {
                len: blob.len(),
                need: body_at + TAG_LEN,
            });
        }
        let body = &blob[body_at..];
        if let Some(segments) = header.segments {
            super::stream::segment_lengths(segments.size, body.len())?;
        }
        Ok((header, body))
    }

    /// Parses and checks the header alone (a segmented envelope's first part): returns it and
    /// where the body begins.
    pub(crate) fn parse_fields(blob: &'a [u8]) -> Result<(Self, usize), SealError> {
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
        // Every slice below is preceded by a `need` of its end: none can be out of bounds.
        need(6)?;
        if blob[..4] != MAGIC {
            return Err(SealError::BadMagic);
        }
        let format = blob[4];
        if !(OLDEST_FORMAT_VERSION..=NEWEST_FORMAT_VERSION).contains(&format) {
            return Err(SealError::UnsupportedVersion(format));
        }
        let algorithm = Algorithm::from_id(blob[5]).ok_or(SealError::UnknownAlgorithm(blob[5]))?;
        let fixed = fixed_len(format);
        need(fixed)?;
        let key_id = KeyId(read_u32(blob, 6));
        let state = StateTag {
            version: read_u32(blob, 10),
            fingerprint: Fingerprint(read_u64(blob, 14)),
        };
        let generation = if format >= 2 { read_u64(blob, GENERATION_AT) } else { 0 };
        let name_len = usize::from(blob[fixed - 1]);
        if name_len == 0 {
            return Err(SealError::BadServiceName);
        }
        let name_end = fixed + name_len;
        let (segments, nonce_at, nonce_len) = if format == SEGMENTED_FORMAT_VERSION {
            let salt_at = name_end + SEGMENT_SIZE_LEN;
            let nonce_at = salt_at + SALT_LEN;
            need(nonce_at)?;
            let size = read_u32(blob, name_end);
            super::stream::check_segment_size(size)?;
            let salt = &blob[salt_at..nonce_at];
            (
                Some(Segments { size, salt }),
                nonce_at,
                super::stream::prefix_len(algorithm),
            )
        } else {
            (None, name_end, algorithm.nonce_len())
        };
        let body_at = nonce_at + nonce_len;
        need(body_at)?;
        let service = std::str::from_utf8(&blob[fixed..name_end]).map_err(|_| SealError::BadServiceName)?;
        let header = Header {
            format,
            algorithm,
            key_id,
            state,
            generation,
            service,
            nonce: &blob[nonce_at..body_at],
            segments,
        };
        Ok((header, body_at))
    }

    /// Appends the header to `out`, in the format version it names (2 for a state sealed whole, 3 for a segmented one).
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), SealError> {
        let name_len = check_service_name(self.service)?;
        out.extend_from_slice(&MAGIC);
        out.push(self.format);
        out.push(self.algorithm.id());
        out.extend_from_slice(&self.key_id.0.to_le_bytes());
        out.extend_from_slice(&self.state.version.to_le_bytes());
        out.extend_from_slice(&self.state.fingerprint.0.to_le_bytes());
        if self.format >= 2 {
            out.extend_from_slice(&self.generation.to_le_bytes());
        }
        out.push(name_len);
        out.extend_from_slice(self.service.as_bytes());
        if let Some(segments) = self.segments {
            out.extend_from_slice(&segments.size.to_le_bytes());
            out.extend_from_slice(segments.salt);
        }
        out.extend_from_slice(self.nonce);
        Ok(())
    }
}

/// Checks that `service` can be named in an envelope (1 to [`MAX_NAME_LEN`] bytes); its length.
pub(crate) fn check_service_name(service: &str) -> Result<u8, SealError> {
    if service.is_empty() {
        return Err(SealError::EmptyServiceName);
    }
    u8::try_from(service.len()).map_err(|_| SealError::ServiceNameTooLong(service.to_owned()))
}

/// Bytes before the service name in format version `format`.
fn fixed_len(format: u8) -> usize {
    if format >= 2 { FIXED_LEN } else { FIXED_LEN_V1 }
}

/// The little-endian u32 at `at`; the caller checked the length.
fn read_u32(blob: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&blob[at..at + 4]);
    u32::from_le_bytes(bytes)
}

/// The little-endian u64 at `at`; the caller checked the length.
fn read_u64(blob: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&blob[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// A sealed state's header described for people, one field a line, without a key: what
/// `microkernel-state inspect` prints. Fields read from the blob are escaped, so a hostile
/// blob cannot forge lines or terminal sequences.
///
/// ```
/// use microkernel::seal::envelope::describe;
/// assert!(describe(b"not an envelope").is_err());
/// ```
pub fn describe(blob: &[u8]) -> Result<String, SealError> {
    let (header, body) = Header::parse(blob)?;
    let generation = match header.format {
        1 => "none (format version 1)".to_owned(),
        _ => header.generation.to_string(),
    };
    // `parse` checked that the body holds at least the tag (every segment's, when segmented).
    let (segments, tags) = match header.segments {
        Some(s) => {
            let count = super::stream::segment_lengths(s.size, body.len())?.0;
            (
                format!(
                    "segments:           {count} of {} plaintext bytes (the last may be shorter)\n",
                    s.size
                ),
                count,
            )
        }
        None => (String::new(), 1),
    };
    let ciphertext = body.len() - TAG_LEN * tags;
    let tag_bytes = TAG_LEN * tags;
    Ok(format!(
        "format version:     {}\nalgorithm:          {}\nkey id:             {}\nservice:            {}\nstate version:      {}\nschema fingerprint: {}\ngeneration:         {generation}\n{segments}header bytes:       {}\nciphertext bytes:   {ciphertext}\ntag bytes:          {tag_bytes}\ntotal bytes:        {}",
        header.format,
        header.algorithm,
        header.key_id,
        header.service.escape_debug(),
        header.state.version,
        header.state.fingerprint,
        header.len(),
        blob.len(),
    ))
}
