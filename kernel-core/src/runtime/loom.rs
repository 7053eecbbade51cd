//! The synchronisation types of the runtime's hand-written primitives — the async slot's gate
//! (`asynchronous::gate`), the wait-for table (`wait`) and the re-entrant lock (`sync`) — taken
//! from here so that a model checker can stand in for them.
//!
//! Normally these are std's (and, for the gate, `parking_lot`'s mutex and `crossbeam`'s atomic
//! cell): nothing changes in a normal build. Built with `--cfg loom`, they are
//! [loom](https://docs.rs/loom)'s, and the models beside each primitive (`mod loom_tests`)
//! explore the interleavings of two or three threads over them:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p kernel-core --features tokio --release --lib loom \
//!     --target-dir target/loom
//! ```
//!
//! Under loom, the gate's atomic cell is a loom mutex around the value: each of the cell's
//! operations (`swap`, `take`) is one read-modify-write of one location, acquire-release, as
//! crossbeam's lock-free cell does it for a pointer-sized value, so the models see the same
//! orderings. `parking_lot`'s mutex (the gate's queue) becomes a loom mutex too. The sync
//! slot's own lock stays `parking_lot`'s (loom has no stand-in for its timed waits), so the
//! slot itself is not modelled; the wait-for table it uses is.

// The atomics serve the gate, which only async services (feature `tokio`) have.
#[cfg(all(loom, feature = "tokio"))]
pub(crate) use ::loom::sync::atomic::{AtomicU64, AtomicUsize};
#[cfg(loom)]
pub(crate) use ::loom::sync::{Condvar, Mutex};
#[cfg(all(not(loom), feature = "tokio"))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex};

#[cfg(all(feature = "tokio", not(loom)))]
pub(crate) use crossbeam_utils::atomic::AtomicCell;

/// A cell whose every operation is one atomic read-modify-write (loom's stand-in for
/// crossbeam's `AtomicCell`).
#[cfg(all(feature = "tokio", loom))]
pub(crate) struct AtomicCell<T>(::loom::sync::Mutex<T>);

#[cfg(all(feature = "tokio", loom))]
impl<T> AtomicCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(::loom::sync::Mutex::new(value))
    }

    pub(crate) fn swap(&self, value: T) -> T {
        std::mem::replace(&mut *self.0.lock().unwrap(), value)
    }

    pub(crate) fn take(&self) -> T
    where
        T: Default,
    {
        self.swap(T::default())
    }
}

/// `parking_lot`'s mutex, or (under loom) a loom mutex with its interface: `lock` returns the
/// guard, no poisoning.
#[cfg(feature = "tokio")]
pub(crate) mod parking_lot {
    #[cfg(not(loom))]
    pub(crate) use ::parking_lot::Mutex;

    #[cfg(loom)]
    pub(crate) struct Mutex<T>(::loom::sync::Mutex<T>);

    #[cfg(loom)]
    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(::loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> ::loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
    }
}
