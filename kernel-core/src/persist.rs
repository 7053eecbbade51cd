//! The kernel's use of a [`StateStore`]: restore on register, save on stop, checkpoints.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Mutex, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::error::LifecycleError;
use crate::kernel::{Entry, Kernel, Shared};
use crate::service::{Service, Status};
use crate::state;
use crate::store::{LoadPolicy, StoreError};

/// Checkpoints failed; each error names its service and file.
#[derive(Debug, thiserror::Error)]
#[error("{} checkpoint(s) failed: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct CheckpointError(pub Vec<LifecycleError>);

impl Kernel {
    /// Saves the state of every running service to the store; returns the files written.
    /// Goes on past failures and reports every one.
    pub fn checkpoint(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        self.shared().checkpoint_all()
    }

    /// Saves one service's state to the store, whatever its status.
    pub fn checkpoint_service(&self, name: &str) -> Result<PathBuf, LifecycleError> {
        let snapshot = self.shared().snapshot();
        let entry = snapshot
            .get(name)
            .ok_or_else(|| LifecycleError::NotFound { name: name.to_owned() })?;
        self.shared().save(entry)
    }

    /// Before a service is registered: if the store holds its file, import the state from it.
    /// Returns the generation of the state imported (0 if none), where the service's saves go on
    /// from.
    pub(crate) fn restore<S: Service>(&self, service: &mut S) -> Result<u64, LifecycleError> {
        let Some(store) = self.shared().store() else {
            return Ok(0);
        };
        let name = service.name().to_owned();
        let restore_error = |source: StoreError| LifecycleError::Restore {
            service: name.clone(),
            source,
        };
        let outcome = match store.load(&name) {
            Ok(None) => Ok(None),
            Ok(Some(loaded)) => import_loaded(service, loaded).map(Some),
            Err(error) => Err(error),
        };
        // Saves go on above everything the store has seen of this service — also when the file
        // was set aside or refused (or removed since): a lower generation would be refused as
        // stale for ever.
        let generation = |restored: u64| restored.max(store.known_generation(&name));
        match outcome {
            Ok(None) => Ok(generation(0)),
            Ok(Some((path, restored))) => {
                tracing::info!(service = %name, path = %path.display(), generation = restored, "restored state from the store");
                Ok(generation(restored))
            }
            // Set aside only a file whose contents are unusable; an I/O error, a refused file
            // kind or size, or a replayed file stays an error (the file may be good, or an
            // attack to report).
            Err(error @ (StoreError::Seal { .. } | StoreError::Decode { .. } | StoreError::Import { .. }))
                if store.policy() == LoadPolicy::StartFreshKeepAside =>
            {
                let path = store.path(&name).map_err(restore_error)?;
                if path.exists() {
                    let aside = store.set_aside(&path).map_err(restore_error)?;
                    tracing::warn!(service = %name, %error, aside = %aside.display(), "unusable state file set aside; starting fresh");
                }
                Ok(generation(0))
            }
            Err(error) => Err(restore_error(error)),
        }
    }
}

/// Decodes a loaded state into the service's type and imports it; panics of user code
/// (`Deserialize`, conversions, `import_state`) become errors naming the file.
fn import_loaded<S: Service>(service: &mut S, loaded: crate::store::Loaded) -> Result<(PathBuf, u64), StoreError> {
    let path = loaded.path;
    let bytes = loaded.state;
    let imported = crate::panic::catch(|| {
        let state = state::decode::<S::State>(bytes.as_bytes()).map_err(|source| StoreError::Decode {
            path: path.clone(),
            source,
        })?;
        service.import_state(state).map_err(|source| StoreError::Import {
            path: path.clone(),
            source,
        })
    });
    match imported {
        Ok(Ok(())) => Ok((path, loaded.generation)),
        Ok(Err(error)) => Err(error),
        Err(message) => Err(StoreError::Import {
            path,
            source: format!("panicked: {message}").into(),
        }),
    }
}

impl Shared {
    /// Exports a service's state and writes it to the store. If a save of a later export wins
    /// the race to the file, this one is not written (the file holds the newer state) and the
    /// call succeeds.
    pub(crate) fn save(&self, entry: &Entry) -> Result<PathBuf, LifecycleError> {
        let service = entry.lifecycle.name().to_string();
        let store = self.store().ok_or_else(|| LifecycleError::NoStore {
            service: service.clone(),
        })?;
        // `_in_flight` is held until the write is over: a restart of the service waits for it.
        let (encoded, generation, _in_flight) = entry.lifecycle.export_for_save()?;
        #[cfg(feature = "fault-injection")]
        if let Some(pause) = &self.save_pause {
            pause(&service, generation);
        }
        match store.save(&service, &encoded, generation) {
            Ok(path) => Ok(path),
            // Another save exported later and wrote first: the file already holds a newer state
            // than this one, which is what a save promises.
            Err(StoreError::Stale {
                path,
                generation,
                newest,
            }) => {
                tracing::debug!(
                    service,
                    generation,
                    newest,
                    "a newer state was saved meanwhile; this older one is not written"
                );
                Ok(path)
            }
            Err(source) => Err(LifecycleError::Save { service, source }),
        }
    }

    /// After a successful stop: save the state if there is a store.
    pub(crate) fn save_after_stop(&self, entry: &Entry) -> Result<(), LifecycleError> {
        if self.store().is_none() {
            return Ok(());
        }
        self.save(entry).map(|path| {
            tracing::debug!(service = %entry.lifecycle.name(), path = %path.display(), "saved state on stop");
        })
    }

    fn checkpoint_all(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        let snapshot = self.snapshot();
        let mut written = Vec::new();
        let mut errors = Vec::new();
        for entry in snapshot.values().filter(|e| e.lifecycle.status() == Status::Running) {
            match self.save(entry) {
                Ok(path) => written.push(path),
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() {
            Ok(written)
        } else {
            Err(CheckpointError(errors))
        }
    }
}

/// A thread that checkpoints every interval until the kernel goes.
pub(crate) struct Checkpointer {
    stop: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Checkpointer {
    pub(crate) fn start(shared: Weak<Shared>, every: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let worker = thread::Builder::new()
            .name("microkernel-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    let Some(shared) = shared.upgrade() else { break };
                    // User code (a state's `Serialize`, `export_state`) is guarded inside; this
                    // keeps the thread alive whatever else unwinds.
                    match crate::panic::catch(|| shared.checkpoint_all()) {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => tracing::error!(%error, "periodic checkpoint failed"),
                        Err(message) => tracing::error!(%message, "periodic checkpoint panicked; checkpoints go on"),
                    }
                }
            })
            .ok();
        if worker.is_none() {
            tracing::error!("could not start the checkpoint thread; periodic checkpoints are off");
        }
        Self {
            stop: Mutex::new(worker.map(|w| (tx, w))),
        }
    }

    pub(crate) fn shutdown(&self) {
        if let Some((tx, worker)) = self.stop.lock().unwrap_or_else(PoisonError::into_inner).take() {
            drop(tx);
            if worker.thread().id() != thread::current().id() {
                let _ = worker.join();
            }
        }
    }
}
