//! Pre-copy: a state's big map crosses a replacement while the old version serves, so that the
//! pause carries only what changed meanwhile.
//!
//! A state opts in by holding its entries in a [`PrecopyMap`] field marked `#[precopy]`:
//!
//! ```
//! use microkernel::{Migratable, PrecopyMap};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Migratable)]
//! #[migratable(version = 1)]
//! struct TableV1 {
//!     #[precopy]
//!     counts: PrecopyMap<String, u32>,
//!     label: String,
//! }
//!
//! #[derive(Serialize, Deserialize, Migratable)]
//! #[migratable(version = 2, from = TableV1)]
//! struct TableV2 {
//!     #[precopy]
//!     counts: PrecopyMap<String, u64>,
//!     label: String,
//! }
//!
//! impl From<TableV1> for TableV2 {
//!     fn from(v1: TableV1) -> Self {
//!         // The map crosses entry by entry (`u64: From<u32>`), the rest as a whole.
//!         Self { counts: v1.counts.upgrade(), label: v1.label }
//!     }
//! }
//! ```
//!
//! A replacement of a running service whose old and new states both pre-copy then goes:
//!
//! 1. holding the slot for an instant, it takes an O(1) snapshot of the map and starts
//!    recording the keys written; the old version serves on while the snapshot's entries are
//!    encoded, sealed, opened, decoded and upgraded one by one into the new version's map;
//! 2. in rounds, again holding the slot only for an instant, it takes the keys written during
//!    the last round and carries their values (or their removal) across the same way — until
//!    a round has at most [`FINAL_CHANGES`] keys to carry, or [`MAX_ROUNDS`] rounds have run, or
//!    a round did not shrink;
//! 3. it holds the slot for the pause: the last changes cross, then the rest of the state
//!    (with the map written empty) crosses and goes through the version chain as usual, and
//!    the map that crossed takes the empty map's place. Steps 3 and 4 of every replacement
//!    follow (stop the old version, start the new one, switch).
//!
//! The result is the state a stop-the-world replacement at the pause would give, if:
//!
//! - each version's map converts entry by entry: the `#[precopy]` field's value type
//!   implements `From` the previous version's (checked at compile time), and the key type is
//!   the same in every version;
//! - the state's conversion carries the map with [`PrecopyMap::upgrade`] into the new
//!   `#[precopy]` field and does nothing else with it. In the pause the map it gets is a
//!   *placeholder* (its entries crossed already): a conversion that reads or writes it (on any
//!   thread), copies it, or puts something else in the `#[precopy]` field is detected, and the
//!   replacement crosses the whole state in the pause instead — slower, not wrong;
//! - values change only through the map's `&mut` methods. A value with interior mutability
//!   (an `Arc<Mutex<..>>`, an atomic) changed through a shared reference is not recorded, and
//!   its change may be lost: keep such values out of a `PrecopyMap`.
//!
//! A pre-copy ends with its replacement, whichever way that ends: the map records the keys
//! written only while the replacement that started it runs (a write after that ends the
//! recording), and a second replacement started meanwhile crosses stop-the-world.
//!
//! Otherwise — a rollback, a service that is not running, an old version without a `#[precopy]`
//! field, or a chain that begins pre-copying after the old version (`#[precopy(start)]`) — the
//! replacement is stop-the-world, as for any state. A failure at any step leaves the old
//! version serving with its current state, as in any replacement.

mod hollow;
mod map;
pub(in crate::state) mod source;

use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub use hollow::Placeholder;
pub(crate) use hollow::exporting;
pub use map::PrecopyMap;
#[doc(hidden)]
pub use source::{Entries, PrecopyReceiver, PrecopySource};

use std::sync::Arc;

use super::stream::Body;
use super::{CodecError, Migratable, StateError, StateTag};

/// A round with at most this many keys written is the last: they cross in the pause, about
/// 0.1–0.3 ms for small entries (`cargo run --release --example bench_peers -- --precopy`).
pub const FINAL_CHANGES: usize = 256;

/// At most this many rounds before the pause, however much the service writes meanwhile.
pub const MAX_ROUNDS: u32 = 8;

/// A state whose `#[precopy]` field crosses before the pause; implemented by
/// `#[derive(Migratable)]` for a state with a field marked `#[precopy]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no pre-copied map",
    label = "its `#[precopy]` map cannot upgrade from this type",
    note = "mark `{Self}`'s `PrecopyMap` field `#[precopy]`, or write `#[precopy(start)]` on the newer version's field if pre-copy begins there"
)]
pub trait Precopy: Migratable {
    /// The map's key: the same in every version of the chain.
    type Key: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The map's value in this version.
    type Entry: Clone + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The `#[precopy]` map.
    fn precopy_map(&self) -> &PrecopyMap<Self::Key, Self::Entry>;

    /// The `#[precopy]` map, to fill.
    fn precopy_map_mut(&mut self) -> &mut PrecopyMap<Self::Key, Self::Entry>;

    /// Whether entries written by version `version` of the chain can be upgraded into this
    /// version's entries (that version and each one since has a pre-copied map).
    #[doc(hidden)]
    fn precopies_from(version: u32) -> bool;

    /// Decodes one entry written by version `version` from the front of `bytes` and upgrades
    /// it to this version's entry. Not meant to be overridden.
    #[doc(hidden)]
    fn decode_entry(version: u32, bytes: &mut &[u8]) -> Result<(Self::Key, Option<Self::Entry>), StateError>;

    /// Decodes a state that crossed in a pause (tagged `tag`, its map written empty) as the
    /// version it was written by, makes that version's `#[precopy]` map a placeholder of
    /// `token`, and upgrades it to this version. Not meant to be overridden.
    #[doc(hidden)]
    fn decode_paused(tag: StateTag, body: Body<'_, '_>, token: &Arc<Placeholder>) -> Result<Self, StateError>;
}

/// What a `#[precopy]` field must be: a [`PrecopyMap`].
#[diagnostic::on_unimplemented(
    message = "a `#[precopy]` field must be a `microkernel::PrecopyMap<K, V>`, not `{Self}`",
    label = "not a `PrecopyMap`"
)]
#[doc(hidden)]
pub trait PrecopyField {
    /// The key type.
    type Key;
    /// The value type.
    type Entry;
}

impl<K, V> PrecopyField for PrecopyMap<K, V> {
    type Key = K;
    type Entry = V;
}

/// Decodes one entry of `T`'s own version from the front of `bytes`.
#[doc(hidden)]
pub fn take_entry<T: Precopy>(bytes: &mut &[u8]) -> Result<(T::Key, Option<T::Entry>), StateError> {
    let (entry, rest) = postcard::take_from_bytes(bytes).map_err(|source| StateError::Decode {
        ty: T::TYPE_NAME,
        version: T::VERSION,
        source: CodecError(source),
    })?;
    *bytes = rest;
    Ok(entry)
}

/// [`Precopy::decode_paused`] for `T`'s own version: the state decoded, its map a placeholder.
#[doc(hidden)]
pub fn decode_paused_exact<T: Precopy>(
    tag: StateTag,
    body: Body<'_, '_>,
    token: &Arc<Placeholder>,
) -> Result<T, StateError> {
    let mut state = super::encoding::decode_exact::<T>(tag, body)?;
    state.precopy_map_mut().hollow_out(token);
    Ok(state)
}

/// One link of [`Precopy::decode_paused`]: `previous` upgraded to `T` as a decoding does.
#[doc(hidden)]
pub fn upgrade_paused<T: Migratable>(previous: T::Previous) -> Result<T, StateError> {
    super::chain::upgrade_caught::<T>(previous)
}

/// The receiving end for `T`, for an old version tagged `tag`, if its entries can upgrade to
/// `T`'s: that version (its fingerprint too) is in `T`'s chain and has a pre-copied map.
#[doc(hidden)]
pub fn receiver<T: Precopy>(tag: StateTag) -> Option<Box<dyn PrecopyReceiver<T>>> {
    let in_chain = super::chain_of::<T>()
        .iter()
        .any(|v| v.version == tag.version && v.fingerprint == tag.fingerprint);
    (in_chain && T::precopies_from(tag.version)).then(|| {
        Box::new(Receiver::<T> {
            version: tag.version,
            entries: imbl::HashMap::new(),
            token: Placeholder::new(),
        }) as Box<dyn PrecopyReceiver<T>>
    })
}

/// The new version's entries, filled as they cross.
struct Receiver<T: Precopy> {
    /// The old version, which wrote the entries.
    version: u32,
    entries: imbl::HashMap<T::Key, T::Entry>,
    /// The placeholder's token in the state that crosses in the pause.
    token: Arc<Placeholder>,
}

impl<T: Precopy> PrecopyReceiver<T> for Receiver<T> {
    fn absorb(&mut self, mut batch: &[u8]) -> Result<(), StateError> {
        while !batch.is_empty() {
            match T::decode_entry(self.version, &mut batch)? {
                (key, Some(value)) => self.entries.insert(key, value),
                (key, None) => self.entries.remove(&key),
            };
        }
        Ok(())
    }

    fn entries(&self) -> usize {
        self.entries.len()
    }

    fn decode_paused(&self, bytes: &[u8]) -> Result<T, StateError> {
        let (tag, body) = StateTag::split(bytes)?;
        T::decode_paused(tag, Body::Bytes(body), &self.token)
    }

    fn install(self: Box<Self>, state: &mut T) -> bool {
        let map = state.precopy_map_mut();
        if !map.is_placeholder_of(&self.token) || !self.token.carried_untouched() {
            return false;
        }
        map.fill(self.entries);
        true
    }
}

/// The error for entries of a version that has no pre-copied map in `T`'s chain.
#[doc(hidden)]
pub fn not_precopied<T: Migratable>(version: u32) -> StateError {
    super::chain::unknown_version::<T>(version)
}
