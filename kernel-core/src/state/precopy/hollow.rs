//! The placeholder a pre-copied map leaves in the state that crosses during the pause.
//!
//! During a pre-copy replacement the map's entries have crossed already; the rest of the state
//! crosses in the pause with the map written as an empty one (a *hollow* map), goes through the
//! version chain, and the entries are put back into the new version's map afterwards. That is
//! only the same as converting the whole state if the conversion carries the map across with
//! [`PrecopyMap::upgrade`](super::PrecopyMap::upgrade) and reads nothing in it. So while the
//! hollow state is decoded and converted, reading or writing a hollow map panics (the panic is
//! caught as the conversion's failure) and is recorded here: the replacement then crosses the
//! whole state instead, as a stop-the-world replacement does.
//!
//! Thread-local: the hollow state is encoded and decoded on the replacing thread.

use std::cell::Cell;

thread_local! {
    /// The address of the map to write as empty, while the hollow state is encoded (0: none).
    static EXPORTING: Cell<usize> = const { Cell::new(0) };
    /// Whether maps decoded empty now are hollow, and must not be touched.
    static CONVERTING: Cell<bool> = const { Cell::new(false) };
    /// Whether the conversion touched a hollow map.
    static TOUCHED: Cell<bool> = const { Cell::new(false) };
}

/// Encodes with the map at `address` written as an empty map.
pub(crate) fn exporting<T>(address: usize, f: impl FnOnce() -> T) -> T {
    let _reset = Reset(&EXPORTING, EXPORTING.replace(address));
    f()
}

/// Whether the map at `address` is to be written as an empty map.
pub(super) fn is_exported_hollow(address: usize) -> bool {
    EXPORTING.get() == address
}

/// Decodes and converts with maps decoded empty marked hollow. Returns `f`'s result and whether
/// the conversion touched a hollow map (then the result is not to be used).
pub(crate) fn converting<T>(f: impl FnOnce() -> T) -> (T, bool) {
    let _reset = Reset(&CONVERTING, CONVERTING.replace(true));
    TOUCHED.set(false);
    let result = f();
    (result, TOUCHED.replace(false))
}

/// Whether maps decoded now are hollow when empty.
pub(super) fn decoding() -> bool {
    CONVERTING.get()
}

/// A hollow map was touched: refused while converting (it has no entries to give), allowed as
/// the empty map it is at any other time.
pub(super) fn touched() {
    if CONVERTING.get() {
        TOUCHED.set(true);
        panic!(
            "a pre-copied map was read or written while its state was converted: convert it \
             with `PrecopyMap::upgrade` only (the replacement crosses the whole state instead)"
        );
    }
}

/// Puts a flag back as it was, also when `f` unwinds.
struct Reset<T: Copy + 'static>(&'static std::thread::LocalKey<Cell<T>>, T);

impl<T: Copy + 'static> Drop for Reset<T> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}
