//! A lock a chain of calls may take again (the kernel's lifecycle lock).

use crate::runtime::caller::caller_token;

use std::sync::{Arc, PoisonError};

// std's mutex and condition variable, or loom's under `--cfg loom` (see `loom_tests`).
use crate::runtime::loom::{Condvar, Mutex};

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

/// Models of the re-entrant lock and the thread tokens it goes by (run with `--cfg loom`, see
/// `crate::runtime::loom`).
#[cfg(all(test, loom))]
mod loom_tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, PoisonError};

    use loom::sync::atomic::{AtomicU64, AtomicUsize};

    use super::{ReentrantLock, caller_token};
    use crate::runtime::wait::{self, Held};

    fn model(f: impl Fn() + Send + Sync + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    /// (owner, depth, waiters) of the lock.
    fn state(lock: &ReentrantLock) -> (u64, usize, usize) {
        let held = lock.held.lock().unwrap_or_else(PoisonError::into_inner);
        (held.owner, held.depth, held.waiters)
    }

    /// Takes the lock, then again (re-entry), checking that nobody else is inside meanwhile.
    fn enter_twice(lock: &Arc<ReentrantLock>, inside: &AtomicUsize) {
        let me = caller_token();
        let outer = lock.lock().expect("no cycle: nobody holds anything else");
        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "two owners at once");
        assert_eq!(state(lock).0, me);
        let inner = lock.lock().expect("the owner may take it again");
        assert_eq!(state(lock).1, 2, "re-entry deepens");
        drop(inner);
        assert_eq!(state(lock).0, me, "still the owner after the inner guard");
        assert_eq!(inside.fetch_sub(1, Ordering::Relaxed), 1);
        drop(outer);
    }

    /// Three threads (distinct tokens) take the lock twice each: one owner at a time, the
    /// owner re-enters, the others wait (and are woken: a lost wake-up is a deadlock loom
    /// reports), and at the end the lock is free with depth 0.
    #[test]
    fn loom_reentrant_lock_excludes_and_reenters() {
        model(|| {
            let lock = Arc::new(ReentrantLock::default());
            let inside = Arc::new(AtomicUsize::new(0));
            let others: Vec<_> = (0..2)
                .map(|_| {
                    let (lock, inside) = (Arc::clone(&lock), Arc::clone(&inside));
                    loom::thread::spawn(move || {
                        enter_twice(&lock, &inside);
                        caller_token()
                    })
                })
                .collect();
            enter_twice(&lock, &inside);
            let mut tokens = vec![caller_token()];
            tokens.extend(others.into_iter().map(|thread| thread.join().unwrap()));
            tokens.sort_unstable();
            tokens.dedup();
            assert_eq!(tokens.len(), 3, "each thread has its own token");
            assert_eq!(state(&lock), (0, 0, 0), "free, depth back to 0, nobody waiting");
        });
    }

    /// A slot as the sync slot records its holder (a relaxed token) over a lock.
    struct Slot {
        holder: AtomicU64,
        lock: loom::sync::Mutex<()>,
    }

    impl Held for Slot {
        fn holder(&self) -> u64 {
            self.holder.load(Ordering::Relaxed)
        }

        fn service(&self) -> &str {
            "slot"
        }
    }

    /// The cycle the lock's rustdoc names: one thread holds the lock and waits for a slot, the
    /// slot's holder asks for the lock. One of them is refused (never both), and both finish.
    #[test]
    fn loom_reentrant_lock_cycle_with_a_slot_is_refused() {
        model(|| {
            let lock = Arc::new(ReentrantLock::default());
            let slot = Arc::new(Slot {
                holder: AtomicU64::new(0),
                lock: loom::sync::Mutex::new(()),
            });
            let handler = {
                let (lock, slot) = (Arc::clone(&lock), Arc::clone(&slot));
                loom::thread::spawn(move || {
                    let entered = slot.lock.lock().unwrap();
                    slot.holder.store(caller_token(), Ordering::Relaxed);
                    let refused = lock.lock().is_err();
                    slot.holder.store(0, Ordering::Relaxed);
                    drop(entered);
                    refused
                })
            };
            let me = caller_token();
            let guard = lock
                .lock()
                .expect("the slot's holder holds nothing this thread waits for");
            let refused = match wait::begin(me, Arc::clone(&slot) as Arc<dyn Held>) {
                Ok(waiting) => {
                    let entered = slot.lock.lock().unwrap();
                    drop(waiting);
                    drop(entered);
                    false
                }
                Err(_) => true,
            };
            drop(guard);
            let handler_refused = handler.join().unwrap();
            assert!(
                !(refused && handler_refused),
                "both refused: one of them without a cycle"
            );
            assert_eq!(state(&lock), (0, 0, 0));
        });
    }

    /// The sync slot's re-entrance check (`Slot::try_enter_within`, modelled on a copy of its
    /// protocol since the slot's `parking_lot` lock has no loom stand-in): try the lock first,
    /// read the owner token only when it is taken, store the token after taking the lock and
    /// clear it before leaving. A holder calling back in is always told "re-entry"; a thread
    /// not holding the slot never is.
    #[test]
    fn loom_slot_owner_token_check() {
        struct TokenSlot {
            lock: loom::sync::Mutex<()>,
            owner: AtomicU64,
        }
        /// `Err(())` for re-entry, else the thread entered (and left) the slot.
        fn call(slot: &TokenSlot, me: u64, reenter: bool) -> Result<(), ()> {
            let entered = match slot.lock.try_lock() {
                Ok(entered) => entered,
                Err(_) if slot.owner.load(Ordering::Relaxed) == me => return Err(()),
                Err(_) => slot.lock.lock().unwrap(),
            };
            slot.owner.store(me, Ordering::Relaxed);
            if reenter {
                assert_eq!(call(slot, me, false), Err(()), "a holder calling back in is refused");
            }
            slot.owner.store(0, Ordering::Relaxed);
            drop(entered);
            Ok(())
        }
        model(|| {
            let slot = Arc::new(TokenSlot {
                lock: loom::sync::Mutex::new(()),
                owner: AtomicU64::new(0),
            });
            let other = {
                let slot = Arc::clone(&slot);
                loom::thread::spawn(move || {
                    let me = caller_token();
                    for _ in 0..2 {
                        assert_eq!(call(&slot, me, true), Ok(()), "refused without holding the slot");
                    }
                })
            };
            let me = caller_token();
            for _ in 0..2 {
                assert_eq!(call(&slot, me, true), Ok(()), "refused without holding the slot");
            }
            other.join().unwrap();
        });
    }
}
