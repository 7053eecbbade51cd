//! The kernel's part that keeps states ([`Persistence`]): the store and its load policy, the
//! sealer (configured, or the kernel's own for in-process crossings), and the periodic
//! checkpoints' thread. What a save or a restore does with them is the runtime's
//! (`runtime/persist.rs`).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::seal::{Algorithm, Key, KeyError, Keyring, Sealer};
use crate::store::{LoadPolicy, StateStore};

/// Alters sealed state between seal and open (fault-injection builds only).
#[cfg(feature = "fault-injection")]
pub(crate) type TransitFault = Box<dyn Fn(&mut Vec<u8>) + Send + Sync>;

/// Runs between a save's export and its write, with the service and the generation exported
/// (fault-injection builds only): lets a test force an interleaving of saves.
#[cfg(feature = "fault-injection")]
pub(crate) type SavePause = Box<dyn Fn(&str, u64) + Send + Sync>;

/// Where states are kept and how they are sealed.
pub(crate) struct Persistence {
    pub(super) sealer: Option<Sealer>,
    /// The sealer of in-process crossings when none was configured: a key of this kernel's
    /// own, made at the first replacement, never stored or shown (so a replacement's state is
    /// sealed while it crosses, whatever the configuration).
    pub(super) ephemeral: OnceLock<Sealer>,
    pub(super) store: Option<Box<dyn StateStore>>,
    pub(super) load_policy: LoadPolicy,
    pub(super) checkpoint_every: Option<Duration>,
    pub(super) checkpointer: Mutex<Option<Checkpointer>>,
    #[cfg(feature = "fault-injection")]
    pub(super) transit_fault: Option<TransitFault>,
    #[cfg(feature = "fault-injection")]
    pub(super) save_pause: Option<SavePause>,
}

impl Persistence {
    pub(crate) fn store(&self) -> Option<&dyn StateStore> {
        self.store.as_deref()
    }

    pub(crate) fn load_policy(&self) -> LoadPolicy {
        self.load_policy
    }

    pub(crate) fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }

    /// The sealer a replacement's state crosses with: the configured one, else this kernel's
    /// ephemeral one (an error only if the operating system gave no random bytes for its key).
    pub(crate) fn crossing_sealer(&self) -> Result<&Sealer, KeyError> {
        if let Some(sealer) = &self.sealer {
            return Ok(sealer);
        }
        if let Some(sealer) = self.ephemeral.get() {
            return Ok(sealer);
        }
        // A failure of the system's random generator is not kept: the next replacement tries
        // again. (Two first replacements racing here make two keys; one is kept.)
        let key = Key::generate(Algorithm::Aes256Gcm)?;
        Ok(self.ephemeral.get_or_init(|| Sealer::new(Keyring::new(0, key))))
    }

    /// Starts the periodic checkpoints if they are configured and not running: `checkpoint`
    /// runs every interval until it returns `false`.
    pub(crate) fn start_checkpoints(&self, checkpoint: impl Fn() -> bool + Send + 'static) {
        if let Some(every) = self.checkpoint_every {
            let mut checkpointer = self.checkpointer.lock().unwrap_or_else(PoisonError::into_inner);
            if checkpointer.is_none() {
                *checkpointer = Some(Checkpointer::start(every, checkpoint));
            }
        }
    }

    /// Ends the periodic checkpoints' thread; it starts again when next needed.
    pub(crate) fn stop_checkpoints(&self) {
        if let Some(checkpointer) = self.checkpointer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            checkpointer.shutdown();
        }
    }

    /// Lets a test alter the sealed state in transit (feature `fault-injection`): a whole
    /// envelope, or a segmented one's first segment.
    #[allow(unused_variables, clippy::unused_self, clippy::ptr_arg)]
    pub(crate) fn inject_transit_fault(&self, bytes: &mut Vec<u8>) {
        #[cfg(feature = "fault-injection")]
        if let Some(fault) = &self.transit_fault {
            fault(bytes);
        }
    }

    /// Lets a test pause a save between its export and its write (feature `fault-injection`).
    #[allow(unused_variables, clippy::unused_self)]
    pub(crate) fn pause_before_save(&self, service: &str, generation: u64) {
        #[cfg(feature = "fault-injection")]
        if let Some(pause) = &self.save_pause {
            pause(service, generation);
        }
    }
}

/// A thread that checkpoints every interval until the kernel goes.
pub(crate) struct Checkpointer {
    stop: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Checkpointer {
    /// Starts the thread: every `every`, `checkpoint` runs, until it returns `false`.
    fn start(every: Duration, checkpoint: impl Fn() -> bool + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let worker = thread::Builder::new()
            .name("microkernel-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(every)
                    && checkpoint()
                {}
            })
            .ok();
        if worker.is_none() {
            tracing::error!("could not start the checkpoint thread; periodic checkpoints are off");
        }
        Self {
            stop: Mutex::new(worker.map(|w| (tx, w))),
        }
    }

    fn shutdown(&self) {
        if let Some((tx, worker)) = self.stop.lock().unwrap_or_else(PoisonError::into_inner).take() {
            drop(tx);
            if worker.thread().id() != thread::current().id() {
                let _ = worker.join();
            }
        }
    }
}
