//! The four AEADs behind one interface, with keys expanded once.

use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};

use super::{Algorithm, Key};

/// An expanded key of one algorithm. The RustCrypto types zeroize their key schedules on drop
/// (their `zeroize` feature).
pub(crate) enum Cipher {
    Aes128(Box<aes_gcm::Aes128Gcm>),
    Aes256(Box<aes_gcm::Aes256Gcm>),
    ChaCha(Box<chacha20poly1305::ChaCha20Poly1305>),
    XChaCha(Box<chacha20poly1305::XChaCha20Poly1305>),
}

/// Authentication failed (or the AEAD refused its input).
pub(crate) struct AeadFailure;

impl Cipher {
    pub(crate) fn new(key: &Key) -> Self {
        let secret = key.secret();
        // Lengths were checked when the key was made.
        let expect = "key length checked by Key";
        match key.algorithm() {
            Algorithm::Aes128Gcm => Cipher::Aes128(Box::new(KeyInit::new_from_slice(secret).expect(expect))),
            Algorithm::Aes256Gcm => Cipher::Aes256(Box::new(KeyInit::new_from_slice(secret).expect(expect))),
            Algorithm::ChaCha20Poly1305 => Cipher::ChaCha(Box::new(KeyInit::new_from_slice(secret).expect(expect))),
            Algorithm::XChaCha20Poly1305 => Cipher::XChaCha(Box::new(KeyInit::new_from_slice(secret).expect(expect))),
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Cipher::Aes128(_) => Algorithm::Aes128Gcm,
            Cipher::Aes256(_) => Algorithm::Aes256Gcm,
            Cipher::ChaCha(_) => Algorithm::ChaCha20Poly1305,
            Cipher::XChaCha(_) => Algorithm::XChaCha20Poly1305,
        }
    }

    /// Encrypts `buffer` in place and returns the tag.
    pub(crate) fn seal(&self, nonce: &[u8], aad: &[u8], buffer: &mut [u8]) -> Result<[u8; 16], AeadFailure> {
        match self {
            Cipher::Aes128(c) => seal_with(&**c, nonce, aad, buffer),
            Cipher::Aes256(c) => seal_with(&**c, nonce, aad, buffer),
            Cipher::ChaCha(c) => seal_with(&**c, nonce, aad, buffer),
            Cipher::XChaCha(c) => seal_with(&**c, nonce, aad, buffer),
        }
    }

    /// Decrypts `buffer` in place if `tag` authenticates it with `aad`.
    pub(crate) fn open(&self, nonce: &[u8], aad: &[u8], buffer: &mut [u8], tag: &[u8]) -> Result<(), AeadFailure> {
        match self {
            Cipher::Aes128(c) => open_with(&**c, nonce, aad, buffer, tag),
            Cipher::Aes256(c) => open_with(&**c, nonce, aad, buffer, tag),
            Cipher::ChaCha(c) => open_with(&**c, nonce, aad, buffer, tag),
            Cipher::XChaCha(c) => open_with(&**c, nonce, aad, buffer, tag),
        }
    }
}

fn seal_with<C: AeadInOut>(cipher: &C, nonce: &[u8], aad: &[u8], buffer: &mut [u8]) -> Result<[u8; 16], AeadFailure> {
    let nonce = <&Nonce<C>>::try_from(nonce).map_err(|_| AeadFailure)?;
    let tag = cipher
        .encrypt_inout_detached(nonce, aad, buffer.into())
        .map_err(|_| AeadFailure)?;
    tag.as_slice().try_into().map_err(|_| AeadFailure)
}

fn open_with<C: AeadInOut>(
    cipher: &C,
    nonce: &[u8],
    aad: &[u8],
    buffer: &mut [u8],
    tag: &[u8],
) -> Result<(), AeadFailure> {
    let nonce = <&Nonce<C>>::try_from(nonce).map_err(|_| AeadFailure)?;
    let tag = <&Tag<C>>::try_from(tag).map_err(|_| AeadFailure)?;
    cipher
        .decrypt_inout_detached(nonce, aad, buffer.into(), tag)
        .map_err(|_| AeadFailure)
}
