//! Building a kernel: its settings, and the refusal of settings that cannot mean anything.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use super::persistence::Persistence;
#[cfg(feature = "fault-injection")]
use super::persistence::{SavePause, TransitFault};
use super::supervision::Restarts;
use super::{Kernel, Shared};
use crate::messaging::push::Pusher;
use crate::runtime::notice::{Notice, Notices, Observer};
use crate::runtime::reap::Reaper;
use crate::seal::Sealer;
use crate::store::{LoadPolicy, StateStore};

/// The default of `KernelBuilder::drain_timeout`.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`Kernel`] with an observer and limits.
#[must_use]
pub struct KernelBuilder {
    observer: Option<Observer>,
    max_push_workers: usize,
    sealer: Option<Sealer>,
    store: Option<Box<dyn StateStore>>,
    load_policy: LoadPolicy,
    checkpoint_every: Option<Duration>,
    stop_timeout: Option<Duration>,
    drain_timeout: Duration,
    #[cfg(feature = "tokio")]
    remote: Option<Arc<dyn crate::runtime::asynchronous::RemoteCalls>>,
    #[cfg(feature = "fault-injection")]
    transit_fault: Option<TransitFault>,
    #[cfg(feature = "fault-injection")]
    save_pause: Option<SavePause>,
}

impl Default for KernelBuilder {
    fn default() -> Self {
        Self {
            observer: None,
            max_push_workers: 16,
            sealer: None,
            store: None,
            load_policy: LoadPolicy::Fail,
            checkpoint_every: None,
            stop_timeout: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            #[cfg(feature = "tokio")]
            remote: None,
            #[cfg(feature = "fault-injection")]
            transit_fault: None,
            #[cfg(feature = "fault-injection")]
            save_pause: None,
        }
    }
}

impl KernelBuilder {
    /// Calls `observer` with every [`Notice`]: registrations, starts, stops, pushed events,
    /// state migrations. It runs on the thread that caused the notice.
    pub fn observer(mut self, observer: impl Fn(&Notice<'_>) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The most threads that run pushed events at once (default 16). A push finding them all
    /// busy waits in a queue; its timeout still bounds the caller's wait.
    pub fn max_push_workers(mut self, n: usize) -> Self {
        self.max_push_workers = n;
        self
    }

    /// Seals every state that crosses a replacement, and every state the [`store`](Self::store)
    /// keeps, with `sealer`.
    pub fn sealer(mut self, sealer: Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Alters every sealed state between seal and open, to test that tampering is caught
    /// (only with the `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    pub fn fault_in_transit(mut self, fault: impl Fn(&mut Vec<u8>) + Send + Sync + 'static) -> Self {
        self.transit_fault = Some(Box::new(fault));
        self
    }

    /// Calls `pause(service, generation)` after a save exported a state and before it writes it
    /// (only with the `fault-injection` feature), to force interleavings of saves in tests.
    #[cfg(feature = "fault-injection")]
    pub fn pause_before_save(mut self, pause: impl Fn(&str, u64) + Send + Sync + 'static) -> Self {
        self.save_pause = Some(Box::new(pause));
        self
    }

    /// Persists states in `store` (sealed with the [`sealer`](Self::sealer), which a store
    /// needs): saved when a service stops and on [`Kernel::checkpoint`]; a registering service
    /// whose state the store holds starts from it.
    pub fn store(mut self, store: impl StateStore) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// What happens when a registering service's stored state exists but cannot be used
    /// (default [`LoadPolicy::Fail`]: the registration fails, naming the object).
    pub fn load_policy(mut self, policy: LoadPolicy) -> Self {
        self.load_policy = policy;
        self
    }

    /// Also checkpoints every running service every `interval` (needs a store); failures are
    /// reported through `tracing` at error level.
    pub fn checkpoint_every(mut self, interval: Duration) -> Self {
        self.checkpoint_every = Some(interval);
        self
    }

    /// Gives each `stop` hook at most `timeout` (during `stop`, `stop_cascade` and `stop_all`).
    /// A service that does not stop in time is reported ([`LifecycleError::StopTimeout`](crate::LifecycleError::StopTimeout)) and
    /// marked Failed, and the others still stop in order; its hook keeps running on its own
    /// thread until it returns.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = Some(timeout);
        self
    }

    /// How long a replacement of an async service (feature `tokio`) waits for a handler that is
    /// mid-`.await` when it begins (default 10 s); past it the replacement fails and the old
    /// version keeps serving.
    #[cfg(feature = "tokio")]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sends async calls to names no local service has to `remote` (other nodes; feature
    /// `tokio`): see [`RemoteCalls`](crate::asynchronous::RemoteCalls).
    #[cfg(feature = "tokio")]
    pub fn remote(mut self, remote: impl crate::runtime::asynchronous::RemoteCalls) -> Self {
        self.remote = Some(Arc::new(remote));
        self
    }

    /// Builds the kernel, refusing settings that could not mean anything: no push workers,
    /// periodic checkpoints without a store, a store without a sealer, a zero checkpoint
    /// interval or stop timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use microkernel::{BuildError, Kernel};
    ///
    /// let kernel = Kernel::builder().stop_timeout(Duration::from_secs(5)).build()?;
    /// let refused = Kernel::builder().checkpoint_every(Duration::from_secs(1)).build();
    /// assert!(matches!(refused, Err(BuildError::CheckpointsWithoutStore)));
    /// # drop(kernel);
    /// # Ok::<(), BuildError>(())
    /// ```
    pub fn build(self) -> Result<Kernel, BuildError> {
        if self.max_push_workers == 0 {
            return Err(BuildError::NoPushWorkers);
        }
        match self.checkpoint_every {
            Some(_) if self.store.is_none() => return Err(BuildError::CheckpointsWithoutStore),
            Some(interval) if interval.is_zero() => {
                return Err(BuildError::ZeroDuration {
                    setting: "checkpoint_every",
                });
            }
            _ => {}
        }
        if self.store.is_some() && self.sealer.is_none() {
            return Err(BuildError::StoreWithoutSealer);
        }
        if self.stop_timeout.is_some_and(|t| t.is_zero()) {
            return Err(BuildError::ZeroDuration {
                setting: "stop_timeout",
            });
        }
        let notices = Arc::new(Notices::new(self.observer));
        let shared = Arc::new_cyclic(|this| Shared {
            reaper: Reaper::new(Arc::downgrade(&notices)),
            notices,
            stops: AtomicU64::new(0),
            removals: AtomicU64::new(0),
            id: {
                static NEXT_KERNEL: AtomicU64 = AtomicU64::new(1);
                NEXT_KERNEL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
            this: Weak::clone(this),
            registry: RwLock::new(Default::default()),
            lifecycle: Arc::default(),
            pusher: Pusher::new(self.max_push_workers),
            persistence: Persistence {
                sealer: self.sealer,
                ephemeral: std::sync::OnceLock::new(),
                checkpoint_every: self.checkpoint_every,
                store: self.store,
                load_policy: self.load_policy,
                checkpointer: Mutex::new(None),
                #[cfg(feature = "fault-injection")]
                transit_fault: self.transit_fault,
                #[cfg(feature = "fault-injection")]
                save_pause: self.save_pause,
            },
            stop_timeout: self.stop_timeout,
            drain_timeout: self.drain_timeout,
            #[cfg(feature = "tokio")]
            remote: self.remote,
            restarts: Restarts::default(),
        });
        Ok(Kernel { shared })
    }
}

/// A [`KernelBuilder`] setting that cannot mean anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_push_workers(0)`: no pushed event could ever be handled.
    #[error("max_push_workers(0): pushed events need at least one worker")]
    NoPushWorkers,
    /// `checkpoint_every` without a `store`: nowhere to write the checkpoints.
    #[error("checkpoint_every needs a store: add .store(DirStore::open(..)?)")]
    CheckpointsWithoutStore,
    /// A `store` without a `sealer`: states are kept sealed, and there is no key to seal them.
    #[error("a store needs a sealer to seal the states it keeps: add .sealer(Sealer::new(keyring))")]
    StoreWithoutSealer,
    /// A duration of zero where a positive one is needed.
    #[error("{setting}(Duration::ZERO): give a positive duration")]
    ZeroDuration {
        /// The builder method.
        setting: &'static str,
    },
}
