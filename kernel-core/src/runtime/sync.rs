//! Small synchronisation pieces: thread tokens and a lock a thread may take again.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

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
    thread_local!(static TOKEN: Cell<u64> = const { Cell::new(0) });
    TOKEN.with(|t| match t.get() {
        0 => {
            let fresh = fresh_token();
            t.set(fresh);
            fresh
        }
        token => token,
    })
}

/// Who is asking for a slot or the lifecycle lock: with async services (feature `tokio`), the
/// chain of calls this code runs in, else (and outside any chain) this thread.
#[inline]
pub(crate) fn caller_token() -> u64 {
    #[cfg(feature = "tokio")]
    {
        crate::runtime::asynchronous::chain::current_sync()
    }
    #[cfg(not(feature = "tokio"))]
    {
        thread_token()
    }
}

/// A mutex the holding thread may take again: lifecycle changes are serialized kernel-wide,
/// yet a service's `start` may itself start or register another service.
///
/// A thread that has to wait for it registers its wait in the wait table (`crate::runtime::wait`), like
/// a caller waiting for a slot: a handler that starts a lifecycle change while a replacement of
/// its own service holds the lock and waits for the handler's slot is refused, not deadlocked.
#[derive(Default)]
pub(crate) struct ReentrantLock {
    held: Mutex<LockState>,
    freed: Condvar,
}

/// The lock's state.
#[derive(Default)]
struct LockState {
    /// Token of the holding thread, 0 when free.
    owner: u64,
    /// How many times the owner took it.
    depth: usize,
    /// Threads waiting for it: the unlock wakes one only if there is one (a wake is a system
    /// call, and most lifecycle changes meet no contention).
    waiters: usize,
}

pub(crate) struct ReentrantGuard<'a>(&'a ReentrantLock);

impl ReentrantLock {
    /// Takes the lock, waiting while another thread holds it — unless that wait would close a
    /// cycle of waits, then the services along it are returned.
    pub(crate) fn lock(self: &Arc<Self>) -> Result<ReentrantGuard<'_>, Vec<String>> {
        let me = caller_token();
        {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if held.owner == 0 || held.owner == me {
                held.owner = me;
                held.depth += 1;
                return Ok(ReentrantGuard(self));
            }
        }
        // Contended: register the wait (outside `held`: the wait table reads holders under its
        // own lock, so taking it inside `held` would invert the order).
        let waiting = crate::runtime::wait::begin(me, Arc::clone(self) as Arc<dyn crate::runtime::wait::Held>)?;
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.waiters += 1;
        while held.owner != 0 && held.owner != me {
            held = self.freed.wait(held).unwrap_or_else(PoisonError::into_inner);
        }
        held.waiters -= 1;
        held.owner = me;
        held.depth += 1;
        drop(held);
        drop(waiting);
        Ok(ReentrantGuard(self))
    }
}

impl crate::runtime::wait::Held for ReentrantLock {
    fn holder(&self) -> u64 {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).owner
    }

    fn service(&self) -> &str {
        "(the kernel's lifecycle lock)"
    }
}

impl Drop for ReentrantGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.0.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.depth -= 1;
        if held.depth == 0 {
            held.owner = 0;
            if held.waiters > 0 {
                self.0.freed.notify_one();
            }
        }
    }
}
