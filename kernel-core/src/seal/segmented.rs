//! Sealing and opening segmented envelopes (format version 3) with a sealer's keyring: the
//! header and the envelope's own cipher, whole envelopes sealed in one pass, and envelopes
//! whose segments arrive one by one.

use std::sync::mpsc::Receiver;

use super::envelope::Header;
use super::stream::{OpenSegments, SegmentCipher};
use super::{Algorithm, KeyId, SealError, Sealer};
use crate::state::StateTag;

impl Sealer {
    /// Seals `plaintext` (an encoded state with tag `state`) for `service` at `generation` in
    /// segments of `segment_size` plaintext bytes (a power of two from 4096 to 16 MiB), whatever
    /// its length: a segmented envelope (format version 3, `docs/FORMAT.md`), which a reader
    /// opens and decodes one segment at a time.
    ///
    /// ```
    /// use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
    /// use microkernel::{Migratable, state};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, Migratable)]
    /// #[migratable(version = 1)]
    /// struct Big {
    ///     bytes: Vec<u8>,
    /// }
    ///
    /// let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm)?));
    /// let encoded = state::encode(&Big { bytes: vec![7; 10_000] })?;
    /// let blob = sealer.seal_segmented("big", encoded.tag(), 1, encoded.as_bytes(), 4096)?;
    /// assert_eq!(blob[4], 3); // format version 3
    /// assert_eq!(sealer.open("big", &blob)?, encoded);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seal_segmented(
        &self,
        service: &str,
        state: StateTag,
        generation: u64,
        plaintext: &[u8],
        segment_size: u32,
    ) -> Result<Vec<u8>, SealError> {
        let (header, mut cipher) = self.begin_segmented(service, state, generation, plaintext, segment_size)?;
        super::stream::seal_copy(&mut cipher, segment_size as usize, &header, plaintext)
    }

    /// [`seal_segmented`](Self::seal_segmented) in the plaintext's own buffer.
    pub(crate) fn seal_segmented_owned(
        &self,
        service: &str,
        state: StateTag,
        generation: u64,
        mut plaintext: Vec<u8>,
        segment_size: u32,
    ) -> Result<Vec<u8>, SealError> {
        let (header, mut cipher) = self.begin_segmented(service, state, generation, &plaintext, segment_size)?;
        super::stream::seal_in_place(&mut cipher, segment_size as usize, &header, &mut plaintext)?;
        Ok(plaintext)
    }

    /// Checks what is to be sealed in segments, picks the primary key (counting the seal
    /// against it) and makes the header and the segments' cipher.
    fn begin_segmented(
        &self,
        service: &str,
        state: StateTag,
        generation: u64,
        plaintext: &[u8],
        segment_size: u32,
    ) -> Result<(Vec<u8>, SegmentCipher), SealError> {
        if plaintext.get(..crate::state::HEADER_LEN) != Some(&state.to_bytes()[..]) {
            return Err(SealError::InconsistentPlaintext);
        }
        super::stream::check_segment_size(segment_size)?;
        let (_, key_id, algorithm) = self.begin(service, generation, 0)?.into_body();
        self.segmented_header(service, state, generation, segment_size, key_id, algorithm)
    }

    /// A new segmented envelope's header and the cipher of its segments: a fresh salt and nonce
    /// prefix, the key derived from key `key_id`.
    pub(crate) fn segmented_header(
        &self,
        service: &str,
        state: StateTag,
        generation: u64,
        size: u32,
        key_id: u32,
        algorithm: Algorithm,
    ) -> Result<(Vec<u8>, SegmentCipher), SealError> {
        let key = self.key(key_id)?;
        let (salt, prefix) = super::stream::fresh_salt_and_prefix(algorithm, |bytes| self.fill_random(bytes))?;
        let header = Header {
            format: super::envelope::SEGMENTED_FORMAT_VERSION,
            algorithm,
            key_id: KeyId(key_id),
            state,
            generation,
            service,
            nonce: &prefix,
            segments: Some(super::envelope::Segments { size, salt: &salt }),
        };
        let mut written = Vec::with_capacity(header.len());
        header.write(&mut written)?;
        let cipher = SegmentCipher::new(&key, key_id, written.clone(), &salt, &prefix)?;
        Ok((written, cipher))
    }

    /// Opens a segmented envelope whose parts come down `receiver` (the header given, then the
    /// segments in order; the channel closes after the last), sealed for `service`: checks the
    /// header now, and each segment as it arrives. Returns the state tag the header names.
    pub(crate) fn open_channel(
        &self,
        service: &str,
        header_bytes: Vec<u8>,
        receiver: Receiver<Vec<u8>>,
    ) -> Result<(OpenSegments, StateTag), SealError> {
        let (header, body_at) = Header::parse_fields(&header_bytes)?;
        if body_at != header_bytes.len() {
            return Err(SealError::BadSegments(
                "the header part holds more than the header".into(),
            ));
        }
        let segments = header.segments.ok_or(SealError::UnsupportedVersion(header.format))?;
        self.check_header(service, None, &header)?;
        let key = self.key_for(header.key_id.0, header.algorithm)?;
        let (size, state) = (segments.size, header.state);
        let (salt, prefix) = (segments.salt.to_vec(), header.nonce.to_vec());
        let cipher = SegmentCipher::new(&key, header.key_id.0, header_bytes, &salt, &prefix)?;
        Ok((OpenSegments::from_channel(cipher, size, state, receiver), state))
    }

    /// The key `key_id`, refused if it is for another algorithm than the envelope's.
    pub(crate) fn key_for(&self, key_id: u32, algorithm: Algorithm) -> Result<super::Key, SealError> {
        let key = self.key(key_id)?;
        if key.algorithm() != algorithm {
            return Err(SealError::AlgorithmMismatch {
                key_id,
                key: key.algorithm(),
                envelope: algorithm,
            });
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stream::{SEGMENT_SIZE, seal_copy};
    use super::super::{Algorithm, Key, Keyring, SealError, Sealer};
    use crate::state::{Fingerprint, StateTag};

    /// An envelope whose header names one state and whose plaintext starts with another's tag
    /// (only a key holder could make one) does not open.
    #[test]
    fn a_segmented_plaintext_must_start_with_the_tag_its_header_names() {
        let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm).unwrap()));
        let named = StateTag {
            version: 2,
            fingerprint: Fingerprint(7),
        };
        let other = StateTag {
            version: 1,
            fingerprint: Fingerprint(9),
        };
        let mut plaintext = other.to_bytes().to_vec();
        plaintext.resize(10_000, 1);
        let (_, key_id, algorithm) = sealer.begin("svc", 1, 0).unwrap().into_body();
        let (header, mut cipher) = sealer
            .segmented_header("svc", named, 1, SEGMENT_SIZE, key_id, algorithm)
            .unwrap();
        let blob = seal_copy(&mut cipher, SEGMENT_SIZE as usize, &header, &plaintext).unwrap();
        assert!(matches!(
            sealer.open("svc", &blob),
            Err(SealError::InconsistentPlaintext)
        ));
        assert!(matches!(
            sealer.open_state("svc", named, &blob),
            Err(SealError::InconsistentPlaintext)
        ));
    }
}
