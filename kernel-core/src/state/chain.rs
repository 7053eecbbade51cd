//! The version chain: each [`Migratable`] type names the type it upgrades from.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::schema::{DataModelType, NamedType, Schema};
use super::stream::Body;
use super::{Fingerprint, MigrationError, StateError, StateTag, fingerprint, schema_text};

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
///
/// The derive also implements [`Schema`] for the type: its whole structure, nested types
/// included (each derives `microkernel::Schema`), which [`FINGERPRINT`](Self::FINGERPRINT)
/// hashes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a versioned state type",
    label = "not `Migratable`",
    note = "add `#[derive(Serialize, Deserialize, Migratable)]` and `#[migratable(version = N)]` to `{Self}`"
)]
pub trait Migratable: Schema + Serialize + DeserializeOwned + Send + 'static {
    /// This version's number, ≥ 1, strictly greater than `Previous::VERSION`.
    const VERSION: u32;
    /// Fingerprint of the whole structure ([`Schema::SCHEMA`]) and the version.
    const FINGERPRINT: Fingerprint = fingerprint(<Self as Schema>::SCHEMA, Self::VERSION);
    /// The fingerprint this version had before structural fingerprints (a hash of its
    /// declaration's text), still accepted when decoding so that older files load; `None` for
    /// a type that never had one. See docs/FORMAT.md.
    const LEGACY_FINGERPRINT: Option<Fingerprint> = None;
    /// The type's name, for messages.
    const TYPE_NAME: &'static str;

    /// The version this one upgrades from; [`Origin`] for the first version.
    type Previous: Migratable;

    /// Converts the previous version's value into this version.
    fn upgrade(previous: Self::Previous) -> Result<Self, MigrationError>;

    /// Converts this value back into the previous version, for a rollback. The default refuses:
    /// [`MigrationError::NoDowngrade`], or [`MigrationError::FirstVersion`] for the first
    /// version of a chain.
    fn downgrade(&self) -> Result<Self::Previous, MigrationError> {
        let (ty, version) = (Self::TYPE_NAME, Self::VERSION);
        Err(if <Self::Previous as Migratable>::VERSION == 0 {
            MigrationError::FirstVersion { ty, version }
        } else {
            MigrationError::NoDowngrade { ty, version }
        })
    }

    /// Whether the type has a `#[precopy]` map. Not meant to be overridden.
    #[doc(hidden)]
    const PRECOPY: bool = false;

    /// The `#[precopy]` map, to carry across before a replacement's pause. Not meant to be
    /// overridden.
    #[doc(hidden)]
    fn precopy_source(&self) -> Option<&dyn super::precopy::source::PrecopySource> {
        None
    }

    /// A map of this type's to fill with the entries of an old version tagged `tag`, if they
    /// can cross before the pause. Not meant to be overridden.
    #[doc(hidden)]
    fn precopy_receiver(tag: StateTag) -> Option<Box<dyn super::precopy::source::PrecopyReceiver<Self>>>
    where
        Self: Sized,
    {
        let _ = tag;
        None
    }

    /// Appends every version of the chain, oldest first, ending with this one. Not meant to be
    /// overridden; call [`chain_of`](super::chain_of).
    #[doc(hidden)]
    fn describe_chain(out: &mut Vec<VersionSchema>) {
        Self::Previous::describe_chain(out);
        out.push(VersionSchema::of::<Self>());
    }

    /// Decodes a body tagged `tag` as this type, walking the chain down to the tagged version
    /// and upgrading back up. Not meant to be overridden; call [`decode`](super::decode).
    #[doc(hidden)]
    fn decode_tagged(tag: StateTag, body: Body<'_, '_>) -> Result<Self, StateError> {
        if tag.version == Self::VERSION {
            super::encoding::decode_exact::<Self>(tag, body)
        } else if tag.version < Self::VERSION {
            let previous = Self::Previous::decode_tagged(tag, body)?;
            upgrade_caught::<Self>(previous)
        } else {
            Err(unknown_version::<Self>(tag.version))
        }
    }
}

/// One version of a chain: its type, number, fingerprint and structure.
#[derive(Debug, Clone, Copy)]
pub struct VersionSchema {
    /// The type's name.
    pub type_name: &'static str,
    /// The version number.
    pub version: u32,
    /// The fingerprint of the structure and the version.
    pub fingerprint: Fingerprint,
    /// The structure.
    pub schema: &'static NamedType,
}

impl VersionSchema {
    /// The entry of `T`.
    pub fn of<T: Migratable>() -> Self {
        Self {
            type_name: T::TYPE_NAME,
            version: T::VERSION,
            fingerprint: T::FINGERPRINT,
            schema: <T as Schema>::SCHEMA,
        }
    }

    /// The structure as readable text ([`schema_text`]).
    pub fn text(&self) -> String {
        schema_text(self.schema)
    }
}

/// Every version of `T`'s chain, oldest first, `T` last.
///
/// ```
/// # use microkernel::{Migratable, state};
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, Migratable)]
/// #[migratable(version = 1)]
/// struct V1 { n: u32 }
/// #[derive(Serialize, Deserialize, Migratable)]
/// #[migratable(version = 2, from = V1)]
/// struct V2 { n: u64 }
/// impl From<V1> for V2 { fn from(v: V1) -> Self { Self { n: v.n.into() } } }
///
/// let chain = state::chain_of::<V2>();
/// assert_eq!(chain.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
/// assert_eq!(chain[0].text(), "V1 { n: u32 }");
/// ```
pub fn chain_of<T: Migratable>() -> Vec<VersionSchema> {
    let mut out = Vec::new();
    T::describe_chain(&mut out);
    out
}

/// `T::upgrade`, a panicking conversion being an upgrade's failure like a refusing one.
pub(super) fn upgrade_caught<T: Migratable>(previous: T::Previous) -> Result<T, StateError> {
    let upgraded = crate::panic::catch(|| T::upgrade(previous)).map_err(|message| MigrationError::UpgradePanicked {
        from: <T::Previous as Migratable>::TYPE_NAME,
        from_version: <T::Previous as Migratable>::VERSION,
        to: T::TYPE_NAME,
        to_version: T::VERSION,
        message,
    })?;
    Ok(upgraded?)
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

impl Schema for Origin {
    const SCHEMA: &'static NamedType = &NamedType {
        name: "Origin",
        ty: &DataModelType::Enum(&[]),
    };
}

impl Migratable for Origin {
    const VERSION: u32 = 0;
    const TYPE_NAME: &'static str = "Origin";
    type Previous = Origin;

    fn upgrade(previous: Origin) -> Result<Self, MigrationError> {
        match previous {}
    }

    fn describe_chain(_: &mut Vec<VersionSchema>) {}

    fn decode_tagged(tag: StateTag, _body: Body<'_, '_>) -> Result<Self, StateError> {
        Err(unknown_version::<Self>(tag.version))
    }
}

/// The state of a service that has none. Its encoding is the 12-byte header alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stateless;

impl Schema for Stateless {
    const SCHEMA: &'static NamedType = &NamedType {
        name: "Stateless",
        ty: &DataModelType::UnitStruct,
    };
}

impl Migratable for Stateless {
    const VERSION: u32 = 1;
    const LEGACY_FINGERPRINT: Option<Fingerprint> = Some(super::legacy_fingerprint("Stateless", 1));
    const TYPE_NAME: &'static str = "Stateless";
    type Previous = Origin;

    fn upgrade(previous: Origin) -> Result<Self, MigrationError> {
        match previous {}
    }
}
