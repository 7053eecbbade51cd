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

    /// A key from hex text (upper or lower case; surrounding whitespace ignored). Text of the
    /// wrong length is refused with [`KeyError::TextLength`] (read as hex).
    pub fn from_hex(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes =
            Zeroizing::new(base16ct::mixed::decode_vec(text).map_err(|_| KeyError::Encoding { encoding: "hex" })?);
        Self::from_text_bytes(algorithm, text, "hex", &bytes)
    }

    /// A key from standard, padded base64 text (surrounding whitespace ignored). Text of the
    /// wrong length is refused with [`KeyError::TextLength`] (read as base64).
    pub fn from_base64(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes =
            Zeroizing::new(base64ct::Base64::decode_vec(text).map_err(|_| KeyError::Encoding { encoding: "base64" })?);
        Self::from_text_bytes(algorithm, text, "base64", &bytes)
    }

    /// A key from `bytes`, decoded from `text` read as `read_as`: a wrong length names both.
    fn from_text_bytes(
        algorithm: Algorithm,
        text: &str,
        read_as: &'static str,
        bytes: &[u8],
    ) -> Result<Self, KeyError> {
        if bytes.len() != algorithm.key_len() {
            return Err(KeyError::TextLength {
                algorithm,
                expected: algorithm.key_len(),
                chars: text.chars().count(),
                read_as,
                found: bytes.len(),
            });
        }
        Self::from_bytes(algorithm, bytes)
    }

    /// A key from text that is hex if it has exactly twice the key length in hex digits,
    /// base64 otherwise. Text of the wrong length is refused with
    /// [`KeyError::TextLength`], which says what it was read as (hex if it has only hex
    /// digits) and what was expected in either encoding.
    pub fn from_text(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let all_hex = !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit());
        if all_hex && text.len() == 2 * algorithm.key_len() {
            return Self::from_hex(algorithm, text);
        }
        // Padded base64 of any key length ends in `=`: text of hex digits only is hex.
        match Self::from_base64(algorithm, text) {
            Err(KeyError::TextLength { .. } | KeyError::Encoding { .. }) if all_hex => Err(KeyError::TextLength {
                algorithm,
                expected: algorithm.key_len(),
                chars: text.chars().count(),
                read_as: "hex",
                found: text.len() / 2,
            }),
            Err(KeyError::Encoding { .. }) => Err(KeyError::Unreadable {
                algorithm,
                chars: text.chars().count(),
            }),
            other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_text_of_the_wrong_length_is_named_as_hex_with_both_expected_forms() {
        // 32 hex digits (16 bytes) for AES-256: valid base64 too, but read as the hex it is.
        let error = Key::from_text(Algorithm::Aes256Gcm, &"ab".repeat(16)).unwrap_err();
        assert!(
            matches!(
                error,
                KeyError::TextLength {
                    read_as: "hex",
                    expected: 32,
                    found: 16,
                    chars: 32,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "a aes-256-gcm key is 32 bytes, written as 64 hex digits or 44 characters of padded base64; \
             the text given has 32 characters, read as hex: 16 bytes"
        );
    }

    #[test]
    fn base64_text_of_the_wrong_length_is_named_as_base64() {
        let error = Key::from_text(Algorithm::Aes128Gcm, "AAECAwQFBgcICQoLDA0ODxAREhM=").unwrap_err();
        assert!(
            matches!(
                error,
                KeyError::TextLength {
                    read_as: "base64",
                    expected: 16,
                    found: 20,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn the_explicit_decoders_name_their_encoding_on_a_wrong_length() {
        let hex = Key::from_hex(Algorithm::Aes256Gcm, &"ab".repeat(16)).unwrap_err();
        assert!(
            matches!(
                hex,
                KeyError::TextLength {
                    read_as: "hex",
                    expected: 32,
                    found: 16,
                    chars: 32,
                    ..
                }
            ),
            "{hex:?}"
        );
        let base64 = Key::from_base64(Algorithm::Aes256Gcm, &"ab".repeat(16)).unwrap_err();
        assert!(
            matches!(
                base64,
                KeyError::TextLength {
                    read_as: "base64",
                    expected: 32,
                    found: 24,
                    ..
                }
            ),
            "{base64:?}"
        );
        assert!(base64.to_string().contains("read as base64: 24 bytes"), "{base64}");
    }

    #[test]
    fn text_neither_hex_nor_base64_says_what_is_expected() {
        for text in [format!("0x{}", "ab".repeat(32)), "ab ".repeat(32), "ab:".repeat(32)] {
            let error = Key::from_text(Algorithm::Aes256Gcm, &text).unwrap_err();
            assert!(matches!(error, KeyError::Unreadable { .. }), "{text}: {error:?}");
            assert!(error.to_string().contains("64 hex digits or 44 characters"), "{error}");
        }
    }

    #[test]
    fn text_of_the_right_length_in_either_encoding_is_taken() {
        assert!(Key::from_text(Algorithm::Aes128Gcm, &"0f".repeat(16)).is_ok());
        assert!(Key::from_text(Algorithm::Aes128Gcm, "AAECAwQFBgcICQoLDA0ODw==").is_ok());
    }
}
