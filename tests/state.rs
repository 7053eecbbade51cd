//! The versioned encoding and the chain walk.

mod common;

use common::counter::{CounterV1, CounterV2, CounterV3, Unrelated};
use microkernel::Migratable;
use microkernel::state::{self, StateError, StateTag};
use proptest::prelude::*;

#[test]
fn each_version_decodes_into_v3() {
    let from_v1: CounterV3 = state::decode(state::encode(&CounterV1 { count: 3 }).unwrap().as_bytes()).unwrap();
    assert_eq!(
        from_v1,
        CounterV3 {
            count: 3,
            label: "upgraded".into(),
            history: vec![3]
        }
    );
    let v2 = CounterV2 {
        count: 4,
        label: "x".into(),
    };
    let from_v2: CounterV3 = state::decode(state::encode(&v2).unwrap().as_bytes()).unwrap();
    assert_eq!(
        from_v2,
        CounterV3 {
            count: 4,
            label: "x".into(),
            history: vec![4]
        }
    );
    let v3 = CounterV3 {
        count: 5,
        label: "y".into(),
        history: vec![1, 2],
    };
    let same: CounterV3 = state::decode(state::encode(&v3).unwrap().as_bytes()).unwrap();
    assert_eq!(same, v3);
}

#[test]
fn downgrade_v3_to_v2_and_v2_to_v1() {
    let v3 = CounterV3 {
        count: 9,
        label: "z".into(),
        history: vec![],
    };
    let v2 = v3.downgrade().unwrap();
    assert_eq!(
        v2,
        CounterV2 {
            count: 9,
            label: "z".into()
        }
    );
    assert_eq!(v2.downgrade().unwrap(), CounterV1 { count: 9 });
    assert!(
        CounterV1 { count: 1 }.downgrade().is_err(),
        "a first version has nothing below it"
    );
}

#[test]
fn a_newer_version_is_refused() {
    let bytes = state::encode(&CounterV3::default()).unwrap();
    let err = state::decode::<CounterV2>(bytes.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::TooNew {
                found: 3,
                newest: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "state version 3 of CounterV2 is newer than this program's newest, v2"
    );
}

#[test]
fn an_unknown_fingerprint_is_refused() {
    let bytes = state::encode(&Unrelated { name: "n".into() }).unwrap();
    let err = state::decode::<CounterV3>(bytes.as_bytes()).unwrap_err();
    assert!(
        matches!(err, StateError::FingerprintMismatch { version: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_version_missing_from_the_chain_is_refused() {
    let mut bytes = state::encode(&CounterV1 { count: 1 }).unwrap().into_bytes();
    bytes[..4].copy_from_slice(&0u32.to_le_bytes());
    let err = state::decode::<CounterV3>(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::UnknownVersion {
                found: 0,
                newest: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn trailing_bytes_and_truncation_are_refused() {
    let mut bytes = state::encode(&CounterV2 {
        count: 1,
        label: "l".into(),
    })
    .unwrap()
    .into_bytes();
    bytes.push(0);
    assert!(matches!(
        state::decode::<CounterV2>(&bytes),
        Err(StateError::TrailingBytes { extra: 1, .. })
    ));
    bytes.pop();
    for len in 0..bytes.len() {
        assert!(
            state::decode::<CounterV2>(&bytes[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
}

#[test]
fn a_failing_try_from_is_a_migration_error() {
    let bytes = state::encode(&CounterV2 {
        count: 1,
        label: "poison".into(),
    })
    .unwrap();
    let err = state::decode::<CounterV3>(bytes.as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "upgrading CounterV2 (v2) to CounterV3 (v3) failed");
}

#[test]
fn the_tag_is_version_then_fingerprint() {
    let bytes = state::encode(&CounterV2::default()).unwrap();
    let (tag, body) = StateTag::split(bytes.as_bytes()).unwrap();
    assert_eq!(tag, StateTag::of::<CounterV2>());
    assert_eq!(&bytes.as_bytes()[..4], &2u32.to_le_bytes());
    assert_eq!(body.len(), bytes.as_bytes().len() - state::HEADER_LEN);
}

#[test]
fn fingerprints_hash_the_structure_and_the_version() {
    use microkernel::state::Schema;
    assert_eq!(state::schema_text(CounterV1::SCHEMA), "CounterV1 { count: u32 }");
    assert_eq!(CounterV1::FINGERPRINT, state::fingerprint(CounterV1::SCHEMA, 1));
    assert_ne!(CounterV1::FINGERPRINT, Unrelated::FINGERPRINT);
    assert_eq!(
        state::schema_text(CounterV3::SCHEMA),
        "CounterV3 { count: u64, label: String, history: [u64] }"
    );
    // The fingerprint of the declaration text, as written before, is still known.
    assert_eq!(
        CounterV1::LEGACY_FINGERPRINT,
        Some(state::legacy_fingerprint("CounterV1 { count: u32 }", 1))
    );
}

proptest! {
    #[test]
    fn v2_round_trips(count in any::<u64>(), label in ".{0,40}") {
        let v2 = CounterV2 { count, label: label.replace("unencodable", "") };
        let back: CounterV2 = state::decode(state::encode(&v2).unwrap().as_bytes()).unwrap();
        prop_assert_eq!(back, v2);
    }

    #[test]
    fn v3_round_trips(count in any::<u64>(), label in ".{0,20}", history in proptest::collection::vec(any::<u64>(), 0..50)) {
        let v3 = CounterV3 { count, label, history };
        let back: CounterV3 = state::decode(state::encode(&v3).unwrap().as_bytes()).unwrap();
        prop_assert_eq!(back, v3);
    }

    #[test]
    fn v1_upgrades_like_the_conversions_say(count in any::<u32>()) {
        let v3: CounterV3 = state::decode(state::encode(&CounterV1 { count }).unwrap().as_bytes()).unwrap();
        let by_hand = CounterV3::try_from(CounterV2::from(CounterV1 { count })).unwrap();
        prop_assert_eq!(v3, by_hand);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = state::decode::<CounterV3>(&bytes);
    }
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, microkernel::Migratable)]
#[migratable(version = 1)]
struct Table {
    #[serde(with = "microkernel::state::bulk_btree_map")]
    entries: std::collections::BTreeMap<String, u64>,
}

/// 32 KiB per value.
type Block = [[[u64; 32]; 32]; 4];

#[derive(serde::Serialize, serde::Deserialize, microkernel::Migratable)]
#[migratable(version = 1)]
struct Blocks {
    #[serde(with = "microkernel::state::bulk_btree_map")]
    entries: std::collections::BTreeMap<u64, Block>,
}

/// A short body claiming 2^60 entries once made `bulk_btree_map` reserve 2^20 of them — 32 GiB
/// for this type, more than this machine has: the process aborted. What it reserves is now
/// bounded by the input's bytes.
#[test]
fn a_lying_map_length_costs_no_memory() {
    let mut bytes = StateTag::of::<Blocks>().to_bytes().to_vec();
    bytes.extend(postcard::to_allocvec(&(1u64 << 60)).unwrap());
    bytes.extend([1, 5]);
    let err = state::decode::<Blocks>(&bytes).map(|_| ()).unwrap_err();
    assert!(matches!(err, StateError::Decode { .. }), "{err}");
    let mut bytes = StateTag::of::<Table>().to_bytes().to_vec();
    bytes.extend(postcard::to_allocvec(&(1u64 << 60)).unwrap());
    bytes.extend([1, b'a', 5]);
    let err = state::decode::<Table>(&bytes).unwrap_err();
    assert!(matches!(err, StateError::Decode { .. }), "{err}");
}

#[test]
fn a_large_honest_map_decodes_whole() {
    let table = Table {
        entries: (0..20_000u64).map(|i| (format!("key-{i}"), i)).collect(),
    };
    let bytes = state::encode(&table).unwrap();
    assert_eq!(state::decode::<Table>(bytes.as_bytes()).unwrap(), table);
}

/// A map decoded by `state::hash_map`, and the same map as serde decodes it.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, microkernel::Migratable)]
#[migratable(version = 1)]
struct SizedTable {
    #[serde(with = "microkernel::state::hash_map")]
    entries: std::collections::HashMap<String, u64>,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, microkernel::Migratable)]
#[migratable(version = 1)]
struct PlainTable {
    entries: std::collections::HashMap<String, u64>,
}

#[derive(serde::Serialize, serde::Deserialize, microkernel::Migratable)]
#[migratable(version = 1)]
struct SizedBlocks {
    #[serde(with = "microkernel::state::hash_map")]
    entries: std::collections::HashMap<u64, Block>,
}

/// The helper changes how the table is built, not the bytes: the schema is the plain map's, and
/// a state encoded either way decodes either way.
#[test]
fn hash_map_encodes_as_the_plain_map() {
    assert_eq!(SizedTable::FINGERPRINT, PlainTable::FINGERPRINT);
    let plain = PlainTable {
        entries: (0..1_000u64).map(|i| (format!("key-{i}"), i * 7919)).collect(),
    };
    let sized = SizedTable {
        entries: plain.entries.clone(),
    };
    let from_plain = state::encode(&plain).unwrap();
    let from_sized = state::encode(&sized).unwrap();
    assert_eq!(state::decode::<SizedTable>(from_plain.as_bytes()).unwrap(), sized);
    assert_eq!(state::decode::<PlainTable>(from_sized.as_bytes()).unwrap(), plain);
}

/// A length claiming 2^60 entries in a few bytes reserves no more than those bytes can hold, and
/// is refused when the entries are not there; so is a claim one entry longer than the body.
#[test]
fn hash_map_refuses_a_lying_length_without_reserving_for_it() {
    let mut bytes = StateTag::of::<SizedBlocks>().to_bytes().to_vec();
    bytes.extend(postcard::to_allocvec(&(1u64 << 60)).unwrap());
    bytes.extend([1, 5]);
    let err = state::decode::<SizedBlocks>(&bytes).map(|_| ()).unwrap_err();
    assert!(matches!(err, StateError::Decode { .. }), "{err}");
    let mut bytes = StateTag::of::<SizedTable>().to_bytes().to_vec();
    bytes.extend(postcard::to_allocvec(&(1u64 << 60)).unwrap());
    bytes.extend([1, b'a', 5]);
    let err = state::decode::<SizedTable>(&bytes).unwrap_err();
    assert!(matches!(err, StateError::Decode { .. }), "{err}");
    let honest = SizedTable {
        entries: [("a".to_owned(), 1), ("b".to_owned(), 2)].into(),
    };
    let mut bytes = state::encode(&honest).unwrap().into_bytes();
    bytes[state::HEADER_LEN] = 3; // the count: one entry more than follows
    let err = state::decode::<SizedTable>(&bytes).unwrap_err();
    assert!(matches!(err, StateError::Decode { .. }), "{err}");
}

/// Duplicate keys (which no honest encoder writes) end as serde's own map ends them: the last
/// one wins.
#[test]
fn hash_map_takes_the_last_of_duplicate_keys_as_serde_does() {
    let mut bytes = StateTag::of::<SizedTable>().to_bytes().to_vec();
    bytes.extend([2, 1, b'a', 1, 1, b'a', 2]);
    let sized = state::decode::<SizedTable>(&bytes).unwrap();
    assert_eq!(sized.entries.len(), 1);
    assert_eq!(sized.entries["a"], 2);
    let plain = state::decode::<PlainTable>(&bytes).unwrap();
    assert_eq!(plain.entries, sized.entries);
}

#[test]
fn hash_map_decodes_a_large_honest_map_whole() {
    let table = SizedTable {
        entries: (0..100_000u64).map(|i| (format!("key-{i}"), i * 7919)).collect(),
    };
    let bytes = state::encode(&table).unwrap();
    assert_eq!(state::decode::<SizedTable>(bytes.as_bytes()).unwrap(), table);
}

proptest! {
    #[test]
    fn hash_map_round_trips(entries in proptest::collection::hash_map(".{0,12}", any::<u64>(), 0..200)) {
        let table = SizedTable { entries };
        let back: SizedTable = state::decode(state::encode(&table).unwrap().as_bytes()).unwrap();
        prop_assert_eq!(back, table);
    }

    /// Whatever the bytes, the helper decodes exactly what serde's own map decodes, or both
    /// refuse them.
    #[test]
    fn hash_map_reads_any_bytes_as_serde_does(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = StateTag::of::<SizedTable>().to_bytes().to_vec();
        bytes.extend(body);
        let sized = state::decode::<SizedTable>(&bytes).map(|t| t.entries).ok();
        let plain = state::decode::<PlainTable>(&bytes).map(|t| t.entries).ok();
        prop_assert_eq!(sized, plain);
    }
}
