//! Secret keys: zeroized on drop, never printed.

use std::fmt;
use std::path::Path;

use base64ct::Encoding as _;
use rand::TryRng as _;
use zeroize::Zeroizing;

use super::{Algorithm, AlgorithmKind, KeyError};

/// A key's id in a [`Keyring`](super::Keyring) and in envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl From<u32> for KeyId {
    fn from(id: u32) -> Self {
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Secret key material for one algorithm. The bytes are zeroized when the key is dropped and
/// never appear in `Debug` output or errors. The length is checked when the key is made.
///
/// ```
/// use microkernel::seal::{Algorithm, Key};
/// let key = Key::generate(Algorithm::ChaCha20Poly1305)?;
/// assert_eq!(format!("{key:?}"), "Key { algorithm: ChaCha20Poly1305, bytes: \"<redacted>\" }");
/// assert!(Key::from_bytes(Algorithm::Aes256Gcm, &[0; 16]).is_err());
/// # Ok::<(), microkernel::seal::KeyError>(())
/// ```
#[derive(Clone)]
pub struct Key {
    algorithm: Algorithm,
    bytes: Zeroizing<Vec<u8>>,
}

impl Key {
    /// A key from raw bytes; refused unless the length fits the algorithm.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != algorithm.key_len() {
            return Err(KeyError::Length {
                algorithm,
                expected: algorithm.key_len(),
                found: bytes.len(),
            });
        }
        Ok(Self {
            algorithm,
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// A key from hex text (upper or lower case; surrounding whitespace ignored).
    pub fn from_hex(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(
            base16ct::mixed::decode_vec(text.trim()).map_err(|_| KeyError::Encoding { encoding: "hex" })?,
        );
        Self::from_bytes(algorithm, &bytes)
    }

    /// A key from standard, padded base64 text (surrounding whitespace ignored).
    pub fn from_base64(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(
            base64ct::Base64::decode_vec(text.trim()).map_err(|_| KeyError::Encoding { encoding: "base64" })?,
        );
        Self::from_bytes(algorithm, &bytes)
    }

    /// A key from text that is hex if it has exactly twice the key length in hex digits,
    /// base64 otherwise.
    pub fn from_text(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let is_hex = text.len() == 2 * algorithm.key_len() && text.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            Self::from_hex(algorithm, text)
        } else {
            Self::from_base64(algorithm, text)
        }
    }

    /// A key from an environment variable holding hex or base64 text.
    pub fn from_env(algorithm: Algorithm, name: &str) -> Result<Self, KeyError> {
        let text = Zeroizing::new(std::env::var(name).map_err(|_| KeyError::MissingEnv { name: name.to_owned() })?);
        Self::from_text(algorithm, &text)
    }

    /// A key from a file holding hex or base64 text.
    pub fn from_file(algorithm: Algorithm, path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| KeyError::File {
            path: path.to_owned(),
            source,
        })?);
        Self::from_text(algorithm, &text)
    }

    /// A fresh key from the operating system's random number generator.
    pub fn generate(algorithm: Algorithm) -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new(vec![0; algorithm.key_len()]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self { algorithm, bytes })
    }

    /// [`generate`](Self::generate) for an algorithm fixed by type.
    pub fn generate_for<A: AlgorithmKind>() -> Result<Self, KeyError> {
        Self::generate(A::ALGORITHM)
    }

    /// The algorithm the key is for.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("algorithm", &self.algorithm)
            .field("bytes", &"<redacted>")
            .finish()
    }
}
