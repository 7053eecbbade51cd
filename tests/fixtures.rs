//! Encoded and sealed bytes of every released version of the example's states decode into the
//! newest version, forever; a released version's fingerprint never changes.
//!
//! Two sets, both tested forever: `tests/fixtures/` holds what was written before structural
//! fingerprints (the state tag carries the legacy fingerprint), `tests/fixtures/structural/`
//! what is written now.
//!
//! To add fixtures for a new version: `MICROKERNEL_WRITE_FIXTURES=1 cargo test --test fixtures`
//! writes the missing files of the current set (existing ones are never overwritten), then
//! commit them; `MICROKERNEL_SCHEMA_LOCK=add` records the new version in `tests/echo-state.lock`.

#[path = "../examples/echo/states.rs"]
mod states;

use std::path::{Path, PathBuf};

use microkernel::Migratable;
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::state::{self, Fingerprint, StateTag};
use states::{EchoStateV1, EchoStateV2};

/// The fixed key of the golden sealed fixtures. A test key: never use it for anything else.
const TEST_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Legacy (declaration text) fingerprints of released versions, as the files of the first set
/// carry them. The structural fingerprints are pinned by the schema lock.
const RELEASED_LEGACY: &[(&str, u32, u64)] = &[
    ("EchoStateV1", 1, 0xf208_5ab1_25cb_87e4),
    ("EchoStateV2", 2, 0x3f17_4626_59b9_4fbd),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn sealer(algorithm: Algorithm) -> Sealer {
    let key = &TEST_KEY_HEX[..2 * algorithm.key_len()];
    Sealer::new(Keyring::new(7, Key::from_hex(algorithm, key).unwrap()))
}

fn v1() -> EchoStateV1 {
    EchoStateV1 { count: 2 }
}

fn v2() -> EchoStateV2 {
    EchoStateV2 {
        count: 10,
        last_from: "microKernel".into(),
    }
}

/// Reads a fixture, writing it first when asked to and it is missing.
fn fixture(name: &str, make: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    let path = fixtures().join(name);
    if !path.exists() && std::env::var_os("MICROKERNEL_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, make()).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The two fixture sets: the folder (under `tests/fixtures/`) and whether it is written today.
const SETS: [(&str, bool); 2] = [("", false), ("structural/", true)];

/// A fixture of a set; only the current set is ever written.
fn fixture_in(set: &str, current: bool, name: &str, make: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    let path = format!("{set}{name}");
    if current {
        fixture(&path, make)
    } else {
        fixture(&path, || {
            panic!("the legacy fixture {path} is missing; it is never rewritten")
        })
    }
}

fn encoded_v1(set: &str, current: bool) -> Vec<u8> {
    fixture_in(set, current, "echo_state_v1.bin", || {
        state::encode(&v1()).unwrap().into_bytes()
    })
}

fn encoded_v2(set: &str, current: bool) -> Vec<u8> {
    fixture_in(set, current, "echo_state_v2.bin", || {
        state::encode(&v2()).unwrap().into_bytes()
    })
}

#[test]
fn released_schemas_never_change() {
    microkernel::state::assert_schema_lock::<EchoStateV2>("tests/echo-state.lock");
}

#[test]
fn legacy_fingerprints_of_released_versions_stay_recognised() {
    let legacy = [
        (
            EchoStateV1::TYPE_NAME,
            EchoStateV1::VERSION,
            EchoStateV1::LEGACY_FINGERPRINT,
        ),
        (
            EchoStateV2::TYPE_NAME,
            EchoStateV2::VERSION,
            EchoStateV2::LEGACY_FINGERPRINT,
        ),
    ];
    for ((name, version, fingerprint), (rname, rversion, rfingerprint)) in legacy.iter().zip(RELEASED_LEGACY) {
        assert_eq!((*name, *version), (*rname, *rversion));
        assert_eq!(*fingerprint, Some(Fingerprint(*rfingerprint)), "{name} v{version}");
    }
}

#[test]
fn encoded_fixtures_decode_into_the_newest_version() {
    for (set, current) in SETS {
        let newest: EchoStateV2 = state::decode(&encoded_v1(set, current)).unwrap();
        assert_eq!(
            newest,
            EchoStateV2 {
                count: 2,
                last_from: String::new()
            },
            "set `{set}`"
        );
        assert_eq!(
            state::decode::<EchoStateV2>(&encoded_v2(set, current)).unwrap(),
            v2(),
            "set `{set}`"
        );
    }
}

#[test]
fn current_fixtures_are_what_the_encoder_writes_today() {
    assert_eq!(
        encoded_v1("structural/", true),
        state::encode(&v1()).unwrap().into_bytes()
    );
    assert_eq!(
        encoded_v2("structural/", true),
        state::encode(&v2()).unwrap().into_bytes()
    );
}

#[test]
fn legacy_fixtures_carry_the_legacy_fingerprints() {
    let (tag, _) = StateTag::split(&encoded_v1("", false)).unwrap();
    assert_eq!(Some(tag.fingerprint), EchoStateV1::LEGACY_FINGERPRINT);
    assert_ne!(tag.fingerprint, EchoStateV1::FINGERPRINT);
    let (tag, _) = StateTag::split(&encoded_v2("", false)).unwrap();
    assert_eq!(Some(tag.fingerprint), EchoStateV2::LEGACY_FINGERPRINT);
}

/// The generation the current set's sealed fixtures carry.
const FIXTURE_GENERATION: u64 = 7;

#[test]
fn golden_sealed_fixtures_open_under_every_algorithm() {
    for (set, current) in SETS {
        for algorithm in Algorithm::ALL {
            let sealer = sealer(algorithm);
            for (version, plain) in [(1, encoded_v1(set, current)), (2, encoded_v2(set, current))] {
                let name = format!("sealed/echo_v{version}.{}.bin", algorithm.name());
                let blob = fixture_in(set, current, &name, || {
                    let encoded = state::EncodedState::from_bytes(plain.clone()).unwrap();
                    sealer.seal_state_at("echo", encoded, FIXTURE_GENERATION).unwrap()
                });
                let (opened, generation) = sealer
                    .open_generation("echo", blob)
                    .unwrap_or_else(|e| panic!("{set}{name}: {e}"));
                assert_eq!(opened.as_bytes(), plain.as_slice(), "{set}{name}");
                // Envelopes of format version 1 carry no generation.
                assert_eq!(generation, if current { FIXTURE_GENERATION } else { 0 }, "{set}{name}");
                let newest: EchoStateV2 = state::decode(opened.as_bytes()).unwrap();
                assert_eq!(newest.count, if version == 1 { 2 } else { 10 });
            }
        }
    }
}

/// docs/FORMAT.md gives the offsets of format version 2; read a current fixture by them.
#[test]
fn format_document_offsets_match_a_current_fixture() {
    let blob = fixture("structural/sealed/echo_v2.aes-256-gcm.bin", || {
        unreachable!("written above")
    });
    assert_eq!(&blob[0..4], b"MKSE", "magic at 0..4");
    assert_eq!(blob[4], 2, "format version at 4");
    assert_eq!(blob[5], 2, "algorithm id at 5 (2 = aes-256-gcm)");
    assert_eq!(
        u32::from_le_bytes(blob[6..10].try_into().unwrap()),
        7,
        "key id at 6..10"
    );
    assert_eq!(
        u32::from_le_bytes(blob[10..14].try_into().unwrap()),
        2,
        "state version at 10..14"
    );
    assert_eq!(
        Fingerprint(u64::from_le_bytes(blob[14..22].try_into().unwrap())),
        EchoStateV2::FINGERPRINT,
        "fingerprint at 14..22"
    );
    assert_eq!(
        u64::from_le_bytes(blob[22..30].try_into().unwrap()),
        FIXTURE_GENERATION,
        "generation at 22..30"
    );
    let name_len = usize::from(blob[30]);
    assert_eq!(&blob[31..31 + name_len], b"echo", "service name at 31..31+L");
    let nonce_end = 31 + name_len + 12;
    assert_eq!(
        blob.len() - nonce_end - 16,
        encoded_v2("structural/", true).len(),
        "ciphertext length"
    );
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FORMAT.md")).unwrap();
    for row in [
        "| 0 | 4 | magic",
        "| 4 | 1 | format version",
        "| 5 | 1 | algorithm id",
        "| 6 | 4 | key id",
        "| 10 | 4 | state version",
        "| 14 | 8 | state fingerprint",
        "| 22 | 8 | generation",
        "| 30 | 1 | name length",
        "| 31 | L | service name",
    ] {
        assert!(doc.contains(row), "docs/FORMAT.md lacks the row `{row}`");
    }
}

/// A state of about 10 KB, sealed in segments of 4096 bytes: three segments.
fn big_plain() -> Vec<u8> {
    let state = EchoStateV2 {
        count: 3,
        last_from: (0..10_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect(),
    };
    state::encode(&state).unwrap().into_bytes()
}

/// Segmented envelopes (format version 3) of every algorithm open, and one opens by
/// docs/FORMAT.md alone: the offsets, the key derivation and the segment nonces, with the raw
/// RustCrypto crates.
#[test]
fn segmented_fixtures_open_by_the_documented_construction() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let plain = big_plain();
    let tag = StateTag::split(&plain).unwrap().0;
    for algorithm in Algorithm::ALL {
        let sealer = sealer(algorithm);
        let name = format!("structural/sealed/big_v3.{}.bin", algorithm.name());
        let blob = fixture(&name, || {
            sealer
                .seal_segmented("echo", tag, FIXTURE_GENERATION, &plain, 4096)
                .unwrap()
        });
        let (opened, generation) = sealer
            .open_generation("echo", blob)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (opened.as_bytes(), generation),
            (plain.as_slice(), FIXTURE_GENERATION),
            "{name}"
        );
    }
    let blob = fixture("structural/sealed/big_v3.aes-256-gcm.bin", || {
        unreachable!("written above")
    });
    assert_eq!(&blob[0..4], b"MKSE");
    assert_eq!(blob[4], 3, "format version at 4");
    assert_eq!(u64::from_le_bytes(blob[22..30].try_into().unwrap()), FIXTURE_GENERATION);
    let name_len = usize::from(blob[30]);
    assert_eq!(&blob[31..31 + name_len], b"echo");
    let at = 31 + name_len;
    let size = u32::from_le_bytes(blob[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(size, 4096, "segment size at 31+L");
    let salt = &blob[at + 4..at + 36];
    let prefix = &blob[at + 36..at + 43];
    let header = &blob[..at + 43];
    let mut key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &hex(TEST_KEY_HEX))
        .expand(b"microkernel segmented envelope v3", &mut key)
        .unwrap();
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
    let segments: Vec<&[u8]> = blob[header.len()..].chunks(size + 16).collect();
    assert_eq!(segments.len(), 3);
    let mut joined = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let mut nonce = prefix.to_vec();
        nonce.extend_from_slice(&(i as u32).to_be_bytes());
        nonce.push(u8::from(i == segments.len() - 1));
        let payload = Payload {
            msg: segment,
            aad: header,
        };
        let opened = cipher.decrypt(nonce.as_slice().try_into().unwrap(), payload).unwrap();
        joined.extend_from_slice(&opened);
    }
    assert_eq!(joined, plain);
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FORMAT.md")).unwrap();
    for row in [
        "| 31+L | 4 | segment size S",
        "| 35+L | 32 | salt",
        "| 67+L | P | nonce prefix",
        "`microkernel segmented envelope v3`",
    ] {
        assert!(doc.contains(row), "docs/FORMAT.md lacks `{row}`");
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// docs/FORMAT.md gives the offsets of format version 1 too; read a legacy fixture by them.
#[test]
fn format_document_offsets_match_a_legacy_fixture() {
    let blob = fixture("sealed/echo_v2.aes-256-gcm.bin", || unreachable!("written above"));
    assert_eq!(&blob[0..4], b"MKSE", "magic at 0..4");
    assert_eq!(blob[4], 1, "format version at 4");
    assert_eq!(blob[5], 2, "algorithm id at 5 (2 = aes-256-gcm)");
    assert_eq!(
        u32::from_le_bytes(blob[6..10].try_into().unwrap()),
        7,
        "key id at 6..10"
    );
    assert_eq!(
        u32::from_le_bytes(blob[10..14].try_into().unwrap()),
        2,
        "state version at 10..14"
    );
    let fingerprint = u64::from_le_bytes(blob[14..22].try_into().unwrap());
    assert_eq!(
        Fingerprint(fingerprint),
        EchoStateV2::LEGACY_FINGERPRINT.unwrap(),
        "fingerprint at 14..22 (a fixture written before structural fingerprints)"
    );
    let name_len = usize::from(blob[22]);
    assert_eq!(&blob[23..23 + name_len], b"echo", "service name at 23..23+L");
    let nonce_end = 23 + name_len + 12;
    let body_len = blob.len() - nonce_end - 16;
    assert_eq!(
        body_len,
        encoded_v2("", false).len(),
        "ciphertext is as long as the encoded state"
    );
    // The encoded state inside starts with its own 12-byte tag: version, then fingerprint.
    let (tag, _) = StateTag::split(&encoded_v2("", false)).unwrap();
    assert_eq!(tag.version, 2);

    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FORMAT.md")).unwrap();
    for row in ["| 22 | 1 | name length (v1)", "| 23 | L | service name (v1)"] {
        assert!(doc.contains(row), "docs/FORMAT.md lacks the row `{row}`");
    }
}
