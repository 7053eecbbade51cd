//! Schema fingerprints: a 64-bit FNV-1a hash of a state type's whole structure and its version.
//!
//! The rule (docs/FORMAT.md, "Schema fingerprints"): what is hashed is everything that decides
//! what the bytes mean — the data model tree as postcard encodes it (each node's kind, so
//! integer width and sign, `Option`, sequences, maps, tuples and arrays with their lengths,
//! newtypes, structs and enums at any depth), the names and order of struct fields, and the
//! names and order of enum variants. Type names are not hashed: renaming a nested struct, or
//! changing a `HashMap` for a `BTreeMap` (both a map), keeps the fingerprint.

use std::fmt;

use super::schema::{DataModelType, DataModelVariant, NamedType, NamedValue};

/// A schema fingerprint: identifies what a state type's bytes mean at one version.
/// `#[derive(Migratable)]` computes it at compile time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({:016x})", self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The fingerprint of `schema` at `version`: FNV-1a over a walk of the whole structure, at
/// compile time when called in a `const`.
///
/// ```
/// use microkernel::state::{Schema, fingerprint};
///
/// #[derive(serde::Serialize, microkernel::Schema)]
/// struct Inner { a: u8, b: u8 }
/// #[derive(serde::Serialize, microkernel::Schema)]
/// struct Swapped { b: u8, a: u8 }
///
/// let inner = fingerprint(<Inner as Schema>::SCHEMA, 1);
/// assert_ne!(inner, fingerprint(<Swapped as Schema>::SCHEMA, 1)); // field order and names
/// assert_ne!(inner, fingerprint(<Inner as Schema>::SCHEMA, 2)); // the version
/// assert_ne!(fingerprint(<u8 as Schema>::SCHEMA, 1), fingerprint(<i8 as Schema>::SCHEMA, 1));
/// ```
pub const fn fingerprint(schema: &NamedType, version: u32) -> Fingerprint {
    let hash = fnv1a(FNV_OFFSET, FORMAT_DOMAIN);
    let hash = hash_type(hash, schema);
    Fingerprint(fnv1a(hash, &version.to_le_bytes()))
}

/// The fingerprint written before structural fingerprints: FNV-1a over the type's declaration text (type name,
/// field names and field types as written) and the version. It did not see nested types or
/// aliases; files carrying it are still read (docs/FORMAT.md says how much it proves).
///
/// ```
/// use microkernel::state::legacy_fingerprint;
/// assert_ne!(legacy_fingerprint("S { a: u32 }", 1), legacy_fingerprint("S { a: u64 }", 1));
/// ```
pub const fn legacy_fingerprint(schema_text: &str, version: u32) -> Fingerprint {
    let hash = fnv1a(FNV_OFFSET, schema_text.as_bytes());
    Fingerprint(fnv1a(hash, &version.to_le_bytes()))
}

/// Separates structural fingerprints from legacy ones (whose text never starts with a NUL).
const FORMAT_DOMAIN: &[u8] = b"\0microkernel schema 2\0";

/// One byte per node kind. These numbers are part of the format: never renumber them.
mod kind {
    pub(super) const BOOL: u8 = 1;
    pub(super) const I8: u8 = 2;
    pub(super) const U8: u8 = 3;
    pub(super) const I16: u8 = 4;
    pub(super) const I32: u8 = 5;
    pub(super) const I64: u8 = 6;
    pub(super) const I128: u8 = 7;
    pub(super) const U16: u8 = 8;
    pub(super) const U32: u8 = 9;
    pub(super) const U64: u8 = 10;
    pub(super) const U128: u8 = 11;
    pub(super) const USIZE: u8 = 12;
    pub(super) const ISIZE: u8 = 13;
    pub(super) const F32: u8 = 14;
    pub(super) const F64: u8 = 15;
    pub(super) const CHAR: u8 = 16;
    pub(super) const STRING: u8 = 17;
    pub(super) const BYTES: u8 = 18;
    pub(super) const OPTION: u8 = 19;
    pub(super) const UNIT: u8 = 20;
    pub(super) const UNIT_STRUCT: u8 = 21;
    pub(super) const NEWTYPE: u8 = 22;
    pub(super) const SEQ: u8 = 23;
    pub(super) const TUPLE: u8 = 24;
    pub(super) const TUPLE_STRUCT: u8 = 25;
    pub(super) const MAP: u8 = 26;
    pub(super) const STRUCT: u8 = 27;
    pub(super) const ENUM: u8 = 28;
    pub(super) const SCHEMA: u8 = 29;
    pub(super) const UNIT_VARIANT: u8 = 30;
    pub(super) const NEWTYPE_VARIANT: u8 = 31;
    pub(super) const TUPLE_VARIANT: u8 = 32;
    pub(super) const STRUCT_VARIANT: u8 = 33;
}

const fn hash_type(hash: u64, ty: &NamedType) -> u64 {
    use DataModelType as D;
    match *ty.ty {
        D::Bool => byte(hash, kind::BOOL),
        D::I8 => byte(hash, kind::I8),
        D::U8 => byte(hash, kind::U8),
        D::I16 => byte(hash, kind::I16),
        D::I32 => byte(hash, kind::I32),
        D::I64 => byte(hash, kind::I64),
        D::I128 => byte(hash, kind::I128),
        D::U16 => byte(hash, kind::U16),
        D::U32 => byte(hash, kind::U32),
        D::U64 => byte(hash, kind::U64),
        D::U128 => byte(hash, kind::U128),
        D::Usize => byte(hash, kind::USIZE),
        D::Isize => byte(hash, kind::ISIZE),
        D::F32 => byte(hash, kind::F32),
        D::F64 => byte(hash, kind::F64),
        D::Char => byte(hash, kind::CHAR),
        D::String => byte(hash, kind::STRING),
        D::ByteArray => byte(hash, kind::BYTES),
        D::Unit => byte(hash, kind::UNIT),
        D::UnitStruct => byte(hash, kind::UNIT_STRUCT),
        D::Schema => byte(hash, kind::SCHEMA),
        D::Option(inner) => hash_type(byte(hash, kind::OPTION), inner),
        D::NewtypeStruct(inner) => hash_type(byte(hash, kind::NEWTYPE), inner),
        D::Seq(item) => hash_type(byte(hash, kind::SEQ), item),
        D::Tuple(items) => hash_types(byte(hash, kind::TUPLE), items),
        D::TupleStruct(items) => hash_types(byte(hash, kind::TUPLE_STRUCT), items),
        D::Map { key, val } => hash_type(hash_type(byte(hash, kind::MAP), key), val),
        D::Struct(fields) => hash_fields(byte(hash, kind::STRUCT), fields),
        D::Enum(variants) => {
            let mut hash = length(byte(hash, kind::ENUM), variants.len());
            let mut i = 0;
            while i < variants.len() {
                hash = text(hash, variants[i].name);
                hash = match *variants[i].ty {
                    DataModelVariant::UnitVariant => byte(hash, kind::UNIT_VARIANT),
                    DataModelVariant::NewtypeVariant(inner) => hash_type(byte(hash, kind::NEWTYPE_VARIANT), inner),
                    DataModelVariant::TupleVariant(items) => hash_types(byte(hash, kind::TUPLE_VARIANT), items),
                    DataModelVariant::StructVariant(fields) => hash_fields(byte(hash, kind::STRUCT_VARIANT), fields),
                };
                i += 1;
            }
            hash
        }
    }
}

const fn hash_types(hash: u64, items: &[&NamedType]) -> u64 {
    let mut hash = length(hash, items.len());
    let mut i = 0;
    while i < items.len() {
        hash = hash_type(hash, items[i]);
        i += 1;
    }
    hash
}

const fn hash_fields(hash: u64, fields: &[&NamedValue]) -> u64 {
    let mut hash = length(hash, fields.len());
    let mut i = 0;
    while i < fields.len() {
        hash = hash_type(text(hash, fields[i].name), fields[i].ty);
        i += 1;
    }
    hash
}

const fn byte(hash: u64, b: u8) -> u64 {
    fnv1a(hash, &[b])
}

const fn length(hash: u64, n: usize) -> u64 {
    fnv1a(hash, &(n as u64).to_le_bytes())
}

/// A name, length first, so that `ab` + `c` and `a` + `bc` differ.
const fn text(hash: u64, name: &str) -> u64 {
    fnv1a(length(hash, name.len()), name.as_bytes())
}

/// FNV-1a's starting value.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into an FNV-1a hash.
pub(crate) const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}
