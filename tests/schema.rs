//! Structural schema fingerprints: what changes them (everything that changes what the bytes
//! mean) and what does not (names that never reach the meaning); the misread the issue
//! reproduced is refused; legacy fingerprints still load; the schema lock.

use std::collections::{BTreeMap, HashMap};

use microkernel::Migratable;
use microkernel::state::{self, Fingerprint, Schema, StateError, StateTag};
use serde::{Deserialize, Serialize};

fn fp<T: Schema + ?Sized>() -> Fingerprint {
    state::fingerprint(T::SCHEMA, 1)
}

/// The account of the issue, as first released.
mod released {
    use super::*;
    pub type Limit = u8;

    #[derive(Debug, Serialize, Deserialize, microkernel::Schema, PartialEq)]
    pub struct Inner {
        pub a: u8,
        pub b: u8,
    }

    #[derive(Debug, Serialize, Deserialize, Migratable, PartialEq)]
    #[migratable(version = 1)]
    pub struct Acct {
        pub inner: Inner,
        pub limit: Limit,
    }
}

/// The same type after two careless edits: the nested fields swapped, the alias made signed.
/// The outer declaration's text is identical, so the legacy fingerprint could not tell.
mod edited {
    use super::*;
    pub type Limit = i8;

    #[derive(Debug, Serialize, Deserialize, microkernel::Schema, PartialEq)]
    pub struct Inner {
        pub b: u8,
        pub a: u8,
    }

    #[derive(Debug, Serialize, Deserialize, Migratable, PartialEq)]
    #[migratable(version = 1)]
    pub struct Acct {
        pub inner: Inner,
        pub limit: Limit,
    }
}

#[test]
fn the_misread_of_a_nested_edit_is_refused() {
    let old = released::Acct {
        inner: released::Inner { a: 1, b: 2 },
        limit: 200,
    };
    let bytes = state::encode(&old).unwrap();
    let err = state::decode::<edited::Acct>(bytes.as_bytes()).unwrap_err();
    assert!(
        matches!(err, StateError::FingerprintMismatch { version: 1, .. }),
        "{err}"
    );
    // The legacy fingerprint (outer text only) is blind to both edits: that is why it is weaker.
    assert_eq!(released::Acct::LEGACY_FINGERPRINT, edited::Acct::LEGACY_FINGERPRINT);
    assert_ne!(released::Acct::FINGERPRINT, edited::Acct::FINGERPRINT);
}

#[test]
fn each_part_of_the_meaning_changes_the_fingerprint() {
    #[derive(Serialize, microkernel::Schema)]
    struct Ab {
        a: u8,
        b: u8,
    }
    #[derive(Serialize, microkernel::Schema)]
    struct Ba {
        b: u8,
        a: u8,
    }
    #[derive(Serialize, microkernel::Schema)]
    struct Ac {
        a: u8,
        c: u8,
    }
    #[derive(Serialize, microkernel::Schema)]
    #[allow(dead_code)]
    enum Two {
        X,
        Y(u8),
    }
    #[derive(Serialize, microkernel::Schema)]
    #[allow(dead_code)]
    enum TwoSwapped {
        Y(u8),
        X,
    }
    #[derive(Serialize, microkernel::Schema)]
    #[allow(dead_code)]
    enum Three {
        X,
        Y(u8),
        Z { z: u16 },
    }
    let distinct = [
        ("field order", fp::<Ab>(), fp::<Ba>()),
        ("field name", fp::<Ab>(), fp::<Ac>()),
        ("integer sign", fp::<u8>(), fp::<i8>()),
        ("integer width", fp::<u32>(), fp::<u64>()),
        ("option", fp::<u8>(), fp::<Option<u8>>()),
        ("sequence vs array", fp::<Vec<u8>>(), fp::<[u8; 2]>()),
        ("array length", fp::<[u8; 2]>(), fp::<[u8; 3]>()),
        ("tuple", fp::<(u8, u16)>(), fp::<(u16, u8)>()),
        (
            "map value",
            fp::<BTreeMap<String, u32>>(),
            fp::<BTreeMap<String, i32>>(),
        ),
        (
            "map vs sequence of pairs",
            fp::<BTreeMap<u8, u8>>(),
            fp::<Vec<(u8, u8)>>(),
        ),
        ("variant order", fp::<Two>(), fp::<TwoSwapped>()),
        ("added variant", fp::<Two>(), fp::<Three>()),
        ("nested at depth", fp::<Vec<Option<Ab>>>(), fp::<Vec<Option<Ba>>>()),
    ];
    for (what, a, b) in distinct {
        assert_ne!(a, b, "{what} must change the fingerprint");
    }
}

#[test]
fn names_that_never_reach_the_meaning_keep_the_fingerprint() {
    #[derive(Serialize, microkernel::Schema)]
    struct Point {
        x: i32,
        y: i32,
    }
    #[derive(Serialize, microkernel::Schema)]
    struct Coord {
        x: i32,
        y: i32,
    }
    #[derive(Serialize, microkernel::Schema)]
    struct Holder {
        p: Point,
        #[serde(skip)]
        _cache: Vec<u8>,
    }
    #[derive(Serialize, microkernel::Schema)]
    struct Renamed {
        p: Coord,
    }
    type Alias = u16;
    let same = [
        (
            "HashMap vs BTreeMap",
            fp::<HashMap<String, u64>>(),
            fp::<BTreeMap<String, u64>>(),
        ),
        (
            "renamed nested struct (and skipped field)",
            fp::<Holder>(),
            fp::<Renamed>(),
        ),
        ("alias resolved", fp::<Alias>(), fp::<u16>()),
        ("Box is transparent", fp::<Box<Point>>(), fp::<Point>()),
    ];
    for (what, a, b) in same {
        assert_eq!(a, b, "{what} must keep the fingerprint");
    }
}

#[test]
fn a_customised_field_says_what_it_encodes_as() {
    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 1)]
    struct Plain {
        entries: BTreeMap<String, u64>,
    }
    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 1)]
    struct Bulk {
        #[serde(with = "microkernel::state::bulk_btree_map")]
        entries: BTreeMap<String, u64>,
    }
    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 1)]
    struct Hex {
        #[serde(with = "hex_u32")]
        #[schema(as = String)]
        value: u32,
    }
    mod hex_u32 {
        pub fn serialize<S: serde::Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&format!("{v:x}"))
        }
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
            let text: String = serde::Deserialize::deserialize(d)?;
            u32::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
        }
    }
    // The bulk helper writes the map as serde does: the same schema.
    assert_eq!(Plain::FINGERPRINT, Bulk::FINGERPRINT);
    assert_eq!(state::schema_text(<Hex as Schema>::SCHEMA), "Hex { value: String }");
    let back: Hex = state::decode(state::encode(&Hex { value: 0xbeef }).unwrap().as_bytes()).unwrap();
    assert_eq!(back.value, 0xbeef);
}

#[test]
fn transparent_and_generic_nested_types() {
    #[derive(Serialize, microkernel::Schema)]
    #[serde(transparent)]
    struct Meters(u32);
    #[derive(Serialize, microkernel::Schema)]
    struct Pair<T> {
        left: T,
        right: T,
    }
    assert_eq!(fp::<Meters>(), fp::<u32>());
    assert_eq!(
        state::schema_text(<Pair<Meters> as Schema>::SCHEMA),
        "Pair { left: u32, right: u32 }"
    );
    assert_ne!(fp::<Pair<u8>>(), fp::<Pair<i8>>());
}

#[test]
fn fingerprints_are_computed_at_compile_time() {
    const AT_COMPILE_TIME: Fingerprint = released::Acct::FINGERPRINT;
    assert_eq!(
        AT_COMPILE_TIME,
        state::fingerprint(<released::Acct as Schema>::SCHEMA, 1)
    );
}

#[test]
fn a_state_tagged_with_its_legacy_fingerprint_still_decodes() {
    let value = released::Acct {
        inner: released::Inner { a: 1, b: 2 },
        limit: 3,
    };
    let mut bytes = StateTag {
        version: 1,
        fingerprint: released::Acct::LEGACY_FINGERPRINT.unwrap(),
    }
    .to_bytes()
    .to_vec();
    bytes.extend(postcard::to_allocvec(&value).unwrap());
    assert_eq!(state::decode::<released::Acct>(&bytes).unwrap(), value);
    // Any other fingerprint is refused.
    bytes[4] ^= 1;
    assert!(matches!(
        state::decode::<released::Acct>(&bytes),
        Err(StateError::FingerprintMismatch { .. })
    ));
}

mod lock {
    use super::*;
    use microkernel::state::{Problem, SchemaLockError, check_schema_lock};

    fn temp_lock(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mk-schema-lock-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.lock");
        let _ = std::fs::remove_file(&path);
        path
    }

    fn problems(err: SchemaLockError) -> Vec<Problem> {
        match err {
            SchemaLockError::Violated { problems, .. } => problems,
            other => panic!("expected a violated lock, got {other}"),
        }
    }

    #[test]
    fn a_missing_lock_is_an_error_until_added_then_it_holds() {
        let path = temp_lock("missing");
        let err = check_schema_lock::<released::Acct>(&path, false).unwrap_err();
        assert!(matches!(err, SchemaLockError::NoLock { .. }), "{err}");
        assert!(err.to_string().contains("MICROKERNEL_SCHEMA_LOCK=add"), "{err}");
        assert_eq!(check_schema_lock::<released::Acct>(&path, true).unwrap(), [1]);
        assert_eq!(
            check_schema_lock::<released::Acct>(&path, false).unwrap(),
            Vec::<u32>::new()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("Acct v1 "), "{text}");
        assert!(
            text.contains("    Acct { inner: Inner { a: u8, b: u8 }, limit: u8 }"),
            "{text}"
        );
    }

    #[test]
    fn a_changed_release_fails_naming_type_and_version_and_shows_the_difference() {
        let path = temp_lock("changed");
        check_schema_lock::<released::Acct>(&path, true).unwrap();
        let before = std::fs::read(&path).unwrap();
        // Adding does not rewrite a released entry either.
        let err = check_schema_lock::<edited::Acct>(&path, true).unwrap_err();
        assert_eq!(std::fs::read(&path).unwrap(), before, "the lock was rewritten");
        let message = err.to_string();
        assert!(message.contains("Acct v1 changed after its release"), "{message}");
        assert!(message.contains("add a new version instead"), "{message}");
        assert!(
            message.contains("locked: Acct { inner: Inner { a: u8, b: u8 }, limit: u8 }"),
            "{message}"
        );
        assert!(
            message.contains("now:    Acct { inner: Inner { b: u8, a: u8 }, limit: i8 }"),
            "{message}"
        );
        assert!(matches!(problems(err)[..], [Problem::Changed { version: 1, .. }]));
    }

    #[derive(Debug, Serialize, Deserialize, Migratable)]
    #[migratable(version = 2, from = released::Acct)]
    struct AcctV2 {
        limit: u16,
    }

    impl From<released::Acct> for AcctV2 {
        fn from(v1: released::Acct) -> Self {
            Self { limit: v1.limit.into() }
        }
    }

    #[test]
    fn a_new_version_is_missing_until_added_and_a_dropped_one_is_reported() {
        let path = temp_lock("new");
        check_schema_lock::<released::Acct>(&path, true).unwrap();
        let err = check_schema_lock::<AcctV2>(&path, false).unwrap_err();
        assert!(err.to_string().contains("AcctV2 v2 is not in the lock"), "{err}");
        assert!(err.to_string().contains("MICROKERNEL_SCHEMA_LOCK=add"), "{err}");
        assert_eq!(check_schema_lock::<AcctV2>(&path, true).unwrap(), [2]);
        check_schema_lock::<AcctV2>(&path, false).unwrap();
        // Checking the shorter chain against the longer lock: v2 would no longer load.
        let err = check_schema_lock::<released::Acct>(&path, false).unwrap_err();
        assert!(matches!(problems(err)[..], [Problem::Removed { version: 2, .. }]));
    }

    #[test]
    fn a_malformed_lock_names_the_line() {
        let path = temp_lock("malformed");
        std::fs::write(&path, "# comment\nAcct v1 nothex\n").unwrap();
        let err = check_schema_lock::<released::Acct>(&path, false).unwrap_err();
        assert!(matches!(err, SchemaLockError::Malformed { line: 2, .. }), "{err}");
    }
}

/// A recursive type the derive cannot see: it is reached through `#[schema(as = ..)]`, so the
/// schema is finite while the decoder recurses once per level of the input.
mod hidden_recursion {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    pub enum Node {
        Leaf,
        Branch(Box<Node>),
    }

    impl Node {
        pub fn deep(levels: usize) -> Self {
            (0..levels).fold(Node::Leaf, |node, _| Node::Branch(Box::new(node)))
        }
    }

    #[derive(Debug, Serialize, Deserialize, Migratable, PartialEq)]
    #[migratable(version = 1)]
    pub struct Forest {
        #[schema(as = Vec<u8>)]
        pub root: Node,
    }

    /// The tag of `Forest`, then `Branch` `levels` times and a `Leaf`.
    pub fn hostile(levels: usize) -> Vec<u8> {
        let mut bytes = StateTag::of::<Forest>().to_bytes().to_vec();
        bytes.resize(bytes.len() + levels, 1);
        bytes.push(0);
        bytes
    }

    /// Hands out a body in segments of 4096 bytes, as a segmented envelope being opened does.
    pub struct Segments(pub std::collections::VecDeque<Vec<u8>>);

    impl state::SegmentSource for Segments {
        fn next_segment(&mut self) -> Option<Vec<u8>> {
            self.0.pop_front()
        }
        fn remaining(&self) -> Option<usize> {
            Some(self.0.iter().map(Vec::len).sum())
        }
    }

    impl Segments {
        pub fn of(bytes: &[u8]) -> Self {
            Self(bytes.chunks(4096).map(<[u8]>::to_vec).collect())
        }
    }
}

#[test]
fn hostile_nesting_through_schema_as_is_a_typed_error_not_a_stack_overflow() {
    use hidden_recursion::{Forest, Segments, hostile};
    // A million levels: without a bound, the decoder overflows any thread's stack.
    let bytes = hostile(1_000_000);
    let too_deep = |error: StateError| match error {
        StateError::TooDeep { ty, version, limit } => {
            assert_eq!((ty, version, limit), ("Forest", 1, state::MAX_DECODE_DEPTH));
            error.to_string()
        }
        other => panic!("expected TooDeep, got {other:?}"),
    };
    let message = too_deep(state::decode::<Forest>(&bytes).unwrap_err());
    let expected = format!("nest deeper than {} levels", state::MAX_DECODE_DEPTH);
    assert!(message.contains(&expected), "{message}");
    // The segmented path (a large sealed state) is bounded the same way.
    too_deep(state::decode_segments::<Forest>(&mut Segments::of(&bytes)).unwrap_err());
    // Just over the limit is refused (a newtype variant nests one level below its enum).
    too_deep(state::decode::<Forest>(&hostile(state::MAX_DECODE_DEPTH)).unwrap_err());
}

#[test]
fn honest_nesting_under_the_depth_limit_still_decodes() {
    use hidden_recursion::{Forest, Node, Segments};
    // The struct is one level, the enum at each depth one more.
    let forest = Forest {
        root: Node::deep(state::MAX_DECODE_DEPTH - 2),
    };
    let encoded = state::encode(&forest).unwrap();
    assert_eq!(state::decode::<Forest>(encoded.as_bytes()).unwrap(), forest);
    let streamed = state::decode_segments::<Forest>(&mut Segments::of(encoded.as_bytes())).unwrap();
    assert_eq!(streamed, forest);
}
