//! How much a decoder may pre-allocate: never more elements than the body being decoded has
//! bytes, nor more than 64 MiB.
//!
//! postcard reads a collection's length from the input, so a 21-byte body can claim 2^60
//! entries. serde's own collections cap their pre-allocation by memory; the helpers of this
//! crate that pre-allocate for speed (`bulk_btree_map`, `hash_map`) cap it by the input
//! instead — every element of a non-empty type takes at least one byte — so a large honest state
//! is reserved in one step and a lying length costs nothing.

use std::cell::Cell;

thread_local! {
    /// Length of the body being decoded on this thread by [`super::decode`], if any.
    static INPUT_LEN: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Without a known input (postcard called directly), at most this many elements are reserved.
const UNKNOWN_INPUT_RESERVE: usize = 4096;

/// Never more memory than this is reserved up front, whatever the input; a larger collection
/// grows as it is decoded.
const MAX_RESERVE_BYTES: usize = 64 << 20;

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

/// How many of `claimed` elements of `element_size` bytes a decoder may reserve room for: at
/// most one per input byte of the body being decoded (4096 when decoding outside
/// [`super::decode`]), and never more than 64 MiB of memory.
pub(crate) fn reserve_bound(claimed: usize, element_size: usize) -> usize {
    let limit = INPUT_LEN.with(Cell::get).unwrap_or(UNKNOWN_INPUT_RESERVE);
    let by_memory = MAX_RESERVE_BYTES / element_size.max(1);
    claimed.min(limit).min(by_memory)
}
