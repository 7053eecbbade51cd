//! Dropping replaced instances off the caller's path.
//!
//! A replaced instance may own a large state (a table of 100,000 strings takes milliseconds to
//! free). The caller of `replace` should not wait for that, and neither should the calls
//! queued behind the replacement, so the old instance goes to a background thread to be dropped.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::{self, JoinHandle};

use crate::runtime::notice::{Notice, Notices};

type Garbage = Box<dyn Send>;

/// What the reaper drops: a replaced instance and whose it was.
type Delivery = (Arc<str>, Garbage);

/// Drops `garbage`, reporting a panicking `Drop` (user code) instead of unwinding.
fn drop_reporting(notices: Option<&Notices>, service: &str, garbage: Garbage) {
    if let Err(message) = crate::panic::catch(move || drop(garbage)) {
        tracing::error!(service, %message, "dropping a replaced instance panicked");
        if let Some(notices) = notices {
            notices.notify(&Notice::Panicked {
                service,
                during: "drop",
                message: &message,
            });
        }
    }
}

/// The kernel's part that drops replaced instances: here, or on a lazily started thread.
pub(crate) struct Reaper {
    inner: Mutex<Option<(Sender<Delivery>, JoinHandle<()>)>>,
    /// Told of a panicking `Drop`; held weakly, as the kernel that owns them both is.
    notices: Weak<Notices>,
}

impl Reaper {
    pub(crate) fn new(notices: Weak<Notices>) -> Self {
        Self {
            inner: Mutex::default(),
            notices,
        }
    }

    /// Drops `service`'s old `garbage` here, reporting a panicking `Drop`.
    pub(crate) fn drop_now(&self, service: &str, garbage: Garbage) {
        drop_reporting(self.notices.upgrade().as_deref(), service, garbage);
    }

    /// Drops `service`'s old `garbage` on the reaper thread (or here, if that thread cannot be
    /// started). A panicking `Drop` is reported, and the thread goes on.
    pub(crate) fn dispose(&self, service: Arc<str>, garbage: Garbage) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.is_none() {
            let (tx, rx) = mpsc::channel::<Delivery>();
            let reaping = self.notices.clone();
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
                    self.drop_now(&service, garbage);
                }
            }
            None => self.drop_now(&service, garbage),
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
