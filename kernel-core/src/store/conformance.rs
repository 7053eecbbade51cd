//! The checks every [`StateStore`] backend passes, for its own tests.
//!
//! A backend provides a [`Fixture`]: a way to open stores over one place (a fresh temporary
//! directory, a fresh bucket), and to read and overwrite an object *around* the store, as a
//! disk fault or an attacker would. Then one line in its tests runs every check as its own
//! `#[test]`:
//!
//! ```ignore
//! microkernel::store_conformance!(MyFixture::new());
//! ```
//!
//! The expression is evaluated once per check, so each check gets a fresh place. Each check
//! is also a public function here, to run by hand. The directory store runs the suite in
//! `tests/store_conformance.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Location, StateStore, StoreError, block_on};
use crate::seal::{Algorithm, Key, Keyring, SealedObject, Sealer};
use crate::state::StateTag;

/// A place to open stores over, and a way around them to its objects.
pub trait Fixture {
    /// The store under test.
    type Store: StateStore;

    /// Opens a store over this fixture's place: every call opens the same place.
    fn open(&self) -> Result<Self::Store, StoreError>;

    /// The bytes stored for `service` right now, read without the store (`None` if absent).
    fn raw(&self, service: &str) -> Option<Vec<u8>>;

    /// Overwrites what is stored for `service` with `bytes`, without the store (as a disk fault
    /// or an attacker would).
    fn put_raw(&self, service: &str, bytes: &[u8]);

    /// The largest object the stores this fixture opens accept (keep it small: the size checks
    /// write one object just over it).
    fn max_object_bytes(&self) -> u64;
}

/// The names of the checks, in the order [`run_all`] runs them.
pub const CHECKS: [&str; 11] = [
    "round_trip",
    "older_generation_is_refused",
    "replayed_object_is_refused_and_left_untouched",
    "generations_survive_reopening",
    "concurrent_saves_keep_the_newest",
    "one_owner_at_a_time",
    "corrupt_object_is_named_and_left_untouched",
    "size_limit_holds_both_ways",
    "set_aside_moves_the_object_away",
    "names_the_store_cannot_keep_are_refused",
    "streamed_saves_keep_every_guarantee",
];

/// A sealed object for `service` at `generation` holding `payload` (sealed with a fixed test
/// key: stores never open what they keep).
pub fn object(service: &str, generation: u64, payload: &[u8]) -> SealedObject {
    let key = Key::from_bytes(Algorithm::ChaCha20Poly1305, &[7; 32]).expect("a 32-byte key");
    let sealer = Sealer::new(Keyring::new(1, key));
    let tag = StateTag::of::<crate::state::Stateless>();
    let blob = sealer
        .seal_at(service, tag, generation, payload)
        .expect("sealing a test object");
    SealedObject::from_bytes(blob).expect("a sealed envelope parses")
}

fn open<F: Fixture>(fixture: &F) -> F::Store {
    fixture
        .open()
        .unwrap_or_else(|e| panic!("the fixture's store does not open: {e}"))
}

fn save<S: StateStore>(store: &S, service: &str, object: SealedObject) -> Result<Location, StoreError> {
    block_on(store.save(service, object))
}

fn load<S: StateStore>(store: &S, service: &str) -> Result<Option<SealedObject>, StoreError> {
    block_on(store.load(service)).map(|stored| stored.map(|s| s.object))
}

/// Saves come back as they went in, the newest each time; a missing object is `None`.
pub fn round_trip<F: Fixture>(fixture: &F) {
    let store = open(fixture);
    assert!(load(&store, "svc").unwrap().is_none(), "nothing saved yet");
    let first = object("svc", 1, b"first");
    let written = save(&store, "svc", first.clone()).unwrap();
    let stored = block_on(store.load("svc")).unwrap().expect("the saved object");
    assert_eq!(stored.object, first);
    assert_eq!(stored.location, written, "load names where save wrote");
    assert_eq!(fixture.raw("svc").as_deref(), Some(first.as_bytes()), "stored as given");
    let second = object("svc", 2, b"second");
    save(&store, "svc", second.clone()).unwrap();
    assert_eq!(load(&store, "svc").unwrap(), Some(second));
    assert_eq!(store.known_generation("svc"), 2);
    assert_eq!(store.known_generation("other"), 0);
    assert!(load(&store, "other").unwrap().is_none(), "services are kept apart");
}

/// A save of a generation not above the newest is refused and changes nothing.
pub fn older_generation_is_refused<F: Fixture>(fixture: &F) {
    let store = open(fixture);
    let newest = object("svc", 5, b"five");
    save(&store, "svc", newest.clone()).unwrap();
    for generation in [3, 5] {
        match save(&store, "svc", object("svc", generation, b"old")) {
            Err(StoreError::Stale {
                generation: g,
                newest: 5,
                ..
            }) => assert_eq!(g, generation),
            other => panic!("a save of generation {generation} over 5 must be Stale, got {other:?}"),
        }
        assert_eq!(fixture.raw("svc").as_deref(), Some(newest.as_bytes()), "untouched");
    }
    assert_eq!(load(&store, "svc").unwrap(), Some(newest));
}

/// An older object put back around the store is refused on load, and left where it is.
pub fn replayed_object_is_refused_and_left_untouched<F: Fixture>(fixture: &F) {
    let store = open(fixture);
    let old = object("svc", 1, b"old");
    save(&store, "svc", old.clone()).unwrap();
    save(&store, "svc", object("svc", 2, b"new")).unwrap();
    fixture.put_raw("svc", old.as_bytes());
    match load(&store, "svc") {
        Err(StoreError::Replayed {
            found: 1, newest: 2, ..
        }) => {}
        other => panic!("loading a replayed generation 1 after 2 must be Replayed, got {other:?}"),
    }
    assert_eq!(fixture.raw("svc").as_deref(), Some(old.as_bytes()), "left untouched");
}

/// A store opened again loads what the last one saved, and goes on above its generation.
pub fn generations_survive_reopening<F: Fixture>(fixture: &F) {
    let saved = object("svc", 3, b"three");
    {
        let store = open(fixture);
        save(&store, "svc", saved.clone()).unwrap();
    }
    let store = open(fixture);
    assert_eq!(load(&store, "svc").unwrap(), Some(saved.clone()));
    assert!(
        matches!(
            save(&store, "svc", object("svc", 2, b"two")),
            Err(StoreError::Stale { .. })
        ),
        "after loading generation 3, generation 2 is stale"
    );
    assert_eq!(fixture.raw("svc").as_deref(), Some(saved.as_bytes()));
}

/// Many threads saving one service at interleaved generations: each save is written or
/// `Stale`, and the newest generation is what stays.
pub fn concurrent_saves_keep_the_newest<F: Fixture>(fixture: &F)
where
    F::Store: 'static,
{
    const THREADS: u64 = 8;
    const EACH: u64 = 20;
    let store = Arc::new(open(fixture));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let generation = 1 + t + i * THREADS;
                    let payload = generation.to_le_bytes();
                    match save(&*store, "svc", object("svc", generation, &payload)) {
                        Ok(_) | Err(StoreError::Stale { .. }) => {}
                        Err(other) => panic!("a concurrent save failed: {other}"),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a saving thread panicked");
    }
    let last = THREADS * EACH;
    let stored = load(&*store, "svc").unwrap().expect("an object");
    assert_eq!(stored.generation(), last, "the newest generation stays");
    assert_eq!(
        fixture.raw("svc").as_deref(),
        Some(stored.as_bytes()),
        "what is stored is one whole object"
    );
    assert_eq!(store.known_generation("svc"), last);
}

/// While one store holds the place, a second one cannot write there.
pub fn one_owner_at_a_time<F: Fixture>(fixture: &F) {
    let first = open(fixture);
    let held = object("svc", 1, b"first owner");
    save(&first, "svc", held.clone()).unwrap();
    match fixture.open() {
        Err(StoreError::Locked { .. }) => {}
        Err(other) => panic!("a second store over a held place must fail as Locked, got {other}"),
        Ok(second) => {
            match save(&second, "svc", object("svc", 9, b"intruder")) {
                Err(StoreError::Conflict { .. } | StoreError::Locked { .. }) => {}
                other => panic!("a second store's write must fail as Conflict or Locked, got {other:?}"),
            }
            assert_eq!(fixture.raw("svc").as_deref(), Some(held.as_bytes()), "untouched");
        }
    }
    drop(first);
    let next = open(fixture);
    assert_eq!(
        load(&next, "svc").unwrap(),
        Some(held),
        "the next owner finds the state"
    );
}

/// An object that is not an envelope is an error naming it, and stays as it is.
pub fn corrupt_object_is_named_and_left_untouched<F: Fixture>(fixture: &F) {
    let store = open(fixture);
    save(&store, "svc", object("svc", 1, b"good")).unwrap();
    let garbage = b"this is not a sealed envelope".as_slice();
    fixture.put_raw("svc", garbage);
    let error = load(&store, "svc").expect_err("garbage must not load");
    let location = store.location("svc");
    assert_eq!(error.location().as_ref(), Some(&location), "{error}");
    assert!(
        error.to_string().contains(&location.to_string()),
        "the message names the object: {error}"
    );
    assert_eq!(fixture.raw("svc").as_deref(), Some(garbage), "left untouched");
}

/// An object over the limit is refused when saved (nothing written) and when loaded (left as
/// it is).
pub fn size_limit_holds_both_ways<F: Fixture>(fixture: &F) {
    let store = open(fixture);
    let limit = fixture.max_object_bytes();
    let payload = vec![0x5a; usize::try_from(limit).expect("a limit that fits in memory")];
    let big = object("svc", 1, &payload);
    assert!(big.len() as u64 > limit);
    match save(&store, "svc", big.clone()) {
        Err(StoreError::TooLarge { limit: l, .. }) => assert_eq!(l, limit),
        other => panic!(
            "an object of {} bytes over a limit of {limit} must be TooLarge, got {other:?}",
            big.len()
        ),
    }
    assert!(fixture.raw("svc").is_none(), "nothing written");
    fixture.put_raw("svc", big.as_bytes());
    assert!(
        matches!(load(&store, "svc"), Err(StoreError::TooLarge { .. })),
        "an oversized object must not load"
    );
    assert_eq!(fixture.raw("svc").as_deref(), Some(big.as_bytes()), "left untouched");
}

/// `set_aside` moves an object away (kept elsewhere), after which the service has none.
pub fn set_aside_moves_the_object_away<F: Fixture>(fixture: &F) {
    let store = open(fixture);
    assert_eq!(block_on(store.set_aside("svc")).unwrap(), None, "nothing to set aside");
    fixture.put_raw("svc", b"unusable");
    let aside = block_on(store.set_aside("svc")).unwrap().expect("where it went");
    assert_ne!(aside, store.location("svc"));
    assert!(fixture.raw("svc").is_none(), "moved away");
    assert!(load(&store, "svc").unwrap().is_none());
}

/// A name the store cannot keep is refused by `check_name` and by `save`, naming it.
pub fn names_the_store_cannot_keep_are_refused<F: Fixture>(fixture: &F) {
    let store = open(fixture);
    assert!(store.check_name("svc").is_ok());
    let refused: BTreeSet<&str> = ["", "a/b", "nul\0"]
        .into_iter()
        .filter(|name| store.check_name(name).is_err())
        .collect();
    assert!(refused.contains(""), "the empty name must be refused");
    for name in refused {
        assert!(
            save(&store, name, object("x", 1, b"x")).is_err(),
            "save accepted the name {name:?} that check_name refuses"
        );
    }
}

/// A store that writes part by part ([`StateStore::begin_save`]) keeps the guarantees of whole
/// saves: nothing is visible before the commit, a writer dropped leaves nothing, an older
/// generation is refused at the commit, the size limit holds while the parts come. Passes at
/// once for a store that takes whole objects only.
pub fn streamed_saves_keep_every_guarantee<F: Fixture>(fixture: &F) {
    let store = open(fixture);
    let whole = object("svc", 5, b"streamed in three parts");
    let parts = [
        &whole.as_bytes()[..10],
        &whole.as_bytes()[10..20],
        &whole.as_bytes()[20..],
    ];
    let Some(mut writer) = store.begin_save("svc", 5) else {
        return;
    };
    for part in &parts[..2] {
        block_on(writer.write(part)).unwrap();
    }
    assert!(fixture.raw("svc").is_none(), "nothing visible before the commit");
    drop(writer);
    assert!(fixture.raw("svc").is_none(), "a dropped writer leaves nothing");
    let mut writer = store.begin_save("svc", 5).expect("the store streamed before");
    for part in parts {
        block_on(writer.write(part)).unwrap();
    }
    let written = block_on(writer.commit()).unwrap();
    assert_eq!(written, store.location("svc"));
    assert_eq!(
        fixture.raw("svc").as_deref(),
        Some(whole.as_bytes()),
        "the parts, joined"
    );
    assert_eq!(load(&store, "svc").unwrap(), Some(whole.clone()));
    let mut older = store.begin_save("svc", 4).expect("the store streamed before");
    block_on(older.write(object("svc", 4, b"older").as_bytes())).unwrap();
    assert!(
        matches!(
            block_on(older.commit()),
            Err(StoreError::Stale {
                generation: 4,
                newest: 5,
                ..
            })
        ),
        "an older generation is refused at the commit"
    );
    assert_eq!(fixture.raw("svc").as_deref(), Some(whole.as_bytes()), "left as it was");
    let limit = usize::try_from(fixture.max_object_bytes()).expect("a limit that fits in memory");
    let mut big = store.begin_save("svc", 6).expect("the store streamed before");
    // One byte over the limit in total, in two parts.
    let refused =
        block_on(big.write(&vec![0; limit / 2])).and_then(|()| block_on(big.write(&vec![0; limit - limit / 2 + 1])));
    assert!(matches!(refused, Err(StoreError::TooLarge { .. })), "{refused:?}");
    drop(big);
    assert_eq!(fixture.raw("svc").as_deref(), Some(whole.as_bytes()), "left as it was");
}

/// Runs every check, each on a fresh fixture from `fixture`.
pub fn run_all<F: Fixture>(fixture: impl Fn() -> F)
where
    F::Store: 'static,
{
    round_trip(&fixture());
    older_generation_is_refused(&fixture());
    replayed_object_is_refused_and_left_untouched(&fixture());
    generations_survive_reopening(&fixture());
    concurrent_saves_keep_the_newest(&fixture());
    one_owner_at_a_time(&fixture());
    corrupt_object_is_named_and_left_untouched(&fixture());
    size_limit_holds_both_ways(&fixture());
    set_aside_moves_the_object_away(&fixture());
    names_the_store_cannot_keep_are_refused(&fixture());
    streamed_saves_keep_every_guarantee(&fixture());
}

/// Runs the [conformance suite](crate::store::conformance) on a [`Fixture`], one `#[test]` per
/// check, in a module `store_conformance`. The expression is evaluated once per check.
///
/// ```ignore
/// microkernel::store_conformance!(TempDirFixture::new());
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($fixture:expr) => {
        #[allow(unused_imports)]
        mod store_conformance {
            use super::*;
            $crate::store_conformance!(@checks $fixture;
                round_trip,
                older_generation_is_refused,
                replayed_object_is_refused_and_left_untouched,
                generations_survive_reopening,
                concurrent_saves_keep_the_newest,
                one_owner_at_a_time,
                corrupt_object_is_named_and_left_untouched,
                size_limit_holds_both_ways,
                set_aside_moves_the_object_away,
                names_the_store_cannot_keep_are_refused,
                streamed_saves_keep_every_guarantee
            );
        }
    };
    (@checks $fixture:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::store::conformance::$check(&$fixture);
            }
        )*
    };
}
