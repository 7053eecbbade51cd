//! A bound on how deeply a decoded state may nest: [`MAX_DECODE_DEPTH`] levels.
//!
//! postcard decodes by recursion, one call per level of nesting in the input. A state type
//! whose schema is finite nests no deeper than its schema, but a field marked
//! `#[schema(as = ..)]` may hold a recursive type the derive never sees (a tree from another
//! crate), and then a hostile input of a few megabytes nests a million levels and overflows
//! the stack — an abort no caller can catch. So the deserializer is wrapped in [`Depth`], which
//! counts the levels entered (each option, sequence, map, tuple, struct, enum and newtype) and
//! refuses the one past the limit with an error the decoder reports as
//! [`StateError::TooDeep`](super::StateError::TooDeep).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

/// How many levels of nesting a decoded state may have; an input that nests deeper is refused
/// with [`StateError::TooDeep`](super::StateError::TooDeep). Each option, sequence, map,
/// tuple, struct, enum and newtype is a level: a struct holding a `Vec` of structs is three.
pub const MAX_DECODE_DEPTH: usize = 128;

/// Why a bounded decoding failed.
pub(super) enum Failure<E> {
    /// The input nests deeper than [`MAX_DECODE_DEPTH`].
    TooDeep,
    /// The deserializer's own error.
    Codec(E),
}

/// Deserializes a `T` from `deserializer`, at most [`MAX_DECODE_DEPTH`] levels deep.
pub(super) fn deserialize<'de, T, D>(deserializer: D) -> Result<T, Failure<D::Error>>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    let tripped = Cell::new(false);
    let budget = Budget {
        left: MAX_DECODE_DEPTH,
        tripped: &tripped,
    };
    T::deserialize(Depth {
        inner: deserializer,
        budget,
    })
    .map_err(|error| {
        // A type may wrap or replace the error it got; the flag says what happened.
        if tripped.get() {
            Failure::TooDeep
        } else {
            Failure::Codec(error)
        }
    })
}

/// The levels still allowed below the current one, and where to note that the limit was hit.
#[derive(Clone, Copy)]
struct Budget<'t> {
    left: usize,
    tripped: &'t Cell<bool>,
}

impl<'t> Budget<'t> {
    /// Enters one more level, or fails if none is left.
    #[inline]
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Self { left, ..self }),
            None => {
                self.tripped.set(true);
                Err(E::custom(format_args!(
                    "the input nests deeper than {MAX_DECODE_DEPTH} levels"
                )))
            }
        }
    }
}

/// A deserializer that counts the levels it enters.
struct Depth<'t, D> {
    inner: D,
    budget: Budget<'t>,
}

/// A visitor, seed or access of the deserializer below, carrying the levels left.
struct Wrap<'t, X> {
    inner: X,
    budget: Budget<'t>,
}

impl<'t, X> Wrap<'t, X> {
    #[inline]
    fn new(inner: X, budget: Budget<'t>) -> Self {
        Self { inner, budget }
    }
}

/// Methods that read a value holding no other value: the visitor is wrapped, no level entered.
macro_rules! flat {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Wrap::new(visitor, self.budget))
        }
    )*};
}

/// Methods that read a value that may hold others: one level entered.
macro_rules! nested {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let budget = self.budget.enter()?;
            self.inner.$method(Wrap::new(visitor, budget))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Depth<'_, D> {
    type Error = D::Error;

    flat!(
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    );
    nested!(deserialize_any deserialize_option deserialize_seq deserialize_map deserialize_ignored_any);

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_unit_struct(name, Wrap::new(visitor, self.budget))
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        let budget = self.budget.enter()?;
        self.inner.deserialize_newtype_struct(name, Wrap::new(visitor, budget))
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        let budget = self.budget.enter()?;
        self.inner.deserialize_tuple(len, Wrap::new(visitor, budget))
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget.enter()?;
        self.inner
            .deserialize_tuple_struct(name, len, Wrap::new(visitor, budget))
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget.enter()?;
        self.inner.deserialize_struct(name, fields, Wrap::new(visitor, budget))
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget.enter()?;
        self.inner.deserialize_enum(name, variants, Wrap::new(visitor, budget))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Visits whose value holds nothing more: forwarded as they are.
macro_rules! visit {
    ($($method:ident: $ty:ty)*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
            self.inner.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit!(
        visit_bool: bool visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64 visit_i128: i128
        visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64 visit_u128: u128
        visit_f32: f32 visit_f64: f64 visit_char: char visit_str: &str
        visit_borrowed_str: &'de str visit_string: String visit_bytes: &[u8]
        visit_borrowed_bytes: &'de [u8] visit_byte_buf: Vec<u8>
    );

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Depth {
            inner: deserializer,
            budget: self.budget,
        })
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Depth {
            inner: deserializer,
            budget: self.budget,
        })
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Wrap::new(seq, self.budget))
    }

    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Wrap::new(map, self.budget))
    }

    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Wrap::new(data, self.budget))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Depth {
            inner: deserializer,
            budget: self.budget,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Wrap::new(seed, self.budget))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Wrap::new(seed, self.budget))
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Wrap::new(seed, self.budget))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'t, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'t, A> {
    type Error = A::Error;
    type Variant = Wrap<'t, A::Variant>;

    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(Wrap::new(seed, self.budget))?;
        Ok((value, Wrap::new(variant, self.budget)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Wrap::new(seed, self.budget))
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(len, Wrap::new(visitor, self.budget))
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(fields, Wrap::new(visitor, self.budget))
    }
}
