//! The kernel's use of a [`StateStore`](crate::store::StateStore): restore on register, save on
//! stop, checkpoints.

use crate::boxed::ServiceFault;
use crate::runtime::error::LifecycleError;
use crate::runtime::error::Status;
use crate::runtime::kernel::{Entry, Kernel, Shared};
use crate::runtime::lifecycle::{Exported, Plumbing};
use crate::runtime::notice::Notice;
use crate::runtime::saving::export_sealed;
use crate::runtime::service::Service;
use crate::seal::SealedObject;
use crate::state;
use crate::state::EncodedState;
use crate::store::{LoadPolicy, Location, StoreError, block_on};

/// Checkpoints failed; each error names its service and file.
#[derive(Debug, thiserror::Error)]
#[error("{} checkpoint(s) failed: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct CheckpointError(pub Vec<LifecycleError>);

impl Kernel {
    /// Saves the state of every running service to the store; returns where each was written.
    /// Goes on past failures and reports every one.
    pub fn checkpoint(&self) -> Result<Vec<Location>, CheckpointError> {
        self.shared().checkpoint_all()
    }

    /// Saves one service's state to the store, whatever its status.
    pub fn checkpoint_service(&self, name: &str) -> Result<Location, LifecycleError> {
        // Its own entry only: a write-through node saves after every call.
        let entry = self
            .shared()
            .entry(name)
            .ok_or_else(|| LifecycleError::NotFound { name: name.to_owned() })?;
        self.shared().save(&entry)
    }

    /// Before a service is registered: if the store holds its state, import it. Returns the
    /// generation of the state imported (0 if none), where the service's saves go on from.
    pub(crate) fn restore<S: Service>(&self, service: &mut S) -> Result<u64, LifecycleError> {
        let shared = self.shared();
        let Some(store) = shared.persistence().store() else {
            return Ok(0);
        };
        let name = service.name().to_owned();
        let restore_error = |source: StoreError| LifecycleError::Restore {
            service: name.clone(),
            source,
        };
        let outcome = match shared.load_opened(&name) {
            Ok(None) => Ok(None),
            Ok(Some(opened)) => import_opened(service, opened).map(Some),
            Err(error) => Err(error),
        };
        // Saves go on above everything the store has seen of this service — also when the object
        // was set aside or refused (or removed since): a lower generation would be refused as
        // stale for ever.
        let generation = |restored: u64| restored.max(store.known_generation(&name));
        match outcome {
            Ok(None) => {
                let location = store.location(&name);
                if shared.persistence().load_policy() == LoadPolicy::RequireStored {
                    return Err(LifecycleError::NoStoredState {
                        service: name,
                        location: location.to_string(),
                    });
                }
                tracing::info!(service = %name, %location, "no stored state; starting from the state given");
                shared.notify(&Notice::NoStoredState {
                    service: &name,
                    location: &location,
                });
                Ok(generation(0))
            }
            Ok(Some((location, restored))) => {
                tracing::info!(service = %name, %location, generation = restored, "restored state from the store");
                shared.notify(&Notice::Restored {
                    service: &name,
                    location: &location,
                    generation: restored,
                });
                Ok(generation(restored))
            }
            // Set aside only an object whose contents are unusable; an I/O error, a refused kind
            // or size, or a replayed object stays an error (it may be good, or an attack to
            // report).
            Err(error @ (StoreError::Seal { .. } | StoreError::Decode { .. } | StoreError::Import { .. }))
                if shared.persistence().load_policy() == LoadPolicy::StartFreshKeepAside =>
            {
                if let Some(aside) = block_on(store.set_aside(&name)).map_err(restore_error)? {
                    tracing::warn!(service = %name, %error, %aside, "unusable state set aside; starting fresh");
                }
                Ok(generation(0))
            }
            Err(error) => Err(restore_error(error)),
        }
    }
}

/// A stored state, opened: where it was, its encoding, its generation.
pub(crate) struct Opened {
    pub(crate) location: Location,
    pub(crate) state: EncodedState,
    pub(crate) generation: u64,
}

/// Decodes an opened state into the service's type and imports it; panics of user code
/// (`Deserialize`, conversions, `import_state`) become errors naming the object.
fn import_opened<S: Service>(service: &mut S, opened: Opened) -> Result<(Location, u64), StoreError> {
    let object = opened.location;
    let imported = crate::panic::catch(|| {
        let state = state::decode::<S::State>(opened.state.as_bytes()).map_err(|source| StoreError::Decode {
            object: object.clone(),
            source,
        })?;
        service.import_state(state).map_err(|source| StoreError::Import {
            object: object.clone(),
            source: ServiceFault::Error(source),
        })
    });
    match imported {
        Ok(Ok(())) => Ok((object, opened.generation)),
        Ok(Err(error)) => Err(error),
        Err(message) => Err(StoreError::Import {
            object,
            source: ServiceFault::Panicked { message },
        }),
    }
}

impl Shared {
    /// Loads the service's stored state and opens it (`None` without a store, or if the store
    /// holds none for it).
    pub(crate) fn load_opened(&self, service: &str) -> Result<Option<Opened>, StoreError> {
        let (Some(store), Some(sealer)) = (self.persistence().store(), self.persistence().sealer()) else {
            return Ok(None);
        };
        let Some(stored) = block_on(store.load(service))? else {
            return Ok(None);
        };
        let location = stored.location;
        let (state, generation) = sealer
            .open_generation(service, stored.object.into_bytes())
            .map_err(|source| StoreError::Seal {
                object: location.clone(),
                source,
            })?;
        Ok(Some(Opened {
            location,
            state,
            generation,
        }))
    }

    /// Exports a service's state, seals it and writes it to the store. If a save of a later
    /// export wins the race to the store, this one is not written (the store holds the newer
    /// state) and the call succeeds.
    pub(crate) fn save(&self, entry: &Entry) -> Result<Location, LifecycleError> {
        let service = entry.lifecycle.name().to_string();
        let (Some(store), Some(sealer)) = (self.persistence().store(), self.persistence().sealer()) else {
            return Err(LifecycleError::NoStore { service });
        };
        // `_in_flight` is held until the write is over: a restart of the service waits for it.
        let mut export =
            |instance: &dyn Plumbing, generation: u64| export_sealed(store, sealer, &service, instance, generation);
        let (exported, generation, _in_flight) = entry.lifecycle.export_for_save(&mut export)?;
        self.persistence().pause_before_save(&service, generation);
        let seal_failed = |source| LifecycleError::Save {
            service: service.clone(),
            source: StoreError::Seal {
                object: store.location(&service),
                source,
            },
        };
        let written = match exported {
            Exported::Streamed(object) => block_on(object.commit()),
            Exported::Sealed(blob) => {
                let object = SealedObject::from_bytes(blob).map_err(seal_failed)?;
                block_on(store.save(&service, object))
            }
            Exported::Encoded(encoded) => {
                // Sealed in the encoding's own buffer: a large state is not copied.
                let object = sealer
                    .seal_state_at(&service, encoded, generation)
                    .and_then(SealedObject::from_bytes)
                    .map_err(seal_failed)?;
                block_on(store.save(&service, object))
            }
        };
        match written {
            Ok(location) => Ok(location),
            // Another save exported later and wrote first: the store already holds a newer
            // state than this one, which is what a save promises.
            Err(StoreError::Stale {
                object,
                generation,
                newest,
            }) => {
                tracing::debug!(
                    service,
                    generation,
                    newest,
                    "a newer state was saved meanwhile; this older one is not written"
                );
                Ok(object)
            }
            Err(source) => Err(LifecycleError::Save {
                service: service.clone(),
                source,
            }),
        }
    }

    /// After a successful stop: save the state if there is a store.
    pub(crate) fn save_after_stop(&self, entry: &Entry) -> Result<(), LifecycleError> {
        if self.persistence().store().is_none() {
            return Ok(());
        }
        self.save(entry).map(|location| {
            tracing::debug!(service = %entry.lifecycle.name(), %location, "saved state on stop");
        })
    }

    pub(crate) fn checkpoint_all(&self) -> Result<Vec<Location>, CheckpointError> {
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
