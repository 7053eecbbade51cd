//! Typed, versioned state: the [`Migratable`] chain and its self-describing encoding.
//!
//! Every version of a state type declares its version number, a schema fingerprint and the
//! version it upgrades from. The encoding ([`encode`]) prefixes postcard bytes with the version and
//! fingerprint, so [`decode`] knows which type the bytes are and walks the chain up to the type the
//! caller asked for. No `Any`, no downcast: the chain is a chain of types, resolved at compile time.

mod budget;
pub mod bulk_btree_map;
mod chain;
mod depth;
mod encoding;
mod error;
mod fingerprint;
pub mod hash_map;
mod lock;
pub mod precopy;
mod schema;
mod stream;

pub use chain::{Migratable, Origin, Stateless, VersionSchema, chain_of};
pub use depth::MAX_DECODE_DEPTH;
pub(crate) use encoding::encode_to;
pub use encoding::{EncodedState, HEADER_LEN, StateTag, decode, encode, encode_into};
pub use error::{CodecError, MigrationError, StateError};
pub(crate) use fingerprint::{FNV_OFFSET, fnv1a};
pub use fingerprint::{Fingerprint, fingerprint, legacy_fingerprint};
pub use lock::{LOCK_ENV, Problem, SchemaLockError, assert_schema_lock, check_schema_lock};
pub use schema::{Bytes, DataModelType, DataModelVariant, NamedType, NamedValue, NamedVariant, Schema, schema_text};
#[doc(hidden)]
pub use stream::{Body, Stream};
pub use stream::{SegmentSource, decode_segments};
