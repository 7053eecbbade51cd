//! A sealed state as a store keeps it: the envelope's bytes and the generation its clear header
//! names.

use super::SealError;
use super::envelope::Header;

/// A sealed envelope (docs/FORMAT.md) on its way to or from a
/// [`StateStore`](crate::store::StateStore): opaque bytes, and the generation read from the
/// envelope's clear header so that a store can order writes without holding a key.
///
/// The header is checked strictly when the object is made, but it is authenticated only when
/// the envelope is opened with the key; a store must treat the generation as a claim until the
/// kernel has opened the object.
///
/// ```
/// use microkernel::seal::{Algorithm, Key, Keyring, SealedObject, Sealer};
/// use microkernel::state;
///
/// let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm)?));
/// let blob = sealer.seal_state_at("echo", state::encode(&microkernel::Stateless)?, 7)?;
/// let object = SealedObject::from_bytes(blob)?;
/// assert_eq!(object.generation(), 7);
/// assert!(SealedObject::from_bytes(b"not an envelope".to_vec()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SealedObject {
    bytes: Vec<u8>,
    generation: u64,
}

impl SealedObject {
    /// Takes the bytes of an envelope, refusing them if its header does not parse.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, SealError> {
        let generation = Header::parse(&bytes)?.0.generation;
        Ok(Self { bytes, generation })
    }

    /// The generation the clear header names (0 for a format version 1 envelope).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The envelope's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The envelope's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the envelope is empty (never: a header has at least 31 bytes).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The envelope's bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl std::fmt::Debug for SealedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedObject")
            .field("bytes", &self.bytes.len())
            .field("generation", &self.generation)
            .finish()
    }
}
