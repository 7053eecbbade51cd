//! Errors of keys and of sealing. None of them carries key bytes.

use super::Algorithm;
use crate::state::StateTag;

/// A key could not be made or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key has the wrong length for its algorithm.
    #[error("a {algorithm} key is {expected} bytes, got {found}")]
    Length {
        /// The algorithm.
        algorithm: Algorithm,
        /// Required length.
        expected: usize,
        /// Given length.
        found: usize,
    },
    /// Key text (from [`Key::from_text`](super::Key::from_text), an environment variable or a
    /// file) decodes to the wrong length: `read_as` says which encoding it was taken for.
    #[error(
        "a {algorithm} key is {expected} bytes, written as {} hex digits or {} characters of padded base64; the text given has {chars} characters, read as {read_as}: {found} bytes",
        2 * expected,
        expected.div_ceil(3) * 4
    )]
    TextLength {
        /// The algorithm.
        algorithm: Algorithm,
        /// Required length in bytes.
        expected: usize,
        /// The text's length in characters (whitespace around it removed).
        chars: usize,
        /// `hex` (the text has only hex digits) or `base64`.
        read_as: &'static str,
        /// The decoded length in bytes.
        found: usize,
    },
    /// The text is not valid hex or base64.
    #[error("the key is not valid {encoding}")]
    Encoding {
        /// `hex` or `base64`.
        encoding: &'static str,
    },
    /// Key text (from [`Key::from_text`](super::Key::from_text), an environment variable or a
    /// file) that is neither hex digits only nor valid base64 (a `0x` prefix, spaces or colons
    /// between bytes, a base64 alphabet of another kind).
    #[error(
        "a {algorithm} key is written as {} hex digits or {} characters of padded base64; the text given ({chars} characters) is neither",
        2 * algorithm.key_len(),
        algorithm.key_len().div_ceil(3) * 4
    )]
    Unreadable {
        /// The algorithm.
        algorithm: Algorithm,
        /// The text's length in characters (whitespace around it removed).
        chars: usize,
    },
    /// The environment variable is missing or not Unicode.
    #[error("environment variable `{name}` is not set (or not valid Unicode)")]
    MissingEnv {
        /// The variable.
        name: String,
    },
    /// The key file could not be read.
    #[error("cannot read key file `{path}`")]
    File {
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(String),
    /// An algorithm name that is not one of ours.
    #[error("unknown algorithm `{name}`; valid names: {valid}")]
    UnknownAlgorithm {
        /// The name given.
        name: String,
        /// The valid names.
        valid: String,
    },
    /// A key id used twice in a keyring.
    #[error("key id {0} is already in the keyring")]
    DuplicateId(u32),
    /// A key id not in the keyring.
    #[error("key id {0} is not in the keyring")]
    UnknownId(u32),
    /// The primary key cannot be retired; promote another first.
    #[error("key id {0} is the primary key: promote another key before retiring it")]
    RetirePrimary(u32),
}

/// Sealing or opening an envelope failed. Parsing errors come before any decryption.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Fewer bytes than the header (or header and tag) need.
    #[error("sealed state truncated: {len} bytes, at least {need} needed")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The first four bytes are not the envelope magic.
    #[error("not a sealed state (bad magic bytes)")]
    BadMagic,
    /// A format version this program does not read.
    #[error("unsupported envelope format version {0} (this program reads versions 1 to 3)")]
    UnsupportedVersion(u8),
    /// An algorithm byte that names no algorithm.
    #[error("unknown algorithm id {0} in the envelope")]
    UnknownAlgorithm(u8),
    /// The service name in the header is empty or not UTF-8.
    #[error("the service name in the envelope is empty or not UTF-8")]
    BadServiceName,
    /// The envelope was sealed for another service.
    #[error("sealed state belongs to service `{found}`, not `{expected}`")]
    WrongService {
        /// The service opening it.
        expected: String,
        /// The service in the envelope.
        found: String,
    },
    /// The envelope holds another state version or schema than the one expected.
    #[error("sealed state is v{} ({}), expected v{} ({})", .found.version, .found.fingerprint, .expected.version, .expected.fingerprint)]
    WrongState {
        /// Expected tag.
        expected: StateTag,
        /// Tag in the envelope.
        found: StateTag,
    },
    /// No key with the envelope's key id is in the keyring (retired, or never added).
    #[error("no key with id {0} in the keyring")]
    UnknownKey(u32),
    /// The key with the envelope's id is for another algorithm.
    #[error("key {key_id} is a {key} key but the envelope uses {envelope}")]
    AlgorithmMismatch {
        /// The key id.
        key_id: u32,
        /// The key's algorithm.
        key: super::Algorithm,
        /// The envelope's algorithm.
        envelope: super::Algorithm,
    },
    /// Authentication failed: wrong key, or the envelope was altered.
    #[error("sealed state failed authentication with key {key_id} (wrong key, or tampered)")]
    Authentication {
        /// The key id tried.
        key_id: u32,
    },
    /// The decrypted bytes do not start with the state tag the header names.
    #[error("sealed state's plaintext does not match its header")]
    InconsistentPlaintext,
    /// The key has sealed as many messages as random nonces safely allow; rotate it.
    #[error("key {key_id} reached its limit of {limit} seals with random nonces; add and promote a new key")]
    KeyExhausted {
        /// The key id.
        key_id: u32,
        /// The limit.
        limit: u64,
    },
    /// The service name is longer than 255 bytes.
    #[error("service name `{0}` is longer than 255 bytes")]
    ServiceNameTooLong(String),
    /// The service name is empty: an envelope names its service with 1 to 255 bytes.
    #[error("the service name is empty; a sealed state names its service (1 to 255 bytes)")]
    EmptyServiceName,
    /// The OS random number generator failed when a forked process reseeded its nonce
    /// generator; nothing was sealed.
    #[error("the OS random number generator failed while reseeding the nonce generator: {0}")]
    Rng(String),
    /// The AEAD refused to seal (the plaintext is too long for the algorithm).
    #[error("the AEAD refused to seal ({0} bytes)")]
    Seal(usize),
    /// A segmented envelope (format version 3) names a segment size this format does not allow.
    #[error("segment size {0} in the envelope is not a power of two from 4096 to 16 MiB")]
    BadSegmentSize(u32),
    /// A segmented envelope's segments do not add up: an empty last segment after others, or a
    /// segment of the wrong length.
    #[error("the segments of the sealed state are malformed: {0}")]
    BadSegments(String),
    /// A segment of a segmented envelope failed authentication: the envelope was altered, its
    /// segments reordered, cut short or extended, or the key is wrong.
    #[error(
        "segment {segment} of the sealed state failed authentication with key {key_id} (wrong key, or tampered, reordered, truncated or extended)"
    )]
    SegmentAuthentication {
        /// The key id tried.
        key_id: u32,
        /// The segment's index, from 0.
        segment: u64,
    },
}
