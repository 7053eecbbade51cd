//! The two ends of a pre-copy, with the state's types erased: what the kernel sees of the old
//! version's map ([`PrecopySource`]) and of the new version's map being filled
//! ([`PrecopyReceiver`]).

use std::sync::Arc;

use crate::state::StateError;

/// The old version's `#[precopy]` map, as the replacement sees it. Every method is called with
/// the service's slot held (no handler runs); what they return is read without it.
///
/// A pre-copy is identified by its `listener`: the replacement holds it while it runs, and the
/// map stops recording at its next write once it is dropped, whichever way the replacement
/// ended. The methods other than `begin` do nothing (and return `None`) for a pre-copy that is
/// not the one recording — another replacement's, or one given up.
#[doc(hidden)]
pub trait PrecopySource: Sync {
    /// Starts recording writes for `listener`; a snapshot of every entry. `None` if another
    /// pre-copy of this map is running.
    fn begin(&self, listener: &Arc<()>) -> Option<Box<dyn Entries>>;
    /// The number of keys written since the last snapshot.
    fn changed(&self, listener: &Arc<()>) -> Option<usize>;
    /// The keys written since the last snapshot, with their values now; recording goes on.
    fn next_round(&self, listener: &Arc<()>) -> Option<Box<dyn Entries>>;
    /// As `next_round`, and stops recording: the last changes, taken in the pause.
    fn finish(&self, listener: &Arc<()>) -> Option<Box<dyn Entries>>;
    /// Stops recording (the pre-copy is given up).
    fn abandon(&self, listener: &Arc<()>);
    /// The map's address (to write it as empty in the state that crosses in the pause) and
    /// its id (a new map, which a handler may have put in its place, has a new one).
    fn identity(&self) -> (usize, u64);
}

/// Entries to send, read without the slot: a snapshot, or some keys' values in one.
#[doc(hidden)]
pub trait Entries: Send {
    /// How many entries (a removed key counts as one).
    fn count(&self) -> usize;
    /// Encodes the entries as postcard `(key, Option<value>)` pairs in batches of about
    /// `batch_bytes`, each starting with `header` and handed to `sink`, which returns whether
    /// to go on.
    fn encode(
        &self,
        header: &[u8],
        batch_bytes: usize,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), postcard::Error>;
}

/// The new version's map being filled with the entries that cross before the pause.
#[doc(hidden)]
pub trait PrecopyReceiver<S>: Send {
    /// Decodes a batch of entries written by the old version and upgrades each one.
    fn absorb(&mut self, batch: &[u8]) -> Result<(), StateError>;
    /// The number of entries so far.
    fn entries(&self) -> usize;
    /// Decodes the state that crossed in the pause (its map written empty) as the old version,
    /// makes its `#[precopy]` map this receiver's placeholder, and upgrades it to `S`.
    fn decode_paused(&self, bytes: &[u8]) -> Result<S, StateError>;
    /// Puts the entries into `state`'s map, which must hold this receiver's placeholder,
    /// carried there untouched and never copied; false (and nothing done) otherwise.
    fn install(self: Box<Self>, state: &mut S) -> bool;
}
