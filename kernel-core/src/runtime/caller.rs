//! Who is calling: a token per chain of calls. A chain begins at a top-level call — a thread, or
//! a task, that is not inside a handler — and is carried through handlers, hooks, conversions
//! and the blocking pool; a task a handler spawns starts its own. Slots and the lifecycle lock
//! record their holder's token, and the wait-for table records who waits for what, so that a
//! chain calling back into what it holds is refused, and only real cycles are.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tokens name whoever holds or waits for slots: threads, and (feature `tokio`) chains of
/// async calls. One counter for both, so no thread and no chain share a token.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A token never handed out before, never 0. Taken from a block this thread reserved, so
/// that making many (one per top-level async call) does not contend on one counter.
pub(crate) fn fresh_token() -> u64 {
    const BLOCK: u64 = 1024;
    thread_local!(static RESERVED: Cell<(u64, u64)> = const { Cell::new((0, 0)) });
    RESERVED.with(|reserved| {
        let (mut next, mut end) = reserved.get();
        if next == end {
            next = NEXT.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        reserved.set((next + 1, end));
        next
    })
}

/// A number naming the current thread, never 0, cheap to read (one thread-local access).
pub(crate) fn thread_token() -> u64 {
    #[cfg(not(loom))]
    thread_local!(static TOKEN: Cell<u64> = const { Cell::new(0) });
    // Loom runs its threads on one OS thread: std's thread-locals would be shared by them.
    #[cfg(loom)]
    ::loom::thread_local!(static TOKEN: Cell<u64> = Cell::new(0));
    TOKEN.with(|t| match t.get() {
        0 => {
            let fresh = fresh_token();
            t.set(fresh);
            fresh
        }
        token => token,
    })
}

/// Who is asking for a slot or the lifecycle lock: the chain of calls this code runs in (set on
/// threads running a handler, a hook or kernel work for a chain), else this thread.
#[inline]
pub(crate) fn caller_token() -> u64 {
    current_sync()
}

std::thread_local! {
    /// The token of the chain of calls whose handler or hook this thread is polling, 0 when
    /// none: a task-local in effect, since it is set around each poll of that work only
    /// ([`Scope`]), like tokio's `task_local!` but without its `RefCell` and swaps.
    static CHAIN: Cell<u64> = const { Cell::new(0) };
}

/// The chain this code runs in, if it runs inside a handler or hook (or kernel work handed off
/// the workers for one).
#[inline]
pub(crate) fn joined() -> Option<u64> {
    match CHAIN.with(Cell::get) {
        0 => None,
        token => Some(token),
    }
}

/// The token of the chain an async call joins: the one of the handler or hook it is made
/// from, else a new chain (a top-level caller holds nothing, and work it abandoned must not be
/// mistaken for its own).
#[cfg(feature = "tokio")]
pub(crate) fn current() -> u64 {
    joined().unwrap_or_else(fresh_token)
}

/// The token synchronous code waits under: the chain whose handler it runs inside (a
/// synchronous service called inline from async code), else this thread's, as the synchronous
/// slots know it.
#[inline]
pub(crate) fn current_sync() -> u64 {
    joined().unwrap_or_else(thread_token)
}

/// Chain `token` set on this thread until dropped (also when the work unwinds), the previous
/// one put back then.
pub(crate) struct Scope {
    previous: u64,
}

impl Scope {
    #[inline]
    pub(crate) fn enter(token: u64) -> Self {
        Scope {
            previous: CHAIN.with(|chain| chain.replace(token)),
        }
    }
}

impl Drop for Scope {
    #[inline]
    fn drop(&mut self) {
        CHAIN.with(|chain| chain.set(self.previous));
    }
}
