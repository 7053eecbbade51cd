//! Sealing: state crossing a replacement (or written to disk) is encrypted and authenticated
//! with an AEAD from RustCrypto, in an envelope bound to the service and the state version.
//!
//! - [`Algorithm`]: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305, XChaCha20-Poly1305, chosen at
//!   run time (`"aes-256-gcm".parse()`) or by type ([`AlgorithmKind`]).
//! - [`Key`]: secret bytes, zeroized on drop, never shown by `Debug`; from bytes, hex, base64,
//!   an environment variable, a file, or generated from the OS RNG.
//! - [`Keyring`]: keys by id; the primary seals, all open (rotation).
//! - [`Sealer`]: seals and opens [envelopes](envelope), the format in `docs/FORMAT.md`.
//!
//! ```
//! use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
//! use microkernel::state::{self, StateTag};
//!
//! let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm)?));
//! let encoded = state::encode(&microkernel::Stateless)?;
//! let tag = encoded.tag();
//! let blob = sealer.seal_state("echo", encoded)?;
//! let opened = sealer.open_state("echo", tag, &blob)?;
//! assert!(sealer.open_state("logger", tag, &blob).is_err());
//! # let _ = opened;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod algorithm;
mod cipher;
pub mod envelope;
mod error;
mod key;
mod keyring;
mod nonce;
mod object;
mod sealer;
mod segmented;
pub mod stream;
pub(crate) mod writer;

pub use algorithm::{Aes128Gcm, Aes256Gcm, Algorithm, AlgorithmKind, ChaCha20Poly1305, XChaCha20Poly1305};
pub use error::{KeyError, SealError};
pub use key::{Key, KeyId};
pub use keyring::Keyring;
pub use object::SealedObject;
pub use sealer::{Sealer, random_nonce_limit};
