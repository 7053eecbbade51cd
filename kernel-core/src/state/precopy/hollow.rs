//! The placeholder a pre-copied map leaves in the state that crosses during the pause.
//!
//! During a pre-copy replacement the map's entries have crossed already; the rest of the state
//! crosses in the pause with the map written as an empty one. Once decoded (as the old
//! version's type), that one field — found through [`Precopy`](super::Precopy), no other map —
//! becomes a *placeholder* tied to a [`Placeholder`] token, the state goes through the version
//! chain as usual, and the entries are put into the new version's map afterwards. That is the
//! same as converting the whole state only if the conversion carries the placeholder across with
//! [`PrecopyMap::upgrade`](super::PrecopyMap::upgrade) into the new version's `#[precopy]`
//! field, touches nothing in it and keeps no copy of it. So a placeholder panics when read or
//! written (on any thread; the token records it), a clone of it is seen by the token's count,
//! and the replacement crosses the whole state instead when any of these happened.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// The address of the map to write as empty, while the paused state is encoded (0: none).
    static EXPORTING: Cell<usize> = const { Cell::new(0) };
}

/// Encodes with the map at `address` written as an empty map.
pub(crate) fn exporting<T>(address: usize, f: impl FnOnce() -> T) -> T {
    let previous = EXPORTING.replace(address);
    let _reset = Reset(previous);
    f()
}

/// Whether the map at `address` is to be written as an empty map.
pub(super) fn is_exported_hollow(address: usize) -> bool {
    EXPORTING.get() == address
}

/// Puts the exporting address back as it was, also when `f` unwinds.
struct Reset(usize);

impl Drop for Reset {
    fn drop(&mut self) {
        EXPORTING.set(self.0);
    }
}

/// The token of one pause's placeholder: every placeholder map of that pause holds it.
#[derive(Debug, Default)]
#[doc(hidden)]
pub struct Placeholder {
    /// A placeholder was read or written.
    touched: AtomicBool,
}

impl Placeholder {
    /// A new token.
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Whether the conversion left exactly one placeholder (in the place `holder` has) and
    /// touched none. `holder` is the receiver's own reference, the other is the map's.
    pub(crate) fn carried_untouched(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 2 && !self.touched.load(Ordering::Acquire)
    }

    /// A placeholder was read or written: refused (its entries are elsewhere).
    pub(super) fn touched(&self) -> ! {
        self.touched.store(true, Ordering::Release);
        panic!(
            "a pre-copied map was read or written while its state was converted: carry it \
             with `PrecopyMap::upgrade` only (the replacement crosses the whole state instead)"
        );
    }
}
