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
struct Count {
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
    let ops = ops_from(7, initial.len());
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
