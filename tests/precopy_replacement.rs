//! A `#[precopy]` map crosses a replacement while the old version serves: the state after the
//! switch is the one a stop-the-world replacement at the switch would give, every call is
//! answered once (by v1 before the switch, by v2 after), and a failure leaves v1 serving.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use microkernel::{Context, Handler, Kernel, Migratable, Notice, PrecopyMap, Schema, Step};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 1)]
struct TableV1 {
    #[precopy]
    counts: PrecopyMap<String, u32>,
    writes: u64,
}

/// v2's entry: the count widened, and a second field the conversion fills.
#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
pub struct Count {
    n: u64,
    doubled: u64,
}

impl From<u32> for Count {
    fn from(n: u32) -> Self {
        assert_ne!(n, POISON, "refusing the poisoned count");
        Count {
            n: n.into(),
            doubled: 2 * u64::from(n),
        }
    }
}

/// A count no entry converts from (its conversion panics).
const POISON: u32 = 999_999;

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = TableV1)]
struct TableV2 {
    #[precopy]
    counts: PrecopyMap<String, Count>,
    writes: u64,
}

impl From<TableV1> for TableV2 {
    fn from(v1: TableV1) -> Self {
        Self {
            counts: v1.counts.upgrade(),
            writes: v1.writes,
        }
    }
}

/// A v2 whose conversion reads the map (to count it): it cannot cross pre-copied.
#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = TableV1)]
struct CountingV2 {
    #[precopy]
    counts: PrecopyMap<String, Count>,
    writes: u64,
    entries_at_upgrade: u64,
}

impl From<TableV1> for CountingV2 {
    fn from(v1: TableV1) -> Self {
        let entries_at_upgrade = v1.counts.len() as u64;
        Self {
            counts: v1.counts.upgrade(),
            writes: v1.writes,
            entries_at_upgrade,
        }
    }
}

/// One call: a write, or a read of the whole table.
#[derive(Clone, Debug)]
enum Op {
    Set(String, u32),
    Add(String, u32),
    Remove(String),
    /// Puts a new, empty map in the old one's place (a pre-copy must notice).
    Reset,
    Dump,
}

/// A table as a service shows it: key → (count, doubled).
type Table = BTreeMap<String, (u64, u64)>;

/// Which version answered, and the table (for `Dump`).
type Answer = (u32, Option<Table>);

/// What the observer kept of each `Notice::Precopied`: rounds, entries, keys in the pause.
type Precopies = Arc<Mutex<Vec<(u32, usize, usize)>>>;

#[derive(microkernel::Service)]
#[service(name = "table")]
struct ServiceV1 {
    #[state]
    state: TableV1,
}

impl Handler for ServiceV1 {
    type Request = Op;
    type Response = Answer;

    fn handle(&mut self, op: Op, _: &Context<'_>) -> Answer {
        let counts = &mut self.state.counts;
        self.state.writes += 1;
        match op {
            Op::Set(key, n) => drop(counts.insert(key, n)),
            Op::Add(key, n) => *counts.get_or_insert_with(key, || 0) += n,
            Op::Remove(key) => drop(counts.remove(&key)),
            Op::Reset => *counts = PrecopyMap::new(),
            Op::Dump => {
                let table = counts
                    .iter()
                    .map(|(k, v)| (k.clone(), (u64::from(*v), 2 * u64::from(*v))));
                return (1, Some(table.collect()));
            }
        }
        (1, None)
    }
}

/// A v2 service over `$state`; `$extra` adds an entry to what `Dump` shows.
macro_rules! v2_service {
    ($name:ident, $state:ty, $extra:expr) => {
        #[derive(microkernel::Service)]
        #[service(name = "table")]
        struct $name {
            #[state]
            state: $state,
        }

        impl Handler for $name {
            type Request = Op;
            type Response = Answer;

            fn handle(&mut self, op: Op, _: &Context<'_>) -> Answer {
                let counts = &mut self.state.counts;
                self.state.writes += 1;
                match op {
                    Op::Set(key, n) => drop(counts.insert(key, Count::from(n))),
                    Op::Add(key, n) => {
                        let count = counts.get_or_insert_with(key, || Count::from(0));
                        count.n += u64::from(n);
                        count.doubled += 2 * u64::from(n);
                    }
                    Op::Remove(key) => drop(counts.remove(&key)),
                    Op::Reset => *counts = PrecopyMap::new(),
                    Op::Dump => {
                        let table = counts.iter().map(|(k, v)| (k.clone(), (v.n, v.doubled)));
                        let mut table: BTreeMap<_, _> = table.collect();
                        let extra: fn(&$state) -> Option<u64> = $extra;
                        if let Some(extra) = extra(&self.state) {
                            table.insert("#extra".to_owned(), (extra, 2 * extra));
                        }
                        return (2, Some(table));
                    }
                }
                (2, None)
            }
        }
    };
}

v2_service!(ServiceV2, TableV2, |_| None);
v2_service!(CountingServiceV2, CountingV2, |state| Some(state.entries_at_upgrade));

impl ServiceV2 {
    fn fresh() -> Self {
        Self {
            state: TableV2 {
                counts: PrecopyMap::new(),
                writes: 0,
            },
        }
    }
}

/// The table every op applied in order gives: key → count.
fn model(initial: &BTreeMap<String, u32>, ops: &[Op]) -> BTreeMap<String, u64> {
    let mut table: BTreeMap<String, u64> = initial.iter().map(|(k, v)| (k.clone(), u64::from(*v))).collect();
    for op in ops {
        match op {
            Op::Set(key, n) => drop(table.insert(key.clone(), u64::from(*n))),
            Op::Add(key, n) => *table.entry(key.clone()).or_default() += u64::from(*n),
            Op::Remove(key) => drop(table.remove(key)),
            Op::Reset => table.clear(),
            Op::Dump => {}
        }
    }
    table
}

/// A kernel whose notices about pre-copy are kept: (rounds, entries, in the pause).
fn kernel_keeping_precopies() -> (Kernel, Precopies) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    let kernel = Kernel::builder()
        .observer(move |notice| {
            if let Notice::Precopied {
                rounds,
                entries,
                in_pause,
                ..
            } = notice
            {
                keep.lock().unwrap().push((*rounds, *entries, *in_pause));
            }
        })
        .build()
        .unwrap();
    (kernel, seen)
}

fn initial_table(entries: usize) -> BTreeMap<String, u32> {
    (0..entries).map(|i| (format!("key-{i}"), (i % 1000) as u32)).collect()
}

/// An endless stream of ops over keys that exist and keys that do not, from a seed.
fn ops_from(seed: u64, keys: usize) -> impl Iterator<Item = Op> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    std::iter::repeat_with(move || {
        let key = format!("key-{}", next() % (keys as u64 + keys as u64 / 4 + 1));
        if next() % 1500 == 0 {
            return Op::Reset;
        }
        match next() % 3 {
            0 => Op::Set(key, (next() % 1000) as u32),
            1 => Op::Add(key, (next() % 10) as u32),
            _ => Op::Remove(key),
        }
    })
}

/// Replaces v1 by v2 once a thread calling `ops` one after another has made `replace_after`
/// calls; the thread goes on until v2 has answered `after_switch` calls. Returns the ops made,
/// the versions that answered them, in order, and the table v2 holds at the end.
fn replace_under_writes(
    kernel: &Kernel,
    initial: &BTreeMap<String, u32>,
    ops: impl Iterator<Item = Op> + Send + 'static,
    replace_after: usize,
    after_switch: usize,
) -> (Vec<Op>, Vec<u32>, Table) {
    let counts: PrecopyMap<String, u32> = initial.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let handle = kernel
        .register_typed(ServiceV1 {
            state: TableV1 { counts, writes: 0 },
        })
        .unwrap();
    kernel.start_all().unwrap();
    let caller = handle.clone();
    let made = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&made);
    let writer = thread::spawn(move || {
        let (mut done, mut versions, mut by_v2) = (Vec::new(), Vec::new(), 0);
        for op in ops {
            let version = caller.call(op.clone()).unwrap().0;
            done.push(op);
            versions.push(version);
            counter.fetch_add(1, Ordering::Release);
            by_v2 += usize::from(version == 2);
            if by_v2 >= after_switch && done.len() > replace_after {
                break;
            }
        }
        (done, versions)
    });
    while made.load(Ordering::Acquire) < replace_after {
        thread::yield_now();
    }
    kernel.replace_at(&handle, ServiceV2::fresh()).unwrap();
    let (ops, versions) = writer.join().unwrap();
    let (version, table) = handle.call(Op::Dump).unwrap();
    assert_eq!(version, 2);
    (ops, versions, table.unwrap())
}

/// Every call was answered once: by v1 up to the switch, by v2 after it.
fn assert_switched_once(versions: &[u32]) {
    let switch = versions.iter().position(|v| *v == 2).unwrap_or(versions.len());
    assert!(versions[..switch].iter().all(|v| *v == 1), "{versions:?}");
    assert!(versions[switch..].iter().all(|v| *v == 2), "{versions:?}");
}

fn assert_table_is(table: &Table, expected: &BTreeMap<String, u64>) {
    let counts: BTreeMap<String, u64> = table.iter().map(|(k, (n, _))| (k.clone(), *n)).collect();
    assert_eq!(&counts, expected);
    for (key, (n, doubled)) in table {
        assert_eq!(*doubled, 2 * n, "{key}: every entry went through the conversion once");
    }
}

#[test]
fn a_precopied_replacement_equals_a_stop_the_world_one_under_writes() {
    let (kernel, precopies) = kernel_keeping_precopies();
    let initial = initial_table(20_000);
    let ops = ops_from(7, initial.len()).filter(|op| !matches!(op, Op::Reset));
    let (ops, versions, table) = replace_under_writes(&kernel, &initial, ops, 2_000, 2_000);
    assert_switched_once(&versions);
    assert!(versions.iter().filter(|v| **v == 1).count() >= 2_000);
    assert_table_is(&table, &model(&initial, &ops));
    let precopies = precopies.lock().unwrap();
    let [(rounds, entries, in_pause)] = precopies[..] else {
        panic!("one pre-copy notice, got {precopies:?}");
    };
    eprintln!("pre-copied in {rounds} rounds, {entries} entries, {in_pause} keys in the pause");
    assert!((1..=microkernel::state::precopy::MAX_ROUNDS).contains(&rounds));
    assert!(entries > 10_000, "the map crossed before the pause");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random tables, random inserts, updates and deletes, the replacement at a random moment.
    #[test]
    fn the_state_after_a_precopy_is_the_state_at_the_switch(
        entries in 0usize..4000,
        replace_after in 0usize..3000,
        after_switch in 0usize..500,
        seed in any::<u64>(),
    ) {
        let (kernel, _) = kernel_keeping_precopies();
        let initial = initial_table(entries);
        let ops = ops_from(seed, entries);
        let (ops, versions, table) = replace_under_writes(&kernel, &initial, ops, replace_after, after_switch);
        prop_assert_eq!(versions.len(), ops.len());
        assert_switched_once(&versions);
        assert_table_is(&table, &model(&initial, &ops));
    }
}

#[test]
fn a_map_replaced_whole_during_the_copy_is_noticed() {
    let (kernel, precopies) = kernel_keeping_precopies();
    let initial = initial_table(50_000);
    let counts: PrecopyMap<String, u32> = initial.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let handle = kernel
        .register_typed(ServiceV1 {
            state: TableV1 { counts, writes: 0 },
        })
        .unwrap();
    kernel.start_all().unwrap();
    // While the snapshot's 50,000 entries cross, the handler swaps in a new map and writes one
    // entry: none of the entries that crossed may come back.
    let caller = handle.clone();
    let writer = thread::spawn(move || {
        thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(caller.call(Op::Reset).unwrap().0, 1, "reset during the copy");
        caller.call(Op::Set("fresh".into(), 3)).unwrap();
    });
    kernel.replace_at(&handle, ServiceV2::fresh()).unwrap();
    writer.join().unwrap();
    let (version, table) = handle.call(Op::Dump).unwrap();
    assert_eq!(version, 2);
    assert_table_is(&table.unwrap(), &[("fresh".to_owned(), 3)].into());
    assert!(precopies.lock().unwrap().is_empty(), "crossed stop-the-world");
}

#[test]
fn a_conversion_that_reads_the_map_crosses_the_whole_state() {
    let (kernel, precopies) = kernel_keeping_precopies();
    let initial = initial_table(5_000);
    let counts: PrecopyMap<String, u32> = initial.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let handle = kernel
        .register_typed(ServiceV1 {
            state: TableV1 { counts, writes: 0 },
        })
        .unwrap();
    kernel.start_all().unwrap();
    let new = CountingServiceV2 {
        state: CountingV2 {
            counts: PrecopyMap::new(),
            writes: 0,
            entries_at_upgrade: 0,
        },
    };
    kernel.replace_at(&handle, new).unwrap();
    let (version, table) = handle.call(Op::Dump).unwrap();
    assert_eq!(version, 2);
    let mut expected = model(&initial, &[]);
    expected.insert("#extra".to_owned(), initial.len() as u64);
    assert_table_is(&table.unwrap(), &expected);
    assert!(
        precopies.lock().unwrap().is_empty(),
        "crossed stop-the-world: no pre-copy notice"
    );
}

#[test]
fn a_failed_entry_conversion_leaves_v1_serving_with_its_current_state() {
    let (kernel, _) = kernel_keeping_precopies();
    let mut initial = initial_table(3_000);
    initial.insert("poisoned".into(), POISON);
    let counts: PrecopyMap<String, u32> = initial.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let handle = kernel
        .register_typed(ServiceV1 {
            state: TableV1 { counts, writes: 0 },
        })
        .unwrap();
    kernel.start_all().unwrap();
    let error = kernel.replace_at(&handle, ServiceV2::fresh()).unwrap_err();
    assert_eq!(error.step, Step::Upgrade, "{error}");
    assert!(error.to_string().contains("refusing the poisoned count"), "{error}");

    // v1 serves, with every entry, and keeps what it is told.
    handle.call(Op::Set("after".into(), 5)).unwrap();
    let (version, table) = handle.call(Op::Dump).unwrap();
    assert_eq!(version, 1);
    let mut expected = model(&initial, &[]);
    expected.insert("after".into(), 5);
    let table = table.unwrap();
    let counts: BTreeMap<String, u64> = table.iter().map(|(k, (n, _))| (k.clone(), *n)).collect();
    assert_eq!(counts, expected);

    // Without the poisoned entry, the next replacement goes through.
    handle.call(Op::Remove("poisoned".into())).unwrap();
    kernel.replace_at(&handle, ServiceV2::fresh()).unwrap();
    let (version, table) = handle.call(Op::Dump).unwrap();
    assert_eq!(version, 2);
    expected.remove("poisoned");
    assert_table_is(&table.unwrap(), &expected);
}

#[test]
fn a_precopy_map_encodes_as_a_hash_map() {
    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 1)]
    struct Plain {
        counts: std::collections::HashMap<String, u32>,
        writes: u64,
    }
    assert_eq!(
        <Plain as Migratable>::FINGERPRINT,
        <TableV1 as Migratable>::FINGERPRINT,
        "switching a field to PrecopyMap needs no new version"
    );
    let table = TableV1 {
        counts: [("a".to_owned(), 1), ("b".to_owned(), 2)].into(),
        writes: 3,
    };
    let bytes = microkernel::state::encode(&table).unwrap();
    let plain: Plain = microkernel::state::decode(bytes.as_bytes()).unwrap();
    assert_eq!(plain.counts, [("a".to_owned(), 1), ("b".to_owned(), 2)].into());
    assert_eq!(plain.writes, 3);
}

/// A first version without a `#[precopy]` map, and the version that starts pre-copying.
mod starting {
    use super::*;

    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 1)]
    pub struct PlainV1 {
        pub counts: std::collections::HashMap<String, u32>,
    }

    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 2, from = PlainV1)]
    pub struct StartV2 {
        #[precopy(start)]
        pub counts: PrecopyMap<String, u32>,
    }

    impl From<PlainV1> for StartV2 {
        fn from(v1: PlainV1) -> Self {
            Self {
                counts: v1.counts.into(),
            }
        }
    }

    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 3, from = StartV2)]
    pub struct StartV3 {
        #[precopy]
        pub counts: PrecopyMap<String, u64>,
    }

    impl From<StartV2> for StartV3 {
        fn from(v2: StartV2) -> Self {
            Self {
                counts: v2.counts.upgrade(),
            }
        }
    }

    macro_rules! counter {
        ($name:ident, $state:ty, $bump:expr) => {
            #[derive(microkernel::Service)]
            #[service(name = "start")]
            pub struct $name {
                #[state]
                pub state: $state,
            }

            impl Handler for $name {
                type Request = String;
                type Response = Vec<(String, u64)>;

                /// Counts `key` (unless empty); answers every count, sorted.
                fn handle(&mut self, key: String, _: &Context<'_>) -> Vec<(String, u64)> {
                    let bump: fn(&mut $state, String) = $bump;
                    if !key.is_empty() {
                        bump(&mut self.state, key);
                    }
                    let mut all: Vec<_> = self
                        .state
                        .counts
                        .iter()
                        .map(|(k, v)| (k.clone(), u64::from(*v)))
                        .collect();
                    all.sort();
                    all
                }
            }
        };
    }

    counter!(PlainCounter, PlainV1, |state, key| *state
        .counts
        .entry(key)
        .or_insert(0) += 1);
    counter!(StartCounter, StartV2, |state, key| *state
        .counts
        .get_or_insert_with(key, || 0) +=
        1);
    counter!(NextCounter, StartV3, |state, key| *state
        .counts
        .get_or_insert_with(key, || 0) +=
        1);
}

#[test]
fn pre_copy_begins_with_the_version_marked_start() {
    use starting::*;
    let (kernel, precopies) = kernel_keeping_precopies();
    let counts = (0..2_000).map(|i| (format!("k{i}"), i)).collect();
    let handle = kernel
        .register_typed(PlainCounter {
            state: PlainV1 { counts },
        })
        .unwrap();
    kernel.start_all().unwrap();
    handle.call("k1".into()).unwrap();

    // v1 has no pre-copied map: this one crosses stop-the-world.
    let fresh = StartV2 {
        counts: PrecopyMap::new(),
    };
    kernel.replace_at(&handle, StartCounter { state: fresh }).unwrap();
    assert!(precopies.lock().unwrap().is_empty());
    handle.call("k2".into()).unwrap();

    // v2 → v3 pre-copies.
    let fresh = StartV3 {
        counts: PrecopyMap::new(),
    };
    kernel.replace_at(&handle, NextCounter { state: fresh }).unwrap();
    assert_eq!(precopies.lock().unwrap().len(), 1);
    let all = handle.call(String::new()).unwrap();
    let expected: Vec<(String, u64)> = {
        let mut e: Vec<_> = (0..2_000u64)
            .map(|i| (format!("k{i}"), i + u64::from(i == 1 || i == 2)))
            .collect();
        e.sort();
        e
    };
    assert_eq!(all, expected);
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use super::*;
    use microkernel::asynchronous::{AsyncContext, AsyncHandler};

    macro_rules! async_table {
        ($name:ident, $state:ty, $version:expr, $convert:expr) => {
            #[derive(microkernel::Service)]
            #[service(name = "table")]
            struct $name {
                #[state]
                state: $state,
            }

            impl AsyncHandler for $name {
                type Request = Op;
                type Response = Answer;

                async fn handle(&mut self, op: Op, _: &AsyncContext) -> Answer {
                    let convert: fn(u32) -> _ = $convert;
                    let counts = &mut self.state.counts;
                    match op {
                        Op::Set(key, n) => drop(counts.insert(key, convert(n))),
                        Op::Remove(key) => drop(counts.remove(&key)),
                        Op::Reset => *counts = PrecopyMap::new(),
                        Op::Add(..) => unreachable!("not used here"),
                        Op::Dump => {
                            let table = counts
                                .iter()
                                .map(|(k, v)| (k.clone(), (v.count(), 2 * v.count())));
                            return ($version, Some(table.collect()));
                        }
                    }
                    ($version, None)
                }
            }
        };
    }

    /// The count an entry holds, whichever version's entry it is.
    trait Counted {
        fn count(&self) -> u64;
    }
    impl Counted for u32 {
        fn count(&self) -> u64 {
            u64::from(*self)
        }
    }
    impl Counted for Count {
        fn count(&self) -> u64 {
            assert_eq!(self.doubled, 2 * self.n, "converted once");
            self.n
        }
    }

    async_table!(AsyncV1, TableV1, 1, |n| n);
    async_table!(AsyncV2, TableV2, 2, Count::from);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_service_pre_copies_under_writes() {
        let (kernel, precopies) = kernel_keeping_precopies();
        let initial = initial_table(10_000);
        let counts: PrecopyMap<String, u32> = initial.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let handle = kernel
            .register_async_typed(AsyncV1 {
                state: TableV1 { counts, writes: 0 },
            })
            .await
            .unwrap();
        kernel.start_all_async().await.unwrap();
        let ops: Vec<Op> = ops_from(11, initial.len())
            .filter(|op| !matches!(op, Op::Add(..) | Op::Reset))
            .take(4_000)
            .collect();
        let writer = {
            let (handle, ops) = (handle.clone(), ops.clone());
            tokio::spawn(async move {
                let mut versions = Vec::new();
                for op in ops {
                    versions.push(handle.call(op).await.unwrap().0);
                }
                versions
            })
        };
        tokio::task::yield_now().await;
        let fresh = AsyncV2 {
            state: TableV2 {
                counts: PrecopyMap::new(),
                writes: 0,
            },
        };
        kernel.replace_async_at(&handle, fresh).await.unwrap();
        let versions = writer.await.unwrap();
        assert_switched_once(&versions);
        let (version, table) = handle.call(Op::Dump).await.unwrap();
        assert_eq!(version, 2);
        assert_table_is(&table.unwrap(), &model(&initial, &ops));
        assert_eq!(precopies.lock().unwrap().len(), 1, "the map crossed before the pause");
    }
}

/// Conversions that do more than carry the map: each must give what a stop-the-world
/// replacement gives (the control: the same replacement of a service not running, which crosses
/// the whole state).
mod conversions {
    use super::*;

    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 1)]
    pub struct WideV1 {
        #[precopy]
        pub counts: PrecopyMap<String, u32>,
        /// An empty second map, not pre-copied.
        pub spare: PrecopyMap<String, u32>,
        pub note: String,
    }

    /// What a v2 shows: its counts, the other maps' sizes, what the conversion saw, the note's
    /// length.
    pub type Shown = (Vec<(String, u64)>, usize, usize, u64, usize);

    macro_rules! wide_v2 {
        ($state:ident, $service:ident, |$v1:ident| $convert:expr) => {
            #[derive(Serialize, Deserialize, Migratable)]
            #[migratable(version = 2, from = WideV1)]
            pub struct $state {
                #[precopy]
                pub counts: PrecopyMap<String, Count>,
                pub spare: PrecopyMap<String, Count>,
                pub backup: PrecopyMap<String, Count>,
                pub seen: u64,
                pub note: String,
            }

            impl From<WideV1> for $state {
                fn from($v1: WideV1) -> Self {
                    $convert
                }
            }

            #[derive(microkernel::Service)]
            #[service(name = "wide")]
            pub struct $service {
                #[state]
                pub state: $state,
            }

            impl Handler for $service {
                type Request = ();
                type Response = Shown;

                fn handle(&mut self, (): (), _: &Context<'_>) -> Shown {
                    let s = &self.state;
                    let mut counts: Vec<_> = s.counts.iter().map(|(k, v)| (k.clone(), v.n)).collect();
                    counts.sort();
                    (counts, s.spare.len(), s.backup.len(), s.seen, s.note.len())
                }
            }

            impl $service {
                pub fn fresh() -> Self {
                    Self {
                        state: $state {
                            counts: PrecopyMap::new(),
                            spare: PrecopyMap::new(),
                            backup: PrecopyMap::new(),
                            seen: 0,
                            note: String::new(),
                        },
                    }
                }
            }
        };
    }

    wide_v2!(CarryV2, CarryService, |v1| CarryV2 {
        counts: v1.counts.upgrade(),
        spare: v1.spare.upgrade(),
        backup: PrecopyMap::new(),
        seen: 0,
        note: v1.note,
    });

    wide_v2!(CloneV2, CloneService, |v1| {
        let counts = v1.counts.upgrade();
        CloneV2 {
            backup: counts.clone(),
            counts,
            spare: v1.spare.upgrade(),
            seen: 0,
            note: v1.note,
        }
    });

    wide_v2!(SwapV2, SwapService, |v1| SwapV2 {
        counts: v1.spare.upgrade(),
        backup: v1.counts.upgrade(),
        spare: PrecopyMap::new(),
        seen: 0,
        note: v1.note,
    });

    wide_v2!(ThreadV2, ThreadService, |v1| {
        let seen = thread::scope(|s| s.spawn(|| v1.counts.len() as u64).join().unwrap_or(u64::MAX));
        ThreadV2 {
            counts: v1.counts.upgrade(),
            spare: v1.spare.upgrade(),
            backup: PrecopyMap::new(),
            seen,
            note: v1.note,
        }
    });

    #[derive(microkernel::Service)]
    #[service(name = "wide")]
    pub struct WideService {
        #[state]
        pub state: WideV1,
    }

    impl Handler for WideService {
        type Request = ();
        type Response = Shown;

        fn handle(&mut self, (): (), _: &Context<'_>) -> Shown {
            unreachable!("only v2 is asked")
        }
    }

    pub fn v1(entries: u32, note_bytes: usize) -> WideService {
        WideService {
            state: WideV1 {
                counts: (0..entries).map(|i| (format!("k{i}"), i)).collect(),
                spare: PrecopyMap::new(),
                note: "n".repeat(note_bytes),
            },
        }
    }

    /// What v2 shows after replacing v1 running (pre-copy if it can) and, as the control, v1
    /// not running (stop-the-world); and whether the first pre-copied.
    pub fn both<S>(new: fn() -> S, entries: u32, note_bytes: usize) -> (Shown, Shown, bool)
    where
        S: Handler<Request = (), Response = Shown>,
    {
        let (kernel, precopies) = kernel_keeping_precopies();
        let handle = kernel.register_typed(v1(entries, note_bytes)).unwrap();
        kernel.start_all().unwrap();
        kernel.replace_at(&handle, new()).unwrap();
        let running = handle.call(()).unwrap();
        let precopied = !precopies.lock().unwrap().is_empty();

        let control = Kernel::new();
        let handle = control.register_typed(v1(entries, note_bytes)).unwrap();
        control.replace_at(&handle, new()).unwrap();
        control.start_all().unwrap();
        (running, handle.call(()).unwrap(), precopied)
    }
}

#[test]
fn conversions_that_copy_move_or_read_the_map_elsewhere_give_the_stop_the_world_state() {
    use conversions::*;
    let (running, control, precopied) = both(CarryService::fresh, 5_000, 10);
    assert_eq!(running, control);
    assert!(precopied, "a plain carry pre-copies");
    assert_eq!(running.0.len(), 5_000);

    // A copy of the placeholder is seen: the copy holds every entry, as stop-the-world gives.
    let (running, control, precopied) = both(CloneService::fresh, 5_000, 10);
    assert_eq!(running, control);
    assert_eq!(running.2, 5_000, "the backup holds the entries");
    assert!(!precopied);

    // The #[precopy] field gets the (empty) spare map, the entries go to another field.
    let (running, control, precopied) = both(SwapService::fresh, 5_000, 10);
    assert_eq!(running, control);
    assert_eq!((running.0.len(), running.2), (0, 5_000));
    assert!(!precopied);

    // Read on another thread: still seen.
    let (running, control, precopied) = both(ThreadService::fresh, 5_000, 10);
    assert_eq!(running, control);
    assert_eq!(running.3, 5_000, "the conversion saw every entry");
    assert!(!precopied);
}

#[test]
fn a_large_rest_of_state_still_pre_copies() {
    use conversions::*;
    // 300 KB besides the map: more than a crossing's pipelining threshold.
    let (running, control, precopied) = both(CarryService::fresh, 5_000, 300_000);
    assert_eq!(running, control);
    assert_eq!(running.4, 300_000);
    assert!(precopied, "the map crossed before the pause");
}

/// A service whose handler starts another service: a lifecycle call from inside a handler.
mod starts_another {
    use super::*;

    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 1)]
    pub struct BigV1 {
        #[precopy]
        pub counts: PrecopyMap<String, u32>,
    }

    #[derive(Serialize, Deserialize, Migratable)]
    #[migratable(version = 2, from = BigV1)]
    pub struct BigV2 {
        #[precopy]
        pub counts: PrecopyMap<String, u64>,
    }

    impl From<BigV1> for BigV2 {
        fn from(v1: BigV1) -> Self {
            Self {
                counts: v1.counts.upgrade(),
            }
        }
    }

    macro_rules! starter {
        ($name:ident, $state:ty) => {
            #[derive(microkernel::Service)]
            #[service(name = "starter")]
            pub struct $name {
                #[state]
                pub state: $state,
            }

            impl Handler for $name {
                type Request = ();
                type Response = Result<usize, String>;

                /// Starts "other", then answers how many entries it holds.
                fn handle(&mut self, (): (), ctx: &Context<'_>) -> Result<usize, String> {
                    let kernel = ctx.kernel().ok_or("no kernel")?;
                    kernel.start("other").map_err(|e| e.to_string())?;
                    Ok(self.state.counts.len())
                }
            }
        };
    }

    starter!(StarterV1, BigV1);
    starter!(StarterV2, BigV2);

    #[derive(microkernel::Service, Default)]
    #[service(name = "other")]
    pub struct Other;

    impl Handler for Other {
        type Request = ();
        type Response = ();
        fn handle(&mut self, (): (), _: &Context<'_>) {}
    }
}

#[test]
fn a_handler_may_start_a_service_while_its_map_is_copied() {
    use starts_another::*;
    let kernel = Kernel::new();
    kernel.register_typed(Other).unwrap();
    let counts = (0..100_000).map(|i| (format!("k{i}"), i)).collect();
    let handle = kernel
        .register_typed(StarterV1 {
            state: BigV1 { counts },
        })
        .unwrap();
    kernel.start_all().unwrap();
    let caller = handle.clone();
    let calls = thread::spawn(move || {
        // Calls made while the 100,000 entries cross, each handler taking the kernel's
        // lifecycle lock (`start` of a running service does nothing else).
        (0..20)
            .map(|_| {
                thread::sleep(std::time::Duration::from_millis(2));
                caller.call(()).unwrap()
            })
            .collect::<Vec<_>>()
    });
    let fresh = StarterV2 {
        state: BigV2 {
            counts: PrecopyMap::new(),
        },
    };
    kernel.replace_at(&handle, fresh).unwrap();
    let answers = calls.join().unwrap();
    assert!(answers.iter().all(|a| a == &Ok(100_000)), "{answers:?}");
}
