//! Keys by id, for rotation: one primary seals, every key opens.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::cipher::Cipher;
use super::{Algorithm, Key, KeyError, KeyId};

/// A set of keys by id. The primary key seals; any key in the ring opens what it sealed.
/// Rotate by [`add`](Self::add)ing a new key, [`promote`](Self::promote)-ing it, re-sealing old
/// blobs ([`Sealer::reseal`](super::Sealer::reseal)) and [`retire`](Self::retire)-ing the old key.
pub struct Keyring {
    keys: BTreeMap<u32, KeyEntry>,
    primary: u32,
}

pub(crate) struct KeyEntry {
    pub(crate) cipher: Cipher,
    /// The key itself: segmented envelopes derive a key of their own from it.
    pub(crate) key: Key,
    /// Seals made with this key, against the random-nonce limit.
    pub(crate) seals: AtomicU64,
}

impl Keyring {
    /// A keyring whose primary key is `key`, under `id` (a [`KeyId`], or a plain `u32`). The key's bytes are expanded into the
    /// cipher and dropped (zeroized).
    pub fn new(id: impl Into<KeyId>, key: Key) -> Self {
        let id = id.into().0;
        let mut keys = BTreeMap::new();
        keys.insert(id, KeyEntry::new(&key));
        Self { keys, primary: id }
    }

    /// Adds a key that opens (and seals, once promoted).
    pub fn add(&mut self, id: impl Into<KeyId>, key: Key) -> Result<(), KeyError> {
        let id = id.into().0;
        if self.keys.contains_key(&id) {
            return Err(KeyError::DuplicateId(id));
        }
        self.keys.insert(id, KeyEntry::new(&key));
        Ok(())
    }

    /// Makes `id` the key that seals.
    pub fn promote(&mut self, id: impl Into<KeyId>) -> Result<(), KeyError> {
        let id = id.into().0;
        if !self.keys.contains_key(&id) {
            return Err(KeyError::UnknownId(id));
        }
        self.primary = id;
        Ok(())
    }

    /// Removes a key; blobs it sealed no longer open. The primary cannot be retired.
    pub fn retire(&mut self, id: impl Into<KeyId>) -> Result<(), KeyError> {
        let id = id.into().0;
        if id == self.primary {
            return Err(KeyError::RetirePrimary(id));
        }
        self.keys.remove(&id).map(drop).ok_or(KeyError::UnknownId(id))
    }

    /// The id of the key that seals.
    pub fn primary(&self) -> KeyId {
        KeyId(self.primary)
    }

    /// The algorithm of the primary key.
    pub fn primary_algorithm(&self) -> Algorithm {
        self.keys[&self.primary].cipher.algorithm()
    }

    /// Every key id, ascending.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.keys().map(|id| KeyId(*id)).collect()
    }

    /// How many seals the key has made in this process.
    pub fn seal_count(&self, id: impl Into<KeyId>) -> Option<u64> {
        let id = id.into().0;
        self.keys.get(&id).map(|k| k.seals.load(Ordering::Relaxed))
    }

    pub(crate) fn primary_entry(&self) -> (u32, &KeyEntry) {
        (self.primary, &self.keys[&self.primary])
    }

    pub(crate) fn get(&self, id: u32) -> Option<&KeyEntry> {
        self.keys.get(&id)
    }
}

impl KeyEntry {
    fn new(key: &Key) -> Self {
        Self {
            cipher: Cipher::new(key),
            key: key.clone(),
            seals: AtomicU64::new(0),
        }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(id, k)| format!("{id}: {}", k.cipher.algorithm()))
            .collect();
        f.debug_struct("Keyring")
            .field("primary", &self.primary)
            .field("keys", &keys)
            .finish()
    }
}
