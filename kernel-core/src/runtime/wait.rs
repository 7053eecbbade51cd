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
use std::sync::{Arc, Mutex, PoisonError};

/// A slot, as the wait table sees it.
pub(crate) trait Held: Send + Sync {
    /// Token of the thread holding the slot, 0 when free.
    fn holder(&self) -> u64;
    /// The service's name, for the cycle's description.
    fn service(&self) -> &str;
}

/// Thread token → the slot that thread waits for.
static WAITING: Mutex<BTreeMap<u64, Arc<dyn Held>>> = Mutex::new(BTreeMap::new());

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
