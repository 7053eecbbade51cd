//! What every slot keeps beside its instance, whatever its kind: the service's name and
//! status, the generation of its last exported state, which instance it holds, a stop that
//! outlived its timeout, and the saves exported and not yet written.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::runtime::error::LifecycleError;
use crate::runtime::error::Status;

/// The state a slot of either kind keeps beside its instance.
pub(crate) struct SlotCore {
    pub(crate) name: Arc<str>,
    /// A `Status`, written only by the slot's holder (or by a stop that gave up waiting);
    /// readable without holding the slot.
    pub(crate) status: AtomicU8,
    /// The generation of the last state exported (saved or moved across a replacement): each
    /// export takes the next one, with the slot held, so generations follow export order.
    generation: AtomicU64,
    /// Which instance the slot holds: one more at every swap (replacement, restart), so that a
    /// restart planned for a failed instance can tell it is no longer there.
    epoch: AtomicU64,
    /// A stop hook outlived its timeout and still holds the slot: lifecycle changes are refused
    /// (instead of waiting for it) until it returns.
    late_stop: AtomicBool,
    /// Saves exported (with the slot held) and not yet written: a restart waits for them.
    saves: Arc<SavesInFlight>,
}

impl SlotCore {
    /// The core of a new slot for `name`, whose state was last saved at `generation`.
    pub(crate) fn new(name: Arc<str>, generation: u64) -> Self {
        Self {
            name,
            status: AtomicU8::new(Status::Created.to_u8()),
            generation: AtomicU64::new(generation),
            epoch: AtomicU64::new(0),
            late_stop: AtomicBool::new(false),
            saves: Arc::default(),
        }
    }

    pub(crate) fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.status.store(status.to_u8(), Ordering::Release);
    }

    /// Which instance the slot holds.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Another instance is in the slot.
    pub(crate) fn swapped(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// The generation of a state exported now: one more than the last. Call with the slot
    /// held (so a load and a store suffice, and generations follow the order of exports).
    /// Saturating: a store that claimed `u64::MAX` (see SECURITY.md) makes saves refused as
    /// stale, not wrap to 0 or panic.
    pub(crate) fn next_generation(&self) -> u64 {
        let next = self.generation.load(Ordering::Relaxed).saturating_add(1);
        self.generation.store(next, Ordering::Relaxed);
        next
    }

    /// Refuses a lifecycle change while a stop hook that outlived its timeout holds the slot.
    pub(crate) fn check_no_late_stop(&self) -> Result<(), LifecycleError> {
        if self.late_stop.load(Ordering::Acquire) {
            return Err(LifecycleError::StopInProgress {
                service: self.name.to_string(),
            });
        }
        Ok(())
    }

    /// A stop gave up waiting for its hook (`true`), or the late hook returned (`false`).
    pub(crate) fn set_late_stop(&self, late: bool) {
        self.late_stop.store(late, Ordering::Release);
    }

    /// Counts a save exported now until the returned guard drops. Call with the slot held: a
    /// restart holding it sees every export that came before.
    pub(crate) fn begin_save(&self) -> SaveInFlight {
        *self.saves.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        SaveInFlight(Arc::clone(&self.saves))
    }

    /// Waits until every save exported from this slot has been written (or failed). Call with
    /// the slot held, so that no new export can begin; saves never wait for the slot.
    pub(crate) fn wait_for_saves(&self) {
        let mut count = self.saves.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count > 0 {
            count = self.saves.written.wait(count).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Saves exported and not yet written, and a condition signalled when the last one is.
#[derive(Default)]
struct SavesInFlight {
    count: Mutex<u32>,
    written: Condvar,
}

/// A save exported from a slot and not yet written; dropping it says the write is over.
pub(crate) struct SaveInFlight(Arc<SavesInFlight>);

impl Drop for SaveInFlight {
    fn drop(&mut self) {
        let mut count = self.0.count.lock().unwrap_or_else(PoisonError::into_inner);
        *count -= 1;
        if *count == 0 {
            self.0.written.notify_all();
        }
    }
}
