//! The versioned encoding: a 12-byte tag, then postcard.
//!
//! ```text
//! offset  size  field
//! 0       4     version       u32, little endian
//! 4       8     fingerprint   u64, little endian
//! 12      ..    body          postcard encoding of the value, nothing after it
//! ```

use super::chain::unknown_version;
use super::stream::Body;
use super::{CodecError, Fingerprint, Migratable, StateError};

/// Length of the version tag that precedes the postcard body.
pub const HEADER_LEN: usize = 12;

/// Which version of which schema a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTag {
    /// The version number.
    pub version: u32,
    /// The schema fingerprint of that version.
    pub fingerprint: Fingerprint,
}

impl StateTag {
    /// The tag of `T`.
    pub fn of<T: Migratable>() -> Self {
        Self {
            version: T::VERSION,
            fingerprint: T::FINGERPRINT,
        }
    }

    /// The 12 header bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..].copy_from_slice(&self.fingerprint.0.to_le_bytes());
        out
    }

    /// Splits `bytes` into its tag and body.
    pub fn split(bytes: &[u8]) -> Result<(Self, &[u8]), StateError> {
        let (Some(version), Some(fingerprint)) = (bytes.get(..4), bytes.get(4..HEADER_LEN)) else {
            return Err(StateError::Truncated { len: bytes.len() });
        };
        // The two slices are 4 and 8 bytes long (taken above), so the conversions cannot fail.
        let tag = Self {
            version: u32::from_le_bytes(version.try_into().expect("4 bytes")),
            fingerprint: Fingerprint(u64::from_le_bytes(fingerprint.try_into().expect("8 bytes"))),
        };
        Ok((tag, &bytes[HEADER_LEN..])) // `bytes` is at least HEADER_LEN long (checked above)
    }
}

/// A state encoded with its tag: what crosses a replacement and what a state file holds
/// (sealed).
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedState {
    tag: StateTag,
    bytes: Vec<u8>,
}

impl EncodedState {
    /// The version and fingerprint.
    pub fn tag(&self) -> StateTag {
        self.tag
    }

    /// Tag and body, as written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, consuming `self`.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Parses the tag of already encoded bytes (the body is checked when decoded).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, StateError> {
        let (tag, _) = StateTag::split(&bytes)?;
        Ok(Self { tag, bytes })
    }
}

impl std::fmt::Debug for EncodedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedState")
            .field("tag", &self.tag)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Encodes `value` with its version tag.
pub fn encode<T: Migratable>(value: &T) -> Result<EncodedState, StateError> {
    let mut bytes = Vec::new();
    let tag = encode_into(value, &mut bytes)?;
    Ok(EncodedState { tag, bytes })
}

/// Appends the tag and the encoding of `value` to `out`.
pub fn encode_into<T: Migratable>(value: &T, out: &mut Vec<u8>) -> Result<StateTag, StateError> {
    encode_to(value, out)
}

/// Writes the tag, then the encoding of `value`, to `out` (the tag first: a sealing writer
/// reads it from there).
pub(crate) fn encode_to<T: Migratable, W: std::io::Write>(value: &T, mut out: W) -> Result<StateTag, StateError> {
    let tag = StateTag::of::<T>();
    let fail = |error| StateError::Encode {
        ty: T::TYPE_NAME,
        version: T::VERSION,
        source: CodecError(error),
    };
    out.write_all(&tag.to_bytes())
        .map_err(|_| fail(postcard::Error::SerializeBufferFull))?;
    postcard::to_io(value, out).map_err(|error| StateError::Encode {
        ty: T::TYPE_NAME,
        version: T::VERSION,
        source: CodecError(error),
    })?;
    Ok(tag)
}

/// Decodes tagged bytes of any version in `T`'s chain into `T`, upgrading as needed.
/// Refuses a newer version, an unknown version or fingerprint, and trailing bytes.
pub fn decode<T: Migratable>(bytes: &[u8]) -> Result<T, StateError> {
    let (tag, body) = StateTag::split(bytes)?;
    decode_body::<T>(tag, Body::Bytes(body))
}

/// Decodes a body tagged `tag` into `T`, upgrading as needed: what [`decode`] and
/// [`decode_segments`](super::decode_segments) share.
pub(super) fn decode_body<T: Migratable>(tag: StateTag, body: Body<'_, '_>) -> Result<T, StateError> {
    if tag.version > T::VERSION {
        return Err(StateError::TooNew {
            ty: T::TYPE_NAME,
            found: tag.version,
            newest: T::VERSION,
        });
    }
    T::decode_tagged(tag, body).map_err(|e| match e {
        // Name the newest type rather than the link of the chain where the walk ended.
        StateError::UnknownVersion { found, .. } => unknown_version::<T>(found),
        other => other,
    })
}

/// Decodes a body whose tag has `T`'s version: the fingerprint must match and nothing may follow.
pub(super) fn decode_exact<T: Migratable>(tag: StateTag, body: Body<'_, '_>) -> Result<T, StateError> {
    let known = tag.fingerprint == T::FINGERPRINT || Some(tag.fingerprint) == T::LEGACY_FINGERPRINT;
    if !known {
        return Err(StateError::FingerprintMismatch {
            ty: T::TYPE_NAME,
            version: T::VERSION,
            expected: T::FINGERPRINT,
            found: tag.fingerprint,
        });
    }
    let body = match body {
        Body::Bytes(body) => body,
        Body::Stream(stream) => return super::stream::decode_exact_stream::<T>(stream),
    };
    let mut deserializer = postcard::Deserializer::from_bytes(body);
    let decoded = super::budget::with_input_len(body.len(), || {
        super::depth::deserialize::<T, _>(&mut deserializer).map_err(bounded_error::<T>)
    });
    let value = decoded?;
    let rest = deserializer.finalize().map_err(|error| StateError::Decode {
        ty: T::TYPE_NAME,
        version: T::VERSION,
        source: CodecError(error),
    })?;
    if !rest.is_empty() {
        return Err(StateError::TrailingBytes {
            ty: T::TYPE_NAME,
            version: T::VERSION,
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// The error of a depth-bounded decoding of `T`.
pub(super) fn bounded_error<T: Migratable>(failure: super::depth::Failure<postcard::Error>) -> StateError {
    match failure {
        super::depth::Failure::TooDeep => StateError::TooDeep {
            ty: T::TYPE_NAME,
            version: T::VERSION,
            limit: super::MAX_DECODE_DEPTH,
        },
        super::depth::Failure::Codec(error) => StateError::Decode {
            ty: T::TYPE_NAME,
            version: T::VERSION,
            source: CodecError(error),
        },
    }
}
