//! Small synchronisation pieces: thread tokens and a lock a thread may take again.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

/// A number naming the current thread, never 0, cheap to read (one thread-local access).
pub(crate) fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TOKEN: Cell<u64> = const { Cell::new(0) });
    TOKEN.with(|t| match t.get() {
        0 => {
            let fresh = NEXT.fetch_add(1, Ordering::Relaxed);
            t.set(fresh);
            fresh
        }
        token => token,
    })
}

/// A mutex the holding thread may take again: lifecycle changes are serialized kernel-wide,
/// yet a service's `start` may itself start or register another service.
#[derive(Default)]
pub(crate) struct ReentrantLock {
    /// (owner token, depth); owner 0 when free.
    held: Mutex<(u64, usize)>,
    freed: Condvar,
}

pub(crate) struct ReentrantGuard<'a>(&'a ReentrantLock);

impl ReentrantLock {
    pub(crate) fn lock(&self) -> ReentrantGuard<'_> {
        let me = thread_token();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while held.0 != 0 && held.0 != me {
            held = self.freed.wait(held).unwrap_or_else(PoisonError::into_inner);
        }
        held.0 = me;
        held.1 += 1;
        ReentrantGuard(self)
    }
}

impl Drop for ReentrantGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.0.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.1 -= 1;
        if held.1 == 0 {
            held.0 = 0;
            self.0.freed.notify_one();
        }
    }
}
