//! How much a decoder may pre-allocate: never more elements than there are input bytes left.
//!
//! postcard reads a collection's length from the input, so a 21-byte body can claim 2^60
//! entries. serde's own collections cap their pre-allocation by memory; the helpers of this
//! crate that pre-allocate for speed (`bulk_btree_map`) cap it by the input instead — every
//! element of a non-empty type takes at least one byte — so a large honest state is reserved in
//! one step and a lying length costs nothing.

use std::cell::Cell;

thread_local! {
    /// Length of the body being decoded on this thread by [`super::decode`], if any.
    static INPUT_LEN: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Without a known input (postcard called directly), at most this many elements are reserved.
const UNKNOWN_INPUT_RESERVE: usize = 4096;

/// Runs `decode` with `len` recorded as the input's length for [`reserve_bound`].
pub(crate) fn with_input_len<R>(len: usize, decode: impl FnOnce() -> R) -> R {
    /// Restores the outer value, also if `decode` panics.
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            INPUT_LEN.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(INPUT_LEN.with(|l| l.replace(Some(len))));
    decode()
}

/// How many of `claimed` elements a decoder may reserve room for: at most the number of input
/// bytes of the body being decoded (or 4096 when decoding outside [`super::decode`]).
pub(crate) fn reserve_bound(claimed: usize) -> usize {
    let limit = INPUT_LEN.with(Cell::get).unwrap_or(UNKNOWN_INPUT_RESERVE);
    claimed.min(limit)
}
