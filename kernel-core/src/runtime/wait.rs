//! Waits for slots across threads: which thread waits for which slot, so that a wait that would
//! close a cycle — thread 1 holds A and waits for B while thread 2 holds B and waits for A — is
//! refused with an error instead of hanging both threads for ever.
//!
//! Only a thread that could not take a slot at once registers here (the uncontended call never
//! touches this table). Registration and the walk along the cycle happen under one lock, so of
//! the threads whose waits form a cycle, the last to arrive always sees it: it finds every other
//! thread of the cycle registered, and every holder already recorded in its slot (a holder
//! records itself before it waits for anything).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

// std's mutex, or loom's under `--cfg loom` (see `loom_tests`).
use crate::runtime::loom::Mutex;

/// A slot, as the wait table sees it.
pub(crate) trait Held: Send + Sync {
    /// Token of the thread holding the slot, 0 when free.
    fn holder(&self) -> u64;
    /// The service's name, for the cycle's description.
    fn service(&self) -> &str;
}

/// Thread token → the slot that thread waits for.
#[cfg(not(loom))]
static WAITING: Mutex<BTreeMap<u64, Arc<dyn Held>>> = Mutex::new(BTreeMap::new());
// Under loom, one table per explored execution.
#[cfg(loom)]
::loom::lazy_static! {
    static ref WAITING: Mutex<BTreeMap<u64, Arc<dyn Held>>> = Mutex::new(BTreeMap::new());
}

/// This thread's registered wait; dropping it removes it.
pub(crate) struct Waiting {
    me: u64,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.me);
    }
}

/// Registers that thread `me` is about to wait for `slot`, unless the wait would close a cycle:
/// then nothing is registered and the services along the cycle are returned, starting with
/// `slot` and ending with the one `me` holds.
pub(crate) fn begin(me: u64, slot: Arc<dyn Held>) -> Result<Waiting, Vec<String>> {
    let mut waiting = WAITING.lock().unwrap_or_else(PoisonError::into_inner);
    let mut cycle = vec![slot.service().to_owned()];
    let mut holder = slot.holder();
    // Each step moves to another waiting thread; more steps than there are waiting threads
    // would mean a cycle that does not pass through `me`, which cannot form (its last thread
    // would have been refused), so the bound only guards against stale reads.
    for _ in 0..=waiting.len() {
        if holder == me {
            return Err(cycle);
        }
        let Some(next) = waiting.get(&holder) else { break };
        cycle.push(next.service().to_owned());
        holder = next.holder();
    }
    waiting.insert(me, slot);
    Ok(Waiting { me })
}

/// Models of the wait-for table (run with `--cfg loom`, see `crate::runtime::loom`): every
/// interleaving of three threads, each holding a slot and then waiting for another.
#[cfg(all(test, loom))]
mod loom_tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, PoisonError};

    use loom::sync::atomic::AtomicU64;

    use super::{Held, WAITING, Waiting, begin};

    /// A slot as the sync slot records its holder: a relaxed token, 0 when free.
    struct Slot {
        name: &'static str,
        holder: AtomicU64,
    }

    impl Held for Slot {
        fn holder(&self) -> u64 {
            self.holder.load(Ordering::Relaxed)
        }

        fn service(&self) -> &str {
            self.name
        }
    }

    fn slots(names: &[&'static str]) -> Vec<Arc<Slot>> {
        names
            .iter()
            .map(|&name| {
                Arc::new(Slot {
                    name,
                    holder: AtomicU64::new(0),
                })
            })
            .collect()
    }

    /// Thread `me` takes `held` (records itself as its holder), then registers a wait for
    /// `wanted`; the registration (if granted) stays until the model drops it.
    fn hold_then_wait(me: u64, held: &Arc<Slot>, wanted: &Arc<Slot>) -> Result<Waiting, Vec<String>> {
        held.holder.store(me, Ordering::Relaxed);
        begin(me, Arc::clone(wanted) as Arc<dyn Held>)
    }

    /// Thread `1 + i` holds slot `i` and waits for slot `wants[i]`, all at once (thread 1 on
    /// the model's own thread); the outcomes, in thread order, with the waits still registered.
    fn run(slots: &[Arc<Slot>], wants: &[usize]) -> Vec<Result<Waiting, Vec<String>>> {
        let others: Vec<_> = (1..wants.len())
            .map(|i| {
                let (held, wanted) = (Arc::clone(&slots[i]), Arc::clone(&slots[wants[i]]));
                loom::thread::spawn(move || hold_then_wait(1 + i as u64, &held, &wanted))
            })
            .collect();
        let mut outcomes = vec![hold_then_wait(1, &slots[0], &slots[wants[0]])];
        outcomes.extend(others.into_iter().map(|thread| thread.join().unwrap()));
        outcomes
    }

    fn model(f: impl Fn() + Send + Sync + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    fn table_is_empty() -> bool {
        WAITING.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Two threads each hold one slot and wait for the other's: at least one is refused, and
    /// the refusal names the cycle from the slot it wanted to the one it holds.
    #[test]
    fn loom_wait_two_thread_cycle_is_refused() {
        model(|| {
            let slots = slots(&["a", "b"]);
            let outcomes = run(&slots, &[1, 0]);
            let refused: Vec<_> = outcomes.iter().filter_map(|outcome| outcome.as_ref().err()).collect();
            assert!(!refused.is_empty(), "a cycle of two waits, both registered");
            for cycle in refused {
                assert!(*cycle == ["a", "b"] || *cycle == ["b", "a"], "{cycle:?}");
            }
            drop(outcomes);
            assert!(table_is_empty(), "a dropped wait leaves the table");
        });
    }

    /// Three threads whose waits form a cycle (1 → b, 2 → c, 3 → a): at least one is refused.
    #[test]
    fn loom_wait_three_thread_cycle_is_refused() {
        model(|| {
            let slots = slots(&["a", "b", "c"]);
            let outcomes = run(&slots, &[1, 2, 0]);
            let refused: Vec<_> = outcomes.iter().filter_map(|outcome| outcome.as_ref().err()).collect();
            assert!(!refused.is_empty(), "a cycle of three waits, all registered");
            for cycle in refused {
                assert_eq!(cycle.len(), 3, "{cycle:?}");
            }
        });
    }

    /// No cycle, no refusal: 1 waits for b (held by 2), 2 for c (held by 3), while 3 leaves c
    /// and then waits for a (held by 1) — a chain whose end is free, whatever 2 read of c.
    #[test]
    fn loom_wait_no_false_refusal() {
        model(|| {
            let slots = slots(&["a", "b", "c"]);
            let others: Vec<_> = [(2, 1, 2), (3, 2, 0)]
                .into_iter()
                .map(|(me, held, wanted)| {
                    let (held, wanted) = (Arc::clone(&slots[held]), Arc::clone(&slots[wanted]));
                    loom::thread::spawn(move || {
                        if me == 3 {
                            held.holder.store(me, Ordering::Relaxed);
                            held.holder.store(0, Ordering::Relaxed); // 3 leaves c
                            begin(me, wanted as Arc<dyn Held>)
                        } else {
                            hold_then_wait(me, &held, &wanted)
                        }
                    })
                })
                .collect();
            let first = hold_then_wait(1, &slots[0], &slots[1]);
            let outcomes: Vec<_> = others.into_iter().map(|thread| thread.join().unwrap()).collect();
            assert!(first.is_ok(), "{:?}", first.err());
            for outcome in &outcomes {
                assert!(outcome.is_ok(), "{:?}", outcome.as_ref().err());
            }
        });
    }
}
