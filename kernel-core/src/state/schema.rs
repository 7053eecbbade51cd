//! The structure of a state type in postcard's data model, and its readable text.
//!
//! A [`Schema`] is a `const` tree of [`NamedType`]s — the types of the `postcard-schema` crate,
//! which describe serde's data model as postcard encodes it: each integer's width and sign,
//! strings, options, sequences, maps, tuples, structs with their fields, enums with their
//! variants, at any depth. The fingerprint ([`fingerprint`](super::fingerprint)) hashes that
//! tree; [`schema_text`] renders it for people (error messages, the schema lock).
//!
//! `#[derive(Migratable)]` implements `Schema` for a state type; a type nested in a state
//! derives it with `#[derive(microkernel::Schema)]`. The standard library's types that serde
//! encodes (integers, `String`, `Vec`, `Option`, maps, sets, tuples, arrays, `Box`, ...) have it
//! here. A foreign type (from another crate) cannot derive it: mark the field
//! `#[schema(as = T)]` with a type `T` that encodes the same way.
//!
//! Why a trait of our own rather than `postcard_schema::Schema` itself: a missing impl must be
//! a compile error that says what to add, at the field (a foreign trait cannot carry that
//! message), and fields with a customised encoding (`#[serde(with = ...)]`) must say what they
//! encode as. The data model and the primitive types' schemas are `postcard-schema`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, LinkedList, VecDeque};
use std::fmt::Write as _;

pub use postcard_schema::schema::{DataModelType, DataModelVariant, NamedType, NamedValue, NamedVariant};

/// A type whose structure, as postcard encodes it, is known at compile time: what the schema
/// fingerprint of a state hashes.
///
/// ```
/// use microkernel::state::{Schema, schema_text};
///
/// #[derive(serde::Serialize, serde::Deserialize, microkernel::Schema)]
/// struct Limits { soft: u16, hard: u16 }
///
/// assert_eq!(schema_text(<Limits as Schema>::SCHEMA), "Limits { soft: u16, hard: u16 }");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no schema, so a state holding it cannot be fingerprinted",
    label = "no `Schema` for `{Self}`",
    note = "add `#[derive(microkernel::Schema)]` to `{Self}` (beside its `Serialize, Deserialize`)",
    note = "for a type from another crate, mark the field `#[schema(as = T)]` with a type `T` that serde encodes the same way"
)]
pub trait Schema {
    /// The type's structure in postcard's data model.
    const SCHEMA: &'static NamedType;
}

/// Primitive types: their schemas are `postcard-schema`'s.
macro_rules! primitive {
    ($($ty:ty),* $(,)?) => {$(
        impl Schema for $ty {
            const SCHEMA: &'static NamedType = <$ty as postcard_schema::Schema>::SCHEMA;
        }
    )*};
}

primitive!(
    bool,
    u8,
    u16,
    u32,
    u64,
    u128,
    i8,
    i16,
    i32,
    i64,
    i128,
    f32,
    f64,
    char,
    (),
    String,
    str
);

// postcard writes `usize` and `isize` as varints like `u64` and `i64`; they keep kinds of their
// own in the fingerprint all the same (postcard-schema has no impl for them).
impl Schema for usize {
    const SCHEMA: &'static NamedType = &named("usize", &DataModelType::Usize);
}

impl Schema for isize {
    const SCHEMA: &'static NamedType = &named("isize", &DataModelType::Isize);
}

/// `name` over `ty`.
const fn named(name: &'static str, ty: &'static DataModelType) -> NamedType {
    NamedType { name, ty }
}

/// Stands for a byte string (serde's `serialize_bytes`, e.g. `serde_bytes` or a UUID in a
/// binary format) in `#[schema(as = microkernel::state::Bytes)]`; it has no values.
#[derive(Debug, Clone, Copy)]
pub enum Bytes {}

impl Schema for Bytes {
    const SCHEMA: &'static NamedType = &named("bytes", &DataModelType::ByteArray);
}

impl<T: Schema> Schema for Option<T> {
    const SCHEMA: &'static NamedType = &named("Option", &DataModelType::Option(T::SCHEMA));
}

/// Types serde encodes as a sequence of `T`.
macro_rules! sequence {
    ($($name:literal => $ty:ty),* $(,)?) => {$(
        impl<T: Schema> Schema for $ty {
            const SCHEMA: &'static NamedType = &named($name, &DataModelType::Seq(T::SCHEMA));
        }
    )*};
}

sequence!("Vec" => Vec<T>, "VecDeque" => VecDeque<T>, "LinkedList" => LinkedList<T>, "[T]" => [T], "BTreeSet" => BTreeSet<T>);

impl<T: Schema, S> Schema for HashSet<T, S> {
    const SCHEMA: &'static NamedType = &named("HashSet", &DataModelType::Seq(T::SCHEMA));
}

impl<K: Schema, V: Schema> Schema for BTreeMap<K, V> {
    const SCHEMA: &'static NamedType = &named(
        "BTreeMap",
        &DataModelType::Map {
            key: K::SCHEMA,
            val: V::SCHEMA,
        },
    );
}

impl<K: Schema, V: Schema, S> Schema for HashMap<K, V, S> {
    const SCHEMA: &'static NamedType = &named(
        "HashMap",
        &DataModelType::Map {
            key: K::SCHEMA,
            val: V::SCHEMA,
        },
    );
}

/// An array is a tuple to postcard: `N` elements, no length prefix.
impl<T: Schema, const N: usize> Schema for [T; N] {
    const SCHEMA: &'static NamedType = &named("[T; N]", &DataModelType::Tuple(&[T::SCHEMA; N]));
}

/// Types serde encodes exactly as the type they hold.
macro_rules! transparent {
    ($($ty:ty),* $(,)?) => {$(
        impl<T: Schema + ?Sized> Schema for $ty {
            const SCHEMA: &'static NamedType = T::SCHEMA;
        }
    )*};
}

transparent!(
    Box<T>,
    std::rc::Rc<T>,
    std::sync::Arc<T>,
    std::cell::RefCell<T>,
    std::sync::Mutex<T>,
    std::sync::RwLock<T>
);

impl<T: Schema + Copy> Schema for std::cell::Cell<T> {
    const SCHEMA: &'static NamedType = T::SCHEMA;
}

impl<T: Schema> Schema for std::num::Wrapping<T> {
    const SCHEMA: &'static NamedType = T::SCHEMA;
}

impl<T: Schema + ?Sized + ToOwned> Schema for std::borrow::Cow<'_, T> {
    const SCHEMA: &'static NamedType = T::SCHEMA;
}

impl<T: ?Sized> Schema for std::marker::PhantomData<T> {
    const SCHEMA: &'static NamedType = &named("PhantomData", &DataModelType::UnitStruct);
}

/// Non-zero integers are encoded as the integer.
macro_rules! nonzero {
    ($($ty:ty => $int:ty),* $(,)?) => {$(
        impl Schema for $ty {
            const SCHEMA: &'static NamedType = <$int as Schema>::SCHEMA;
        }
    )*};
}

nonzero!(
    std::num::NonZeroU8 => u8, std::num::NonZeroU16 => u16, std::num::NonZeroU32 => u32,
    std::num::NonZeroU64 => u64, std::num::NonZeroU128 => u128, std::num::NonZeroUsize => usize,
    std::num::NonZeroI8 => i8, std::num::NonZeroI16 => i16, std::num::NonZeroI32 => i32,
    std::num::NonZeroI64 => i64, std::num::NonZeroI128 => i128, std::num::NonZeroIsize => isize,
);

impl Schema for std::path::PathBuf {
    const SCHEMA: &'static NamedType = <String as Schema>::SCHEMA;
}

impl Schema for std::time::Duration {
    const SCHEMA: &'static NamedType = &named(
        "Duration",
        &DataModelType::Struct(&[
            &NamedValue {
                name: "secs",
                ty: <u64 as Schema>::SCHEMA,
            },
            &NamedValue {
                name: "nanos",
                ty: <u32 as Schema>::SCHEMA,
            },
        ]),
    );
}

impl<T: Schema, E: Schema> Schema for Result<T, E> {
    const SCHEMA: &'static NamedType = &named(
        "Result",
        &DataModelType::Enum(&[
            &NamedVariant {
                name: "Ok",
                ty: &DataModelVariant::NewtypeVariant(T::SCHEMA),
            },
            &NamedVariant {
                name: "Err",
                ty: &DataModelVariant::NewtypeVariant(E::SCHEMA),
            },
        ]),
    );
}

/// Tuples of up to 12 elements.
macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: Schema),+> Schema for ($($name,)+) {
            const SCHEMA: &'static NamedType = &named("(..)", &DataModelType::Tuple(&[$($name::SCHEMA),+]));
        }
    };
}

tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);
tuple!(A B C D E F G H I);
tuple!(A B C D E F G H I J);
tuple!(A B C D E F G H I J K);
tuple!(A B C D E F G H I J K L);

/// The schema as readable text: `Name { field: type, ... }` for structs, `enum Name { ... }`,
/// `[T]` for sequences, `{K: V}` for maps, `(A, B)` for tuples and arrays, primitives by name.
/// Nested types are written out in full, so the text shows everything the fingerprint covers
/// (and the type names, which it does not).
///
/// ```
/// use microkernel::state::{Schema, schema_text};
/// use std::collections::HashMap;
/// type Table = HashMap<String, Option<[u8; 2]>>;
/// assert_eq!(schema_text(<Table as Schema>::SCHEMA), "{String: Option<(u8, u8)>}");
/// ```
pub fn schema_text(schema: &NamedType) -> String {
    let mut out = String::new();
    write_type(&mut out, schema);
    out
}

fn write_type(out: &mut String, ty: &NamedType) {
    use DataModelType as D;
    match ty.ty {
        D::Bool => out.push_str("bool"),
        D::I8 => out.push_str("i8"),
        D::U8 => out.push_str("u8"),
        D::I16 => out.push_str("i16"),
        D::I32 => out.push_str("i32"),
        D::I64 => out.push_str("i64"),
        D::I128 => out.push_str("i128"),
        D::U16 => out.push_str("u16"),
        D::U32 => out.push_str("u32"),
        D::U64 => out.push_str("u64"),
        D::U128 => out.push_str("u128"),
        D::Usize => out.push_str("usize"),
        D::Isize => out.push_str("isize"),
        D::F32 => out.push_str("f32"),
        D::F64 => out.push_str("f64"),
        D::Char => out.push_str("char"),
        D::String => out.push_str("String"),
        D::ByteArray => out.push_str("bytes"),
        D::Unit => out.push_str("()"),
        D::Schema => out.push_str("Schema"),
        D::UnitStruct => out.push_str(ty.name),
        D::Option(inner) => {
            out.push_str("Option<");
            write_type(out, inner);
            out.push('>');
        }
        D::NewtypeStruct(inner) => {
            let _ = write!(out, "{}(", ty.name);
            write_type(out, inner);
            out.push(')');
        }
        D::Seq(item) => {
            out.push('[');
            write_type(out, item);
            out.push(']');
        }
        D::Tuple(items) => write_tuple(out, items),
        D::TupleStruct(items) => {
            out.push_str(ty.name);
            write_tuple(out, items);
        }
        D::Map { key, val } => {
            out.push('{');
            write_type(out, key);
            out.push_str(": ");
            write_type(out, val);
            out.push('}');
        }
        D::Struct(fields) => {
            out.push_str(ty.name);
            write_fields(out, fields);
        }
        D::Enum(variants) => {
            if variants.is_empty() {
                let _ = write!(out, "enum {} {{}}", ty.name);
                return;
            }
            let _ = write!(out, "enum {} {{ ", ty.name);
            for (i, variant) in variants.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(variant.name);
                match variant.ty {
                    DataModelVariant::UnitVariant => {}
                    DataModelVariant::NewtypeVariant(inner) => write_tuple(out, &[inner]),
                    DataModelVariant::TupleVariant(items) => write_tuple(out, items),
                    DataModelVariant::StructVariant(fields) => write_fields(out, fields),
                }
            }
            out.push_str(" }");
        }
    }
}

fn write_tuple(out: &mut String, items: &[&NamedType]) {
    out.push('(');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_type(out, item);
    }
    out.push(')');
}

fn write_fields(out: &mut String, fields: &[&NamedValue]) {
    if fields.is_empty() {
        out.push_str(" {}");
        return;
    }
    out.push_str(" { ");
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: ", field.name);
        write_type(out, field.ty);
    }
    out.push_str(" }");
}
