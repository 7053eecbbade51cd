//! The lock of an async slot: what it guards is *moved* to whoever holds it, and the ones who
//! wait are served in the order they arrived.
//!
//! Free, the guarded value (boxed, so that one word holds it) lies in an atomic cell. Taking it
//! is one atomic swap and so is putting it back: the uncontended call touches nothing else
//! (tokio's fair mutex takes its waiter list's lock on every release). Who finds the cell empty
//! queues, with a ticket and a waker; a holder that leaves while someone waits hands the value
//! to the first in line directly (it is *granted*, and collected at that waiter's next poll),
//! so nobody who arrives later can take it first.
//!
//! Why no wake-up is lost: a waiter queues (and counts itself in `waiting`) and then tries the
//! cell once more; a holder puts the value back with a swap and then reads `waiting`. Every
//! access to the cell is a swap (acquire-release, one modification order), so either the
//! waiter's try comes after the put and finds the value, or the put reads the waiter's swap and
//! with it sees the waiter counted, and hands the value on.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::task::{Context, Waker};

// std's, parking_lot's and crossbeam's types, or loom's under `--cfg loom` (see `loom_tests`).
use crate::runtime::loom::{AtomicCell, AtomicU64, AtomicUsize, parking_lot};

/// A FIFO lock that moves its value to the holder.
pub(crate) struct Gate<T> {
    /// The value when nobody holds it; empty while someone holds it or it is granted to a
    /// waiter that has not collected it yet.
    free: AtomicCell<Option<Box<T>>>,
    /// How many are queued (kept equal to `queue.waiters.len()`, changed under its lock and
    /// read without it).
    waiting: AtomicUsize,
    queue: parking_lot::Mutex<Queue<T>>,
    /// The chain of calls holding the value (or granted it), 0 when none: what re-entry and
    /// cycle detection read.
    owner: AtomicU64,
}

struct Queue<T> {
    waiters: VecDeque<Waiter>,
    /// The value handed to the waiter with this ticket, not collected yet.
    granted: Option<(u64, Box<T>)>,
    next_ticket: u64,
}

struct Waiter {
    ticket: u64,
    chain: u64,
    waker: Waker,
}

/// A place in a gate's queue. Give it back with [`Gate::cancel`] unless [`Gate::poll_ticket`]
/// returned the value.
#[derive(Debug)]
pub(crate) struct Ticket(u64);

impl<T> Gate<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            free: AtomicCell::new(Some(Box::new(value))),
            waiting: AtomicUsize::new(0),
            queue: parking_lot::Mutex::new(Queue {
                waiters: VecDeque::new(),
                granted: None,
                next_ticket: 0,
            }),
            owner: AtomicU64::new(0),
        }
    }

    /// The chain holding the value, 0 when none.
    #[inline]
    pub(crate) fn owner(&self) -> u64 {
        self.owner.load(Ordering::Relaxed)
    }

    /// Takes the value for chain `chain` if it is free and nobody waits for it (they came
    /// first).
    #[inline]
    pub(crate) fn try_take(&self, chain: u64) -> Option<Box<T>> {
        if self.waiting.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let value = self.free.take()?;
        self.owner.store(chain, Ordering::Relaxed);
        Some(value)
    }

    /// Gives the value back: to the first waiter, if there is one.
    #[inline]
    pub(crate) fn release(&self, value: Box<T>) {
        self.owner.store(0, Ordering::Relaxed);
        if self.waiting.load(Ordering::Relaxed) != 0 {
            return self.hand_on(value);
        }
        let previous = self.free.swap(Some(value));
        debug_assert!(previous.is_none(), "a gate's value is unique");
        if self.waiting.load(Ordering::Acquire) != 0 {
            // Someone queued meanwhile and may have missed the value: serve the first in line.
            self.kick();
        }
    }

    /// Grants `value` to the first waiter; if the queue emptied meanwhile, the value goes back
    /// to the cell (and to whoever queued after all).
    #[cold]
    fn hand_on(&self, value: Box<T>) {
        let mut value = value;
        loop {
            let mut queue = self.queue.lock();
            if let Some(first) = queue.waiters.pop_front() {
                self.waiting.store(queue.waiters.len(), Ordering::Relaxed);
                self.owner.store(first.chain, Ordering::Relaxed);
                debug_assert!(queue.granted.is_none(), "a gate's value is unique");
                queue.granted = Some((first.ticket, value));
                drop(queue);
                first.waker.wake();
                return;
            }
            drop(queue);
            let previous = self.free.swap(Some(value));
            debug_assert!(previous.is_none(), "a gate's value is unique");
            if self.waiting.load(Ordering::Acquire) == 0 {
                return;
            }
            match self.free.take() {
                Some(taken) => value = taken,
                None => return, // someone took it, and will hand it on when they leave
            }
        }
    }

    /// If the value is free while someone waits, grants it to the first in line.
    #[cold]
    fn kick(&self) {
        if let Some(value) = self.free.take() {
            self.hand_on(value);
        }
    }

    /// Queues chain `chain` (woken through `waker` when granted the value).
    #[cold]
    pub(crate) fn enqueue(&self, chain: u64, waker: &Waker) -> Ticket {
        let mut queue = self.queue.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiters.push_back(Waiter {
            ticket,
            chain,
            waker: waker.clone(),
        });
        self.waiting.store(queue.waiters.len(), Ordering::Relaxed);
        drop(queue);
        // The value may have come back before this waiter counted: see the module's comment.
        self.kick();
        Ticket(ticket)
    }

    /// The value, if it was granted to `ticket`; otherwise the waker to wake is updated.
    #[cold]
    pub(crate) fn poll_ticket(&self, ticket: &Ticket, cx: &mut Context<'_>) -> Option<Box<T>> {
        let mut queue = self.queue.lock();
        if let Some((granted, _)) = &queue.granted
            && *granted == ticket.0
        {
            return queue.granted.take().map(|(_, value)| value);
        }
        if let Ok(at) = queue.waiters.binary_search_by_key(&ticket.0, |waiter| waiter.ticket) {
            let waiter = &mut queue.waiters[at];
            if !waiter.waker.will_wake(cx.waker()) {
                waiter.waker = cx.waker().clone();
            }
        }
        None
    }

    /// Leaves the queue; the value, if it was granted to `ticket` meanwhile, goes on to the next
    /// in line (or back to the cell).
    #[cold]
    pub(crate) fn cancel(&self, ticket: Ticket) {
        let mut queue = self.queue.lock();
        if let Some((granted, _)) = &queue.granted
            && *granted == ticket.0
        {
            let value = queue.granted.take().map(|(_, value)| value);
            drop(queue);
            if let Some(value) = value {
                self.release(value);
            }
            return;
        }
        if let Ok(at) = queue.waiters.binary_search_by_key(&ticket.0, |waiter| waiter.ticket) {
            queue.waiters.remove(at);
            self.waiting.store(queue.waiters.len(), Ordering::Relaxed);
        }
    }
}

/// Models of the gate (run with `--cfg loom`, see `crate::runtime::loom`): every interleaving
/// of three threads, within a bound on preemptions.
#[cfg(all(test, loom))]
mod loom_tests {
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::task::{Poll, Waker};

    use super::Gate;

    /// The gate's value in the models: who held it, in order (chain, ticket if it queued).
    type History = Vec<(u64, Option<u64>)>;

    fn model(f: impl Fn() + Send + Sync + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    /// Takes the value as the async slot does (`AsyncSlot::enter`): at once if free, else
    /// queued and woken when granted. A lost wake-up leaves every thread blocked: loom reports
    /// it as a deadlock.
    fn acquire(gate: &Gate<History>, chain: u64) -> (Box<History>, Option<u64>) {
        if let Some(value) = gate.try_take(chain) {
            return (value, None);
        }
        let mut ticket = None;
        loom::future::block_on(poll_fn(|cx| {
            let ticket = ticket.get_or_insert_with(|| gate.enqueue(chain, cx.waker()));
            match gate.poll_ticket(ticket, cx) {
                Some(value) => Poll::Ready((value, Some(ticket.0))),
                None => Poll::Pending,
            }
        }))
    }

    /// Holds the value once: the gate names this chain its owner, the value records the visit.
    fn visit(gate: &Gate<History>, chain: u64) {
        let (mut value, ticket) = acquire(gate, chain);
        assert_eq!(gate.owner(), chain, "the holder is the gate's owner");
        value.push((chain, ticket));
        gate.release(value);
    }

    /// Two waiters and a holder that leaves and comes back: each gets the value once (it
    /// moves, so nobody holds it twice), those who queued get it in the order they queued, and
    /// nobody is left asleep.
    #[test]
    fn loom_gate_fifo_and_no_lost_wakeup() {
        model(|| {
            let gate = Arc::new(Gate::new(History::new()));
            let held = gate.try_take(1).expect("a new gate is free");
            let waiters: Vec<_> = [2, 3]
                .into_iter()
                .map(|chain| {
                    let gate = Arc::clone(&gate);
                    loom::thread::spawn(move || visit(&gate, chain))
                })
                .collect();
            gate.release(held);
            visit(&gate, 1);
            for waiter in waiters {
                waiter.join().unwrap();
            }
            let history = gate.try_take(0).expect("the value is free at the end, nobody waits");
            assert_eq!(history.len(), 3, "each visit recorded once: {history:?}");
            let tickets: Vec<u64> = history.iter().filter_map(|(_, ticket)| *ticket).collect();
            assert!(tickets.is_sorted(), "queued waiters served in order: {history:?}");
            assert_eq!(gate.owner(), 0);
        });
    }

    /// A waiter that gives up its place — maybe after the value was granted to it — passes the
    /// value on: the other waiter gets it, and it is free at the end.
    #[test]
    fn loom_gate_cancelled_ticket_passes_on() {
        model(|| {
            let gate = Arc::new(Gate::new(History::new()));
            let held = gate.try_take(1).expect("a new gate is free");
            let quitter = {
                let gate = Arc::clone(&gate);
                loom::thread::spawn(move || {
                    let ticket = gate.enqueue(2, Waker::noop());
                    gate.cancel(ticket);
                })
            };
            let waiter = {
                let gate = Arc::clone(&gate);
                loom::thread::spawn(move || visit(&gate, 3))
            };
            gate.release(held);
            quitter.join().unwrap();
            waiter.join().unwrap();
            let history = gate.try_take(0).expect("the value is free at the end, nobody waits");
            assert_eq!(history.iter().map(|(chain, _)| *chain).collect::<Vec<_>>(), [3]);
        });
    }
}
