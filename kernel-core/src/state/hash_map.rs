//! `#[serde(with = "microkernel::state::hash_map")]`: a `HashMap` whose table is sized once.
//!
//! serde decodes a `HashMap` into a table it pre-sizes cautiously — at most 1 MiB of entries,
//! whatever the input says (32,768 entries of `(String, u64)`) — so a larger map rehashes as it
//! grows, moving every entry again. postcard states the entry count up front, so the table can be
//! sized once instead. The encoding is unchanged: a field can switch to this without a new
//! version (and the schema fingerprint stays the map's). The count is trusted only as far as the
//! input's bytes can hold it: never more entries than the body being decoded has bytes, nor more
//! than 64 MiB of entries, whatever length the input claims. Duplicate keys behave as serde's:
//! the last one wins.
//!
//! ```
//! use std::collections::HashMap;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, microkernel::Migratable)]
//! #[migratable(version = 1)]
//! struct Table {
//!     #[serde(with = "microkernel::state::hash_map")]
//!     entries: HashMap<String, u64>,
//! }
//! let t = Table { entries: [("a".to_owned(), 1)].into() };
//! let bytes = microkernel::state::encode(&t)?;
//! let back: Table = microkernel::state::decode(bytes.as_bytes())?;
//! assert_eq!(back.entries["a"], 1);
//! # Ok::<(), microkernel::state::StateError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serializes the map as serde does.
pub fn serialize<K: Serialize, V: Serialize, H, S: Serializer>(
    map: &HashMap<K, V, H>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    map.serialize(serializer)
}

/// Deserializes the map into a table sized for the entries the input claims and can hold.
pub fn deserialize<'de, K, V, H, D>(deserializer: D) -> Result<HashMap<K, V, H>, D::Error>
where
    K: Deserialize<'de> + Eq + Hash,
    V: Deserialize<'de>,
    H: BuildHasher + Default,
    D: Deserializer<'de>,
{
    struct Entries<K, V, H>(PhantomData<(K, V, H)>);

    impl<'de, K, V, H> Visitor<'de> for Entries<K, V, H>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        H: BuildHasher + Default,
    {
        type Value = HashMap<K, V, H>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let claimed = map.size_hint().unwrap_or(0);
            let reserve = super::budget::reserve_bound(claimed, std::mem::size_of::<(K, V)>());
            let mut entries = HashMap::with_capacity_and_hasher(reserve, H::default());
            while let Some((key, value)) = map.next_entry()? {
                entries.insert(key, value);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(Entries(PhantomData))
}
