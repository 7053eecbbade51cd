//! The AEAD algorithms an envelope may use, by id and by name.

use std::fmt;
use std::str::FromStr;

use super::KeyError;

/// An AEAD algorithm. Its id is the envelope's algorithm byte; its name is what configuration
/// text uses.
///
/// ```
/// use microkernel::seal::Algorithm;
/// let a: Algorithm = "aes-256-gcm".parse()?;
/// assert_eq!(a, Algorithm::Aes256Gcm);
/// let err = "aes-512".parse::<Algorithm>().unwrap_err();
/// assert!(err.to_string().contains("chacha20-poly1305"));
/// # Ok::<(), microkernel::seal::KeyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-128 in Galois/Counter Mode, 96-bit nonce.
    Aes128Gcm,
    /// AES-256 in Galois/Counter Mode, 96-bit nonce.
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439), 96-bit nonce.
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305, 192-bit nonce.
    XChaCha20Poly1305,
}

impl Algorithm {
    /// Every algorithm, in id order.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Aes128Gcm,
        Algorithm::Aes256Gcm,
        Algorithm::ChaCha20Poly1305,
        Algorithm::XChaCha20Poly1305,
    ];

    /// The envelope's algorithm byte.
    pub const fn id(self) -> u8 {
        match self {
            Algorithm::Aes128Gcm => 1,
            Algorithm::Aes256Gcm => 2,
            Algorithm::ChaCha20Poly1305 => 3,
            Algorithm::XChaCha20Poly1305 => 4,
        }
    }

    /// The algorithm with this envelope byte.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }

    /// The configuration name, e.g. `aes-256-gcm`.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Aes128Gcm => "aes-128-gcm",
            Algorithm::Aes256Gcm => "aes-256-gcm",
            Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
            Algorithm::XChaCha20Poly1305 => "xchacha20-poly1305",
        }
    }

    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Algorithm::Aes128Gcm => 16,
            _ => 32,
        }
    }

    /// Nonce length in bytes.
    pub const fn nonce_len(self) -> usize {
        match self {
            Algorithm::XChaCha20Poly1305 => 24,
            _ => 12,
        }
    }

    /// Authentication tag length in bytes (16 for all).
    pub const fn tag_len(self) -> usize {
        16
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|a| a.name() == wanted)
            .ok_or_else(|| KeyError::UnknownAlgorithm {
                name: s.to_owned(),
                valid: Self::ALL.map(Algorithm::name).join(", "),
            })
    }
}

/// An algorithm known by type, for code that fixes it at compile time:
/// `Key::generate_for::<Aes256Gcm>()`.
pub trait AlgorithmKind {
    /// The algorithm.
    const ALGORITHM: Algorithm;
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident => $alg:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;
        impl AlgorithmKind for $name {
            const ALGORITHM: Algorithm = Algorithm::$alg;
        }
    )*};
}

kinds! {
    /// AES-128-GCM, by type.
    Aes128Gcm => Aes128Gcm;
    /// AES-256-GCM, by type.
    Aes256Gcm => Aes256Gcm;
    /// ChaCha20-Poly1305, by type.
    ChaCha20Poly1305 => ChaCha20Poly1305;
    /// XChaCha20-Poly1305, by type.
    XChaCha20Poly1305 => XChaCha20Poly1305;
}
