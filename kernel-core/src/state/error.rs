//! Errors of the state path.

use super::Fingerprint;
use crate::boxed::BoxError;

/// A conversion between two versions of a state failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// A fallible upgrade (`TryFrom`) refused the previous version's value.
    #[error("upgrading {from} (v{from_version}) to {to} (v{to_version}) failed")]
    Upgrade {
        /// Type upgraded from.
        from: &'static str,
        /// Its version.
        from_version: u32,
        /// Type upgraded to.
        to: &'static str,
        /// Its version.
        to_version: u32,
        /// The conversion's own error.
        #[source]
        source: BoxError,
    },
    /// An upgrade conversion (`From` or `TryFrom`) panicked.
    #[error("upgrading {from} (v{from_version}) to {to} (v{to_version}) panicked: {message}")]
    UpgradePanicked {
        /// Type upgraded from.
        from: &'static str,
        /// Its version.
        from_version: u32,
        /// Type upgraded to.
        to: &'static str,
        /// Its version.
        to_version: u32,
        /// The panic's message.
        message: String,
    },
    /// A downgrade failed or is not declared.
    #[error("downgrading {from} (v{from_version}) failed")]
    Downgrade {
        /// Type downgraded from.
        from: &'static str,
        /// Its version.
        from_version: u32,
        /// The conversion's own error.
        #[source]
        source: BoxError,
    },
    /// A downgrade conversion (`down = ...`) panicked.
    #[error("downgrading {from} (v{from_version}) panicked: {message}")]
    DowngradePanicked {
        /// Type downgraded from.
        from: &'static str,
        /// Its version.
        from_version: u32,
        /// The panic's message.
        message: String,
    },
    /// The type declares no downgrade (`down = ...`).
    #[error("{ty} (v{version}) declares no downgrade; add `down = path::to::fn` to #[migratable]")]
    NoDowngrade {
        /// The type.
        ty: &'static str,
        /// Its version.
        version: u32,
    },
    /// The type is the first version of its chain: there is no earlier version to roll back to.
    #[error("{ty} (v{version}) is the first version of its chain: there is no earlier version to roll back to")]
    FirstVersion {
        /// The type.
        ty: &'static str,
        /// Its version.
        version: u32,
    },
}

/// Encoding or decoding a versioned state failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Fewer bytes than the 12-byte version header.
    #[error("state bytes too short: {len} bytes, the header alone is {}", super::HEADER_LEN)]
    Truncated {
        /// Bytes given.
        len: usize,
    },
    /// The bytes hold a version newer than the newest this program knows.
    #[error("state version {found} of {ty} is newer than this program's newest, v{newest}")]
    TooNew {
        /// The newest known type.
        ty: &'static str,
        /// Version in the bytes.
        found: u32,
        /// Newest version known.
        newest: u32,
    },
    /// No type in the chain has this version.
    #[error("state version {found} is not in the chain of {ty} (v{newest})")]
    UnknownVersion {
        /// The newest known type.
        ty: &'static str,
        /// Version in the bytes.
        found: u32,
        /// Newest version known.
        newest: u32,
    },
    /// The version is known but the fingerprint is not that version's: a different type, or a
    /// released type that was edited.
    #[error("state v{version} has fingerprint {found}, but {ty} v{version} has {expected}")]
    FingerprintMismatch {
        /// The type at that version.
        ty: &'static str,
        /// The version.
        version: u32,
        /// Fingerprint of the type.
        expected: Fingerprint,
        /// Fingerprint in the bytes.
        found: Fingerprint,
    },
    /// The postcard body does not decode as the type.
    #[error("state bytes do not decode as {ty} v{version}")]
    Decode {
        /// The type.
        ty: &'static str,
        /// The version.
        version: u32,
        /// postcard's error.
        #[source]
        source: CodecError,
    },
    /// The body nests deeper than [`MAX_DECODE_DEPTH`](super::MAX_DECODE_DEPTH) levels: a
    /// hostile input aimed at a recursive type (one reached through `#[schema(as = ..)]`, which
    /// the derive cannot see), refused before it exhausts the stack.
    #[error("state bytes of {ty} v{version} nest deeper than {limit} levels")]
    TooDeep {
        /// The type.
        ty: &'static str,
        /// The version.
        version: u32,
        /// The limit, [`MAX_DECODE_DEPTH`](super::MAX_DECODE_DEPTH).
        limit: usize,
    },
    /// Bytes remain after the value.
    #[error("{extra} trailing bytes after {ty} v{version}")]
    TrailingBytes {
        /// The type.
        ty: &'static str,
        /// The version.
        version: u32,
        /// How many bytes were left.
        extra: usize,
    },
    /// The value does not encode.
    #[error("{ty} v{version} does not encode")]
    Encode {
        /// The type.
        ty: &'static str,
        /// The version.
        version: u32,
        /// postcard's error.
        #[source]
        source: CodecError,
    },
    /// Walking the chain failed in a conversion.
    #[error(transparent)]
    Migration(#[from] MigrationError),
}

/// What postcard (the state encoding) reported; its message says what went wrong in the bytes.
/// A type of our own, so that the codec can change without changing this crate's API.
#[derive(Debug)]
pub struct CodecError(pub(crate) postcard::Error);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for CodecError {}
