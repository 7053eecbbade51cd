//! Sealing: every algorithm, strict parsing, tampering, keys and rotation.

#[path = "../examples/echo/states.rs"]
mod states;

use microkernel::seal::envelope::Header;
use microkernel::seal::{Algorithm, Key, KeyError, Keyring, SealError, Sealer};
use microkernel::state::{self, EncodedState, StateTag};
use proptest::prelude::*;
use states::{EchoStateV1, EchoStateV2};

fn sealer(algorithm: Algorithm) -> Sealer {
    Sealer::new(Keyring::new(1, Key::generate(algorithm).unwrap()))
}

fn echo_v1() -> EncodedState {
    state::encode(&EchoStateV1 { count: 2 }).unwrap()
}

fn echo_blob(sealer: &Sealer) -> Vec<u8> {
    sealer.seal_state("echo", echo_v1()).unwrap()
}

#[test]
fn each_algorithm_round_trips_the_echo_state() {
    for algorithm in Algorithm::ALL {
        let sealer = sealer(algorithm);
        let blob = echo_blob(&sealer);
        let (header, _) = Header::parse(&blob).unwrap();
        assert_eq!(header.algorithm, algorithm);
        assert_eq!(header.nonce.len(), algorithm.nonce_len());
        let opened = sealer.open_state("echo", StateTag::of::<EchoStateV1>(), &blob).unwrap();
        let v2: EchoStateV2 = state::decode(&opened).unwrap();
        assert_eq!(v2.count, 2);
    }
}

#[test]
fn nonces_differ_between_seals() {
    let sealer = sealer(Algorithm::Aes256Gcm);
    assert_ne!(echo_blob(&sealer), echo_blob(&sealer));
}

#[test]
fn every_single_bit_flip_is_rejected() {
    for algorithm in Algorithm::ALL {
        let sealer = sealer(algorithm);
        let blob = echo_blob(&sealer);
        for byte in 0..blob.len() {
            for bit in 0..8 {
                let mut bad = blob.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    sealer.open("echo", &bad).is_err(),
                    "{algorithm}: flip of bit {bit} in byte {byte} accepted"
                );
            }
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let sealer = sealer(Algorithm::Aes256Gcm);
    let blob = echo_blob(&sealer);
    for len in 0..blob.len() {
        assert!(
            sealer.open("echo", &blob[..len]).is_err(),
            "truncation to {len} bytes accepted"
        );
    }
}

#[test]
fn header_errors_come_before_decryption() {
    let sealer = sealer(Algorithm::Aes256Gcm);
    let blob = echo_blob(&sealer);
    let with = |at: usize, value: u8| {
        let mut b = blob.clone();
        b[at] = value;
        sealer.open("echo", &b).unwrap_err()
    };
    assert!(matches!(with(0, b'X'), SealError::BadMagic));
    assert!(matches!(with(4, 4), SealError::UnsupportedVersion(4)));
    assert!(matches!(with(4, 0), SealError::UnsupportedVersion(0)));
    assert!(matches!(with(5, 9), SealError::UnknownAlgorithm(9)));
    assert!(matches!(with(30, 0), SealError::BadServiceName));
    assert!(matches!(
        sealer.open("echo", &blob[..5]),
        Err(SealError::Truncated { len: 5, .. })
    ));
    // Claiming XChaCha makes the nonce 24 bytes and the key the wrong kind.
    assert!(matches!(with(5, 4), SealError::AlgorithmMismatch { .. }));
    // Relabelling a version 2 envelope as version 1 moves every field: authentication fails.
    assert!(
        sealer
            .open("echo", &{
                let mut b = blob.clone();
                b[4] = 1;
                b
            })
            .is_err()
    );
}

#[test]
fn the_generation_is_authenticated_and_survives_a_reseal() {
    let sealer = sealer(Algorithm::Aes256Gcm);
    let encoded = state::encode(&EchoStateV1 { count: 3 }).unwrap();
    let blob = sealer.seal_state_at("echo", encoded, 41).unwrap();
    assert_eq!(Header::parse(&blob).unwrap().0.generation, 41);
    assert_eq!(sealer.open_generation("echo", blob.clone()).unwrap().1, 41);
    // A newer generation written into the clear header does not open.
    let mut bumped = blob.clone();
    bumped[22..30].copy_from_slice(&42u64.to_le_bytes());
    assert!(matches!(
        sealer.open("echo", &bumped),
        Err(SealError::Authentication { .. })
    ));
    let resealed = sealer.reseal("echo", &blob).unwrap();
    assert_eq!(sealer.open_generation("echo", resealed).unwrap().1, 41);
}

#[test]
fn wrong_key_unknown_key_service_and_version_each_have_their_own_error() {
    let a = sealer(Algorithm::Aes256Gcm);
    let b = sealer(Algorithm::Aes256Gcm);
    let blob = echo_blob(&a);
    assert!(matches!(
        b.open("echo", &blob),
        Err(SealError::Authentication { key_id: 1 })
    ));

    let other_ids = Sealer::new(Keyring::new(2, Key::generate(Algorithm::Aes256Gcm).unwrap()));
    assert!(matches!(other_ids.open("echo", &blob), Err(SealError::UnknownKey(1))));

    let err = a.open("logger", &blob).unwrap_err();
    assert_eq!(err.to_string(), "sealed state belongs to service `echo`, not `logger`");

    let err = a.open_state("echo", StateTag::of::<EchoStateV2>(), &blob).unwrap_err();
    assert!(matches!(err, SealError::WrongState { .. }), "{err}");

    // Relabelling the version in the header breaks authentication.
    let mut relabelled = blob.clone();
    relabelled[10] = 2;
    assert!(matches!(
        a.open("echo", &relabelled),
        Err(SealError::Authentication { .. })
    ));
}

#[test]
fn blobs_swapped_between_two_services_are_rejected() {
    let sealer = sealer(Algorithm::ChaCha20Poly1305);
    let echo = sealer.seal_state("echo", echo_v1()).unwrap();
    let other = sealer.seal_state("other", echo_v1()).unwrap();
    assert!(matches!(
        sealer.open("other", &echo),
        Err(SealError::WrongService { .. })
    ));
    assert!(matches!(
        sealer.open("echo", &other),
        Err(SealError::WrongService { .. })
    ));
    // Rewriting the name in the header (same length) fails authentication.
    let mut renamed = other.clone();
    renamed[23..28].copy_from_slice(b"echo\0");
    renamed[22] = 5;
    assert!(sealer.open("echo\0", &renamed).is_err());
}

#[test]
fn rotation_keeps_old_blobs_open_until_the_old_key_retires() {
    let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm).unwrap()));
    let old = echo_blob(&sealer);
    sealer
        .update_keyring(|ring| ring.add(2, Key::generate(Algorithm::Aes256Gcm).unwrap()))
        .unwrap();
    sealer.update_keyring(|ring| ring.promote(2)).unwrap();
    let new = echo_blob(&sealer);
    assert_eq!(Header::parse(&new).unwrap().0.key_id.0, 2);
    assert!(sealer.open("echo", &old).is_ok(), "old blobs still open");
    let moved = sealer.reseal("echo", &old).unwrap();
    assert_eq!(Header::parse(&moved).unwrap().0.key_id.0, 2);
    assert!(matches!(
        sealer.update_keyring(|r| r.retire(2)),
        Err(KeyError::RetirePrimary(2))
    ));
    sealer.update_keyring(|ring| ring.retire(1)).unwrap();
    assert!(matches!(sealer.open("echo", &old), Err(SealError::UnknownKey(1))));
    assert!(sealer.open("echo", &moved).is_ok());
}

#[test]
fn a_key_past_its_seal_limit_refuses_until_rotated() {
    let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes128Gcm).unwrap())).with_seal_limit(3);
    for _ in 0..3 {
        echo_blob(&sealer);
    }
    assert!(matches!(
        sealer.seal_state("echo", echo_v1()),
        Err(SealError::KeyExhausted { key_id: 1, limit: 3 })
    ));
    sealer.update_keyring(|r| {
        r.add(2, Key::generate(Algorithm::Aes128Gcm).unwrap()).unwrap();
        r.promote(2).unwrap();
    });
    assert!(sealer.seal_state("echo", echo_v1()).is_ok());
    assert_eq!(microkernel::seal::random_nonce_limit(Algorithm::Aes256Gcm), 1 << 32);
}

#[test]
fn keys_are_checked_when_made_and_never_printed() {
    let err = Key::from_bytes(Algorithm::Aes256Gcm, &[7; 16]).unwrap_err();
    assert_eq!(err.to_string(), "a aes-256-gcm key is 32 bytes, got 16");
    let hex = "0f".repeat(16);
    let key = Key::from_hex(Algorithm::Aes128Gcm, &hex).unwrap();
    let shown = format!("{key:?} {:?}", Sealer::new(Keyring::new(1, key.clone())));
    assert!(!shown.contains("0f") && !shown.contains("15, 15"), "{shown}");
    assert!(shown.contains("redacted"));
    assert!(Key::from_hex(Algorithm::Aes128Gcm, "zz").is_err());
    let b64 = "AAECAwQFBgcICQoLDA0ODw==";
    assert!(Key::from_base64(Algorithm::Aes128Gcm, b64).is_ok());
    assert!(matches!(
        Key::from_base64(Algorithm::Aes128Gcm, "!!"),
        Err(KeyError::Encoding { encoding: "base64" })
    ));
    let err = "des".parse::<Algorithm>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown algorithm `des`; valid names: aes-128-gcm, aes-256-gcm, chacha20-poly1305, xchacha20-poly1305"
    );
}

/// (Loading from a set variable is exercised by `.ci/run`, which runs the demo with
/// `MICROKERNEL_STATE_KEY` set: setting variables inside a multi-threaded test is unsound.)
#[test]
fn keys_load_from_text_and_file() {
    let hex = "a1".repeat(32);
    let from_env = Key::from_text(Algorithm::ChaCha20Poly1305, &hex).unwrap();
    let path = std::env::temp_dir().join(format!("microkernel-key-{}", std::process::id()));
    std::fs::write(&path, format!("{hex}\n")).unwrap();
    let from_file = Key::from_file(Algorithm::ChaCha20Poly1305, &path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let a = Sealer::new(Keyring::new(1, from_env));
    let b = Sealer::new(Keyring::new(1, from_file));
    assert!(b.open("echo", &echo_blob(&a)).is_ok(), "same key from both sources");
    assert!(matches!(
        Key::from_env(Algorithm::Aes128Gcm, "MICROKERNEL_NO_SUCH_VAR"),
        Err(KeyError::MissingEnv { .. })
    ));
    assert!(matches!(
        Key::from_file(Algorithm::Aes128Gcm, "/no/such/key"),
        Err(KeyError::File { .. })
    ));
}

fn round_trip(algorithm: Algorithm, len: usize) {
    let sealer = sealer(algorithm);
    let mut plain = vec![0u8; len];
    plain.iter_mut().enumerate().for_each(|(i, b)| *b = (i * 31) as u8);
    let mut encoded = StateTag::of::<EchoStateV1>().to_bytes().to_vec();
    encoded.extend_from_slice(&plain);
    let blob = sealer.seal("svc", StateTag::of::<EchoStateV1>(), &encoded).unwrap();
    let opened = sealer.open("svc", &blob).unwrap();
    assert_eq!(opened.as_bytes(), encoded.as_slice());
}

#[test]
fn sizes_from_zero_to_one_mebibyte_round_trip() {
    for algorithm in Algorithm::ALL {
        for len in [0, 1, 15, 16, 17, 64, 1024, 65_536, 1 << 20] {
            round_trip(algorithm, len);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_sizes_round_trip(alg in 0usize..4, len in 0usize..(256 << 10)) {
        round_trip(Algorithm::ALL[alg], len);
    }

    #[test]
    fn random_blobs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = sealer(Algorithm::Aes256Gcm).open("echo", &bytes);
    }
}

#[test]
fn clones_of_a_sealer_share_one_seal_count_per_key() {
    let sealer = sealer(Algorithm::Aes256Gcm).with_seal_limit(3);
    let clone = sealer.clone();
    let encoded = || state::encode(&EchoStateV1 { count: 1 }).unwrap();
    sealer.seal_state("echo", encoded()).unwrap();
    clone.seal_state("echo", encoded()).unwrap();
    sealer.seal_state("echo", encoded()).unwrap();
    // Three seals in all: the limit holds across both clones.
    assert!(matches!(
        clone.seal_state("echo", encoded()),
        Err(SealError::KeyExhausted { limit: 3, .. })
    ));
}

#[test]
fn nonces_can_come_straight_from_the_os() {
    let sealer = sealer(Algorithm::Aes256Gcm).with_nonces_from_os();
    let encoded = || state::encode(&EchoStateV1 { count: 4 }).unwrap();
    let a = sealer.seal_state("echo", encoded()).unwrap();
    let b = sealer.clone().seal_state("echo", encoded()).unwrap();
    let nonce = |blob: &[u8]| Header::parse(blob).unwrap().0.nonce.to_vec();
    assert_ne!(nonce(&a), nonce(&b));
    assert_eq!(sealer.open("echo", &a).unwrap().as_bytes(), encoded().as_bytes());
}

#[test]
fn an_empty_service_name_is_refused_as_empty_and_costs_no_seal() {
    let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm).unwrap())).with_seal_limit(1);
    let tag = echo_v1().tag();
    let err = sealer.seal_at("", tag, 0, echo_v1().as_bytes()).unwrap_err();
    assert!(matches!(err, SealError::EmptyServiceName), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("empty"), "{message}");
    assert!(!message.contains("longer than"), "{message}");
    // The segmented path says the same.
    let err = sealer
        .seal_segmented("", tag, 0, echo_v1().as_bytes(), 4096)
        .unwrap_err();
    assert!(matches!(err, SealError::EmptyServiceName), "{err:?}");
    // A name that is too long still says so.
    let long = "x".repeat(256);
    let err = sealer.seal_at(&long, tag, 0, echo_v1().as_bytes()).unwrap_err();
    assert!(matches!(err, SealError::ServiceNameTooLong(_)), "{err:?}");
    // None of the refused names was counted against the key's limit of one seal.
    assert!(sealer.seal_at("echo", tag, 0, echo_v1().as_bytes()).is_ok());
}
