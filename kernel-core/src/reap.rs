//! Dropping replaced instances off the caller's path.
//!
//! A replaced instance may own a large state (a table of 100,000 strings takes milliseconds to
//! free). The caller of `replace` should not wait for that, and neither should the calls
//! queued behind the replacement, so the old instance goes to a background thread to be dropped.

use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::{self, JoinHandle};

type Garbage = Box<dyn Send>;

/// A lazily started thread that drops what it is given.
#[derive(Default)]
pub(crate) struct Reaper {
    inner: Mutex<Option<(Sender<Garbage>, JoinHandle<()>)>>,
}

impl Reaper {
    /// Drops `garbage` on the reaper thread (or here, if that thread cannot be started).
    pub(crate) fn dispose(&self, garbage: Garbage) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.is_none() {
            let (tx, rx) = mpsc::channel::<Garbage>();
            match thread::Builder::new()
                .name("microkernel-reaper".into())
                .spawn(move || rx.into_iter().for_each(drop))
            {
                Ok(worker) => *inner = Some((tx, worker)),
                Err(error) => tracing::warn!(%error, "could not start the reaper thread; dropping inline"),
            }
        }
        match inner.as_ref() {
            Some((tx, _)) => {
                if let Err(returned) = tx.send(garbage) {
                    drop(returned.0);
                }
            }
            None => drop(garbage),
        }
    }

    /// Waits until everything given so far is dropped, and stops the thread.
    pub(crate) fn shutdown(&self) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((tx, worker)) = inner {
            drop(tx);
            if worker.thread().id() != thread::current().id() && worker.join().is_err() {
                tracing::warn!("dropping a replaced instance panicked");
            }
        }
    }
}
