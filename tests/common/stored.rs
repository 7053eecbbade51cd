//! Reaching a store directly, as a test does to set up or inspect stored states.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use microkernel::seal::{Algorithm, Key, Keyring, SealedObject, Sealer};
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

/// A sealer under a fixed test key, for tests that only need the kernel to seal and open.
pub fn sealer() -> Sealer {
    Sealer::new(Keyring::new(
        1,
        Key::from_hex(Algorithm::Aes256Gcm, &"3c".repeat(32)).unwrap(),
    ))
}

/// A fresh, empty directory only its owner may use (mode 0700), as the store requires.
pub fn private_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("microkernel-hard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}
