//! Push: events handed to the kernel and answered through a reply handle with a real timeout.
//!
//! A pushed event addressed to a service runs on a worker thread, so the caller's wait is
//! bounded by its timeout even if the handler never returns. Workers are started on demand:
//! when every worker is busy (perhaps stuck in a hung handler), the next push gets a new one,
//! up to a limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::messaging::message::{Reply, code};

/// The reply to a pushed event, to be waited for (what [`Kernel::push`](crate::Kernel::push) waits on).
#[derive(Debug)]
#[must_use = "a pushed event's reply is only seen through `wait`"]
pub struct PendingReply(Pending);

#[derive(Debug)]
enum Pending {
    Ready(Reply),
    Waiting(Receiver<Reply>),
}

impl PendingReply {
    pub(crate) fn ready(reply: Reply) -> Self {
        Self(Pending::Ready(reply))
    }

    /// Waits at most `timeout` for the reply. Past it, returns a 408 reply; the handler's late
    /// answer is dropped.
    pub fn wait(self, timeout: Duration) -> Reply {
        match self.0 {
            Pending::Ready(reply) => reply,
            Pending::Waiting(rx) => match rx.recv_timeout(timeout) {
                Ok(reply) => reply,
                Err(RecvTimeoutError::Timeout) => {
                    Reply::new(code::TIMEOUT, "Timeout", format!("no reply within {timeout:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => Reply::new(
                    code::UNAVAILABLE,
                    "Kernel unavailable",
                    "the event was dropped unanswered",
                ),
            },
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The worker threads that run pushed events.
pub(crate) struct Pusher {
    max_workers: usize,
    idle: Arc<AtomicUsize>,
    pool: Mutex<Option<Pool>>,
}

struct Pool {
    jobs: Sender<Job>,
    queue: Arc<Mutex<Receiver<Job>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pusher {
    pub(crate) fn new(max_workers: usize) -> Self {
        Self {
            max_workers: max_workers.max(1),
            idle: Arc::new(AtomicUsize::new(0)),
            pool: Mutex::new(None),
        }
    }

    /// Runs `work` on a worker and returns the handle its reply will come through.
    pub(crate) fn submit(&self, work: impl FnOnce() -> Reply + Send + 'static) -> PendingReply {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            // The caller may have timed out and dropped its receiver: nothing to do then.
            let _ = tx.send(work());
        });
        let mut guard = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = guard.get_or_insert_with(|| {
            let (jobs, queue) = mpsc::channel();
            Pool {
                jobs,
                queue: Arc::new(Mutex::new(queue)),
                workers: Vec::new(),
            }
        });
        if self.idle.load(Ordering::Acquire) == 0 && pool.workers.len() < self.max_workers {
            self.spawn_worker(pool);
        }
        if pool.jobs.send(job).is_err() {
            return PendingReply::ready(Reply::new(
                code::UNAVAILABLE,
                "Kernel unavailable",
                "push workers stopped",
            ));
        }
        PendingReply(Pending::Waiting(rx))
    }

    fn spawn_worker(&self, pool: &mut Pool) {
        let queue = Arc::clone(&pool.queue);
        let idle = Arc::clone(&self.idle);
        let spawned = thread::Builder::new()
            .name(format!("microkernel-push-{}", pool.workers.len()))
            .spawn(move || {
                loop {
                    idle.fetch_add(1, Ordering::AcqRel);
                    let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    idle.fetch_sub(1, Ordering::AcqRel);
                    match job {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                }
            });
        match spawned {
            Ok(worker) => pool.workers.push(worker),
            // The queued job still runs on an existing worker, if there is one.
            Err(error) => tracing::warn!(%error, "could not start a push worker"),
        }
    }

    /// Closes the queue and waits, at most `grace`, for the workers to finish what they are
    /// running. A worker still inside a handler after that (a hung handler) is left to finish
    /// on its own and reported.
    pub(crate) fn shutdown(&self, grace: Duration) {
        let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(Pool { jobs, workers, .. }) = pool else { return };
        drop(jobs);
        let me = thread::current().id();
        // `None`: a grace too long to represent, i.e. wait as long as it takes.
        let deadline = Instant::now().checked_add(grace);
        for worker in workers.into_iter().filter(|w| w.thread().id() != me) {
            while !worker.is_finished() && deadline.is_none_or(|d| Instant::now() < d) {
                thread::sleep(Duration::from_millis(1));
            }
            if !worker.is_finished() {
                tracing::error!(thread = ?worker.thread().name(), "a push worker is stuck in a handler; leaving it");
            } else if worker.join().is_err() {
                tracing::warn!("a push worker panicked");
            }
        }
    }
}
