//! Dropping replaced instances off the caller's path.
//!
//! A replaced instance may own a large state (a table of 100,000 strings takes milliseconds to
//! free). The caller of `replace` should not wait for that, and neither should the calls
//! queued behind the replacement, so the old instance goes to a background thread to be dropped.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::{self, JoinHandle};

use crate::runtime::kernel::Shared;
use crate::runtime::notice::Notice;

type Garbage = Box<dyn Send>;

/// What the reaper drops: a replaced instance and whose it was.
type Delivery = (Arc<str>, Garbage);

/// Drops `garbage`, reporting a panicking `Drop` (user code) instead of unwinding.
pub(crate) fn drop_reporting(shared: Option<&Shared>, service: &str, garbage: Garbage) {
    if let Err(message) = crate::panic::catch(move || drop(garbage)) {
        tracing::error!(service, %message, "dropping a replaced instance panicked");
        if let Some(shared) = shared {
            shared.notify(&Notice::Panicked {
                service,
                during: "drop",
                message: &message,
            });
        }
    }
}

/// A lazily started thread that drops what it is given.
#[derive(Default)]
pub(crate) struct Reaper {
    inner: Mutex<Option<(Sender<Delivery>, JoinHandle<()>)>>,
}

impl Reaper {
    /// Drops `service`'s old `garbage` on the reaper thread (or here, if that thread cannot be
    /// started). A panicking `Drop` is reported, and the thread goes on.
    pub(crate) fn dispose(&self, kernel: Weak<Shared>, service: Arc<str>, garbage: Garbage) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.is_none() {
            let (tx, rx) = mpsc::channel::<Delivery>();
            let reaping = kernel.clone();
            match thread::Builder::new().name("microkernel-reaper".into()).spawn(move || {
                for (service, garbage) in rx {
                    drop_reporting(reaping.upgrade().as_deref(), &service, garbage);
                }
            }) {
                Ok(worker) => *inner = Some((tx, worker)),
                Err(error) => tracing::warn!(%error, "could not start the reaper thread; dropping inline"),
            }
        }
        match inner.as_ref() {
            Some((tx, _)) => {
                if let Err(returned) = tx.send((service, garbage)) {
                    let (service, garbage) = returned.0;
                    drop_reporting(kernel.upgrade().as_deref(), &service, garbage);
                }
            }
            None => drop_reporting(kernel.upgrade().as_deref(), &service, garbage),
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
