//! [`PrecopyMap`]: a map whose entries can cross a replacement while the old version serves.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::hollow::{self, Placeholder};
use super::source::{Entries, PrecopySource};
use crate::state::schema::{NamedType, Schema};

/// A hash map whose entries a replacement copies *before* its pause (pre-copy).
///
/// Mark the field `#[precopy]` in a [`Migratable`](crate::Migratable) state and a replacement
/// carries an O(1) snapshot of the map across while the old version serves, then, in rounds,
/// the entries written meanwhile; it pauses the service only to carry the last few changes and
/// the rest of the state. The pause then depends on how much was written during the copy, not
/// on the size of the map. See [`Precopy`](super::Precopy) for the rules.
///
/// The map is persistent ([`imbl::HashMap`]): a snapshot shares its structure, and a write
/// after a snapshot copies only the path to the entry it changes. Reads and writes cost more
/// than a `std` `HashMap`'s; while a pre-copy runs, each write also records its key.
///
/// Its encoding is a map's, the same bytes and the same [schema](crate::Schema) as a
/// `HashMap<K, V>`'s: a field can change from `HashMap` to `PrecopyMap` without a new version.
///
/// ```
/// use microkernel::PrecopyMap;
///
/// let mut counts: PrecopyMap<String, u64> = PrecopyMap::new();
/// counts.insert("a".into(), 1);
/// *counts.get_mut("a").unwrap() += 1;
/// assert_eq!(counts.get("a"), Some(&2));
/// assert_eq!(counts.len(), 1);
/// ```
pub struct PrecopyMap<K, V> {
    entries: imbl::HashMap<K, V>,
    /// The keys written since the last snapshot while a pre-copy runs, `None` otherwise. The
    /// kernel starts and ends the recording holding the service's slot and a shared reference
    /// only, hence the lock; the service's handler, with `&mut self`, reaches it through
    /// `get_mut` and never locks.
    changed: Mutex<Option<Recording<K>>>,
    /// Set in a placeholder decoded during a pre-copy's pause (see `hollow`).
    placeholder: Option<Arc<Placeholder>>,
    /// Which map this is: a new one (made, cloned or decoded) has a new id, so that a
    /// replacement sees a handler that swapped the whole map for another during a pre-copy.
    id: u64,
}

/// The next map's id.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The keys written for one pre-copy.
struct Recording<K> {
    /// The replacement that records: once it is gone (ended, failed, or given up without
    /// stopping the recording), the next write ends the recording.
    listener: Weak<()>,
    keys: HashSet<K>,
}

impl<K: Hash + Eq + Clone, V: Clone> PrecopyMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::from_entries(imbl::HashMap::new())
    }

    fn from_entries(entries: imbl::HashMap<K, V>) -> Self {
        Self {
            entries,
            changed: Mutex::new(None),
            placeholder: None,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read().get(key)
    }

    /// Whether the map has `key`.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read().contains_key(key)
    }

    /// The value of `key`, to change in place (recorded as a write of `key`, changed or not).
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (key, _) = self.read().get_key_value(key)?;
        let key = key.clone();
        self.write(&key).get_mut(&key)
    }

    /// The value of `key`, inserted by `default` if missing, to change in place.
    pub fn get_or_insert_with(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        self.write(&key).entry(key).or_insert_with(default)
    }

    /// Sets `key` to `value`; returns the value it had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.write(&key).insert(key, value)
    }

    /// Removes `key`; returns the value it had.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (key, _) = self.read().get_key_value(key)?;
        let key = key.clone();
        self.write(&key).remove(&key)
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let doomed: Vec<K> = self
            .read()
            .iter()
            .filter(|(k, v)| !keep(k, v))
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.write(&key).remove(&key);
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        let keys: Vec<K> = self.read().keys().cloned().collect();
        for key in keys {
            self.write(&key).remove(&key);
        }
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> imbl::hashmap::Iter<'_, K, V, imbl::shared_ptr::DefaultSharedPtr> {
        self.read().iter()
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> imbl::hashmap::Keys<'_, K, V, imbl::shared_ptr::DefaultSharedPtr> {
        self.read().keys()
    }

    /// The values, in no particular order.
    pub fn values(&self) -> imbl::hashmap::Values<'_, K, V, imbl::shared_ptr::DefaultSharedPtr> {
        self.read().values()
    }

    /// Converts every value into the next version's value type: how a state's version
    /// conversion carries its `#[precopy]` map across.
    ///
    /// During a pre-copy replacement the entries have crossed (and been converted one by one
    /// with the same `From`) before the pause, so this converts nothing then: the conversion
    /// of the state must carry its map with `upgrade` and read nothing in it. A conversion
    /// that does read it (say, to count the entries) still gives the right result, because the
    /// replacement then crosses the whole state in its pause, as a stop-the-world one does.
    #[must_use]
    pub fn upgrade<W: From<V> + Clone>(self) -> PrecopyMap<K, W> {
        // A placeholder carries its token across, and no entries: they crossed already.
        let entries = match self.placeholder {
            Some(_) => imbl::HashMap::new(),
            None => self.entries.into_iter().map(|(k, v)| (k, W::from(v))).collect(),
        };
        PrecopyMap {
            placeholder: self.placeholder,
            ..PrecopyMap::from_entries(entries)
        }
    }

    /// The entries, for reading.
    fn read(&self) -> &imbl::HashMap<K, V> {
        if let Some(placeholder) = &self.placeholder {
            placeholder.touched();
        }
        &self.entries
    }

    /// The entries, for writing `key`, which a running pre-copy records.
    fn write(&mut self, key: &K) -> &mut imbl::HashMap<K, V> {
        if let Some(placeholder) = &self.placeholder {
            placeholder.touched();
        }
        let changed = self.changed.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(recording) = changed {
            if recording.listener.strong_count() == 0 {
                *changed = None;
            } else {
                recording.keys.insert(key.clone());
            }
        }
        &mut self.entries
    }

    /// Makes this (empty) map the placeholder of the entries that crossed before the pause.
    pub(super) fn hollow_out(&mut self, token: &Arc<Placeholder>) {
        debug_assert!(self.entries.is_empty(), "the map was written empty");
        self.placeholder = Some(Arc::clone(token));
    }

    /// Whether this is a placeholder of `token`'s.
    pub(super) fn is_placeholder_of(&self, token: &Arc<Placeholder>) -> bool {
        self.placeholder.as_ref().is_some_and(|held| Arc::ptr_eq(held, token))
    }

    /// Puts the entries that crossed before the pause into the placeholder.
    pub(super) fn fill(&mut self, entries: imbl::HashMap<K, V>) {
        self.entries = entries;
        self.placeholder = None;
    }

    /// Runs `f` on the recording of `listener`'s pre-copy, if it is the one running.
    fn recording<R>(&self, listener: &Arc<()>, f: impl FnOnce(&mut Option<Recording<K>>) -> R) -> Option<R> {
        let mut changed = self.changed.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = changed
            .as_ref()
            .is_some_and(|recording| recording.listener.as_ptr() == Arc::as_ptr(listener));
        ours.then(|| f(&mut changed))
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for PrecopyMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// A copy of the entries; it records nothing.
impl<K: Hash + Eq + Clone, V: Clone> Clone for PrecopyMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            // A placeholder's clone holds its token: the replacement sees the copy.
            placeholder: self.placeholder.clone(),
            ..Self::from_entries(self.entries.clone())
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone + PartialEq> PartialEq for PrecopyMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.read() == other.read()
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Eq> Eq for PrecopyMap<K, V> {}

impl<K: Hash + Eq + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for PrecopyMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.placeholder.is_some() {
            return f.write_str("PrecopyMap(<entries crossed before the pause>)");
        }
        f.debug_map().entries(self.entries.iter()).finish()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for PrecopyMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_entries(iter.into_iter().collect())
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Extend<(K, V)> for PrecopyMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone, const N: usize> From<[(K, V); N]> for PrecopyMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K: Hash + Eq + Clone, V: Clone, H> From<std::collections::HashMap<K, V, H>> for PrecopyMap<K, V> {
    fn from(entries: std::collections::HashMap<K, V, H>) -> Self {
        entries.into_iter().collect()
    }
}

impl<'a, K: Hash + Eq + Clone, V: Clone> IntoIterator for &'a PrecopyMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = imbl::hashmap::Iter<'a, K, V, imbl::shared_ptr::DefaultSharedPtr>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K: Hash + Eq + Clone + Serialize, V: Clone + Serialize> Serialize for PrecopyMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if hollow::is_exported_hollow(address(self)) {
            return serializer.serialize_map(Some(0))?.end();
        }
        let entries = self.read();
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (key, value) in entries {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de, K, V> Deserialize<'de> for PrecopyMap<K, V>
where
    K: Deserialize<'de> + Hash + Eq + Clone,
    V: Deserialize<'de> + Clone,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(PhantomData<(K, V)>);

        impl<'de, K, V> Visitor<'de> for Entries<K, V>
        where
            K: Deserialize<'de> + Hash + Eq + Clone,
            V: Deserialize<'de> + Clone,
        {
            type Value = PrecopyMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = imbl::HashMap::new();
                while let Some((key, value)) = map.next_entry()? {
                    entries.insert(key, value);
                }
                Ok(PrecopyMap::from_entries(entries))
            }
        }

        deserializer.deserialize_map(Entries(PhantomData))
    }
}

impl<K: Schema, V: Schema> Schema for PrecopyMap<K, V> {
    /// A map's, as a `HashMap`'s: the same encoding.
    const SCHEMA: &'static NamedType = <std::collections::HashMap<K, V> as Schema>::SCHEMA;
}

/// The map's address: which map to write as empty in the hollow state.
pub(super) fn address<K, V>(map: &PrecopyMap<K, V>) -> usize {
    std::ptr::from_ref(map).cast::<()>() as usize
}

impl<K, V> PrecopySource for PrecopyMap<K, V>
where
    K: Hash + Eq + Clone + Serialize + Send + Sync + 'static,
    V: Clone + Serialize + Send + Sync + 'static,
{
    fn begin(&self, listener: &Arc<()>) -> Option<Box<dyn Entries>> {
        let mut changed = self.changed.lock().unwrap_or_else(PoisonError::into_inner);
        // Another replacement's pre-copy of this map is still running: it keeps it.
        if changed
            .as_ref()
            .is_some_and(|recording| recording.listener.strong_count() > 0)
        {
            return None;
        }
        *changed = Some(Recording {
            listener: Arc::downgrade(listener),
            keys: HashSet::new(),
        });
        Some(Box::new(Snapshot {
            entries: self.entries.clone(),
            keys: None,
        }))
    }

    fn changed(&self, listener: &Arc<()>) -> Option<usize> {
        self.recording(listener, |changed| changed.as_ref().map_or(0, |r| r.keys.len()))
    }

    fn next_round(&self, listener: &Arc<()>) -> Option<Box<dyn Entries>> {
        let keys = self.recording(listener, |changed| {
            changed
                .as_mut()
                .map(|r| std::mem::take(&mut r.keys))
                .unwrap_or_default()
        })?;
        Some(Box::new(Snapshot {
            entries: self.entries.clone(),
            keys: Some(keys),
        }))
    }

    fn finish(&self, listener: &Arc<()>) -> Option<Box<dyn Entries>> {
        let keys = self.recording(listener, |changed| changed.take().map(|r| r.keys).unwrap_or_default())?;
        Some(Box::new(Snapshot {
            entries: self.entries.clone(),
            keys: Some(keys),
        }))
    }

    fn abandon(&self, listener: &Arc<()>) {
        self.recording(listener, Option::take);
    }

    fn identity(&self) -> (usize, u64) {
        (address(self), self.id)
    }
}

/// Entries to send: all of a snapshot, or the values some keys have in it.
struct Snapshot<K, V> {
    entries: imbl::HashMap<K, V>,
    /// The keys written in the last round (`None`: every entry), moved out of the recording as
    /// they are: taking them is O(1) while the slot is held.
    keys: Option<HashSet<K>>,
}

impl<K, V> Entries for Snapshot<K, V>
where
    K: Hash + Eq + Clone + Serialize + Send + Sync + 'static,
    V: Clone + Serialize + Send + Sync + 'static,
{
    fn count(&self) -> usize {
        self.keys.as_ref().map_or(self.entries.len(), HashSet::len)
    }

    fn encode(
        &self,
        header: &[u8],
        batch_bytes: usize,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), postcard::Error> {
        let mut batch = Vec::with_capacity(batch_bytes + batch_bytes / 8);
        batch.extend_from_slice(header);
        let mut put = |key: &K, value: Option<&V>, batch: &mut Vec<u8>| -> Result<bool, postcard::Error> {
            postcard::to_io(&(key, value), &mut *batch)?;
            if batch.len() < batch_bytes {
                return Ok(true);
            }
            let more = sink(batch);
            batch.truncate(header.len());
            Ok(more)
        };
        let go_on = match &self.keys {
            None => {
                let mut go_on = true;
                for (key, value) in &self.entries {
                    go_on = put(key, Some(value), &mut batch)?;
                    if !go_on {
                        break;
                    }
                }
                go_on
            }
            Some(keys) => {
                let mut go_on = true;
                for key in keys {
                    go_on = put(key, self.entries.get(key), &mut batch)?;
                    if !go_on {
                        break;
                    }
                }
                go_on
            }
        };
        if go_on && batch.len() > header.len() {
            sink(&batch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{PrecopyMap, PrecopySource};

    fn recording(map: &PrecopyMap<String, u64>) -> bool {
        map.changed.lock().unwrap().is_some()
    }

    #[test]
    fn recording_ends_with_its_pre_copy_however_that_ends() {
        let mut map: PrecopyMap<String, u64> = [("a".to_owned(), 1)].into();
        let first = Arc::new(());
        assert!(map.begin(&first).is_some());
        map.insert("b".into(), 2);
        assert_eq!(map.changed(&first), Some(1));

        // A second pre-copy while the first runs: refused, the first keeps its keys.
        let second = Arc::new(());
        assert!(map.begin(&second).is_none());
        assert_eq!(map.changed(&second), None);
        assert_eq!(map.changed(&first), Some(1));

        // The first is dropped without stopping (a failed replacement): the next write ends it.
        drop(first);
        assert!(recording(&map));
        map.insert("c".into(), 3);
        assert!(!recording(&map));
        assert!(map.begin(&second).is_some(), "a new pre-copy may start");
        map.abandon(&second);
        assert!(!recording(&map));
    }

    #[test]
    fn every_write_is_recorded() {
        let mut map: PrecopyMap<String, u64> = (0..10).map(|i| (format!("k{i}"), i)).collect();
        let listener = Arc::new(());
        let _ = map.begin(&listener);
        map.insert("new".into(), 1);
        map.remove("k0");
        let _ = map.get_mut("k1");
        *map.get_or_insert_with("k2".into(), || 0) += 1;
        map.retain(|k, _| k != "k3");
        map.extend([("k4".to_owned(), 9)]);
        assert_eq!(map.changed(&listener), Some(6));
        map.clear();
        assert_eq!(map.changed(&listener), Some(11), "every key present was written");
    }
}
