//! The version chain: each [`Migratable`] type names the type it upgrades from.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{Fingerprint, MigrationError, StateError, StateTag, fingerprint};

/// One version of a service's state. Derive it with `#[derive(Migratable)]`:
///
/// ```
/// use microkernel::{Migratable, state};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Migratable)]
/// #[migratable(version = 1)]
/// struct CounterV1 { count: u32 }
///
/// #[derive(Serialize, Deserialize, Migratable, Debug)]
/// #[migratable(version = 2, from = CounterV1)]
/// struct CounterV2 { count: u64, label: String }
///
/// impl From<CounterV1> for CounterV2 {
///     fn from(v1: CounterV1) -> Self { Self { count: v1.count.into(), label: "none".into() } }
/// }
///
/// let bytes = state::encode(&CounterV1 { count: 7 })?;
/// let v2: CounterV2 = state::decode(bytes.as_bytes())?;
/// assert_eq!(v2.count, 7);
/// # Ok::<(), microkernel::state::StateError>(())
/// ```
///
/// The chain is checked at compile time: `from` must be `Migratable`, have a lower version and
/// convert into `Self` (`From`, or `TryFrom` with `try_from`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a versioned state type",
    label = "not `Migratable`",
    note = "add `#[derive(Serialize, Deserialize, Migratable)]` and `#[migratable(version = N)]` to `{Self}`"
)]
pub trait Migratable: Serialize + DeserializeOwned + Send + 'static {
    /// This version's number, ≥ 1, strictly greater than `Previous::VERSION`.
    const VERSION: u32;
    /// Fingerprint of the schema text and the version.
    const FINGERPRINT: Fingerprint;
    /// The schema text the fingerprint was computed from, e.g. `EchoStateV1 { count: u32 }`.
    const SCHEMA: &'static str;
    /// The type's name, for messages.
    const TYPE_NAME: &'static str;

    /// The version this one upgrades from; [`Origin`] for the first version.
    type Previous: Migratable;

    /// Converts the previous version's value into this version.
    fn upgrade(previous: Self::Previous) -> Result<Self, MigrationError>;

    /// Converts this value back into the previous version, for a rollback. The default refuses.
    fn downgrade(&self) -> Result<Self::Previous, MigrationError> {
        Err(MigrationError::NoDowngrade {
            ty: Self::TYPE_NAME,
            version: Self::VERSION,
        })
    }

    /// Decodes a body tagged `tag` as this type, walking the chain down to the tagged version
    /// and upgrading back up. Not meant to be overridden; call [`decode`](super::decode).
    #[doc(hidden)]
    fn decode_tagged(tag: StateTag, body: &[u8]) -> Result<Self, StateError> {
        if tag.version == Self::VERSION {
            super::encoding::decode_exact::<Self>(tag, body)
        } else if tag.version < Self::VERSION {
            let previous = Self::Previous::decode_tagged(tag, body)?;
            Ok(Self::upgrade(previous)?)
        } else {
            Err(unknown_version::<Self>(tag.version))
        }
    }
}

pub(super) fn unknown_version<T: Migratable>(found: u32) -> StateError {
    StateError::UnknownVersion {
        ty: T::TYPE_NAME,
        found,
        newest: T::VERSION,
    }
}

/// The empty start of every chain: the `Previous` of a first version. It has no values, so
/// nothing ever upgrades from it.
#[derive(Debug, Serialize, Deserialize)]
pub enum Origin {}

impl Migratable for Origin {
    const VERSION: u32 = 0;
    const FINGERPRINT: Fingerprint = fingerprint("Origin", 0);
    const SCHEMA: &'static str = "Origin";
    const TYPE_NAME: &'static str = "Origin";
    type Previous = Origin;

    fn upgrade(previous: Origin) -> Result<Self, MigrationError> {
        match previous {}
    }

    fn decode_tagged(tag: StateTag, _body: &[u8]) -> Result<Self, StateError> {
        Err(unknown_version::<Self>(tag.version))
    }
}

/// The state of a service that has none. Its encoding is the 12-byte header alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stateless;

impl Migratable for Stateless {
    const VERSION: u32 = 1;
    const FINGERPRINT: Fingerprint = fingerprint(Self::SCHEMA, 1);
    const SCHEMA: &'static str = "Stateless";
    const TYPE_NAME: &'static str = "Stateless";
    type Previous = Origin;

    fn upgrade(previous: Origin) -> Result<Self, MigrationError> {
        match previous {}
    }
}
