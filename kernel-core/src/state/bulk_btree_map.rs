//! `#[serde(with = "microkernel::state::bulk_btree_map")]`: a `BTreeMap` that decodes in linear
//! time.
//!
//! serde decodes a `BTreeMap` by inserting entries one at a time, each insert searching the
//! tree from its root and comparing keys it has to fetch from memory. An encoded `BTreeMap` is
//! already sorted, so collecting its entries and building the tree in one pass (what
//! `BTreeMap::from_iter` does with sorted input) is about twice as fast for large maps of
//! strings. The encoding is unchanged: a field can switch to this without a new version (and
//! the schema fingerprint stays the map's). Room for the entries is reserved up front, but never
//! for more entries than the input has bytes, nor for more than 64 MiB, whatever length the
//! input claims.
//!
//! ```
//! use std::collections::BTreeMap;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, microkernel::Migratable)]
//! #[migratable(version = 1)]
//! struct Table {
//!     #[serde(with = "microkernel::state::bulk_btree_map")]
//!     entries: BTreeMap<String, u64>,
//! }
//! let t = Table { entries: [("a".to_owned(), 1)].into() };
//! let bytes = microkernel::state::encode(&t)?;
//! let back: Table = microkernel::state::decode(bytes.as_bytes())?;
//! assert_eq!(back.entries["a"], 1);
//! # Ok::<(), microkernel::state::StateError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serializes the map as serde does.
pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
    map: &BTreeMap<K, V>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    map.serialize(serializer)
}

/// Deserializes the map by collecting its entries and building the tree in one pass.
pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
    D: Deserializer<'de>,
{
    struct Entries<K, V>(PhantomData<(K, V)>);

    impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
        type Value = Vec<(K, V)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let claimed = map.size_hint().unwrap_or(0);
            let reserve = super::budget::reserve_bound(claimed, std::mem::size_of::<(K, V)>());
            let mut entries = Vec::with_capacity(reserve);
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }

    let entries = deserializer.deserialize_map(Entries(PhantomData))?;
    Ok(entries.into_iter().collect())
}
