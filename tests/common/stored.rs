//! Reaching a store directly, as a test does to set up or inspect stored states.

use microkernel::seal::{SealedObject, Sealer};
use microkernel::state::EncodedState;
use microkernel::store::{Location, StateStore, StoreError, block_on};

/// Seals `state` for `service` at `generation`, as the kernel does before it saves.
pub fn sealed(sealer: &Sealer, service: &str, state: &EncodedState, generation: u64) -> SealedObject {
    let blob = sealer
        .seal_at(service, state.tag(), generation, state.as_bytes())
        .expect("sealing");
    SealedObject::from_bytes(blob).expect("a sealed envelope parses")
}

/// Saves `state` sealed with `sealer`, waiting for the store.
pub fn save(
    store: &impl StateStore,
    sealer: &Sealer,
    service: &str,
    state: &EncodedState,
    generation: u64,
) -> Result<Location, StoreError> {
    block_on(store.save(service, sealed(sealer, service, state, generation)))
}

/// Loads a service's object, waiting for the store.
pub fn load(store: &impl StateStore, service: &str) -> Result<Option<SealedObject>, StoreError> {
    block_on(store.load(service)).map(|stored| stored.map(|s| s.object))
}
