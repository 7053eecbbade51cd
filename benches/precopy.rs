//! The pre-copy workload of issue 24, shared by `examples/bench_peers.rs` (`--precopy`) and
//! `examples/bench_scale.rs` (`--precopy`): the W3 table (`"key-<i>"` → `i * 7919`) held in a
//! `#[precopy]` `PrecopyMap`, replaced v1 → v2 while
//!
//! - a writer thread sets random entries at a steady rate chosen so that about `fraction` of
//!   the entries (1 % by default) are written during the copy (the rate comes from a first,
//!   unloaded replacement's duration), and
//! - a prober thread reads an entry every 200 µs, timing each call: the p99 and the maximum of
//!   call latency during the replacement.
//!
//! The pause is the kernel's own figure (`Notice::Precopied::pause`: the slot held from the
//! last round to the switch).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use microkernel::{Context, Handle, Handler, Kernel, Migratable, Notice, PrecopyMap};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 1)]
pub struct PrecopyV1 {
    #[precopy]
    pub table: PrecopyMap<String, u64>,
}

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 2, from = PrecopyV1)]
pub struct PrecopyV2 {
    #[precopy]
    pub table: PrecopyMap<String, u64>,
    pub writes: u64,
}

impl From<PrecopyV1> for PrecopyV2 {
    fn from(v1: PrecopyV1) -> Self {
        Self {
            table: v1.table.upgrade(),
            writes: 0,
        }
    }
}

/// A call: set entry `i`, or read it.
#[derive(Clone, Copy)]
pub enum Op {
    Write(u64, u64),
    Read(u64),
}

macro_rules! table_service {
    ($name:ident, $state:ty) => {
        #[derive(microkernel::Service, Default)]
        #[service(name = "table")]
        pub struct $name {
            #[state]
            pub state: $state,
        }

        impl Handler for $name {
            type Request = Op;
            type Response = u64;

            fn handle(&mut self, op: Op, _: &Context<'_>) -> u64 {
                match op {
                    Op::Write(i, value) => self.state.table.insert(key(i), value).unwrap_or(0),
                    Op::Read(i) => self.state.table.get(&key(i)).copied().unwrap_or(0),
                }
            }
        }
    };
}

table_service!(TableV1, PrecopyV1);
table_service!(TableV2, PrecopyV2);

fn key(i: u64) -> String {
    format!("key-{i}")
}

/// One pre-copied replacement under load.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The kernel's pause (slot held from the last round to the switch).
    pub pause: Duration,
    /// The whole `replace` call, rounds included.
    pub replace: Duration,
    /// Call latency during the replacement, as the prober saw it.
    pub p99: Duration,
    pub max: Duration,
    /// Writes during the replacement, in % of the entries.
    pub written_pct: f64,
    pub rounds: u32,
    /// Keys carried in the pause.
    pub in_pause: usize,
}

/// What the kernel's `Notice::Precopied` said: the pause, the rounds, the keys in the pause.
type Noticed = Arc<Mutex<Option<(Duration, u32, usize)>>>;

/// A kernel serving `TableV1` with `entries` entries, and what it notices of pre-copies.
fn kernel(entries: u64) -> (Kernel, Handle<Op, u64>, Noticed) {
    let seen = Arc::new(Mutex::new(None));
    let keep = Arc::clone(&seen);
    let kernel = Kernel::builder()
        .observer(move |notice| {
            if let Notice::Precopied {
                pause,
                rounds,
                in_pause,
                ..
            } = notice
            {
                *keep.lock().unwrap() = Some((*pause, *rounds, *in_pause));
            }
        })
        .build()
        .expect("kernel");
    let table = (0..entries).map(|i| (key(i), i * 7919)).collect();
    let handle = kernel
        .register_typed(TableV1 {
            state: PrecopyV1 { table },
        })
        .expect("register");
    kernel.start_all().expect("start");
    (kernel, handle, seen)
}

/// How long a pre-copied replacement of `entries` entries takes with no load: what the writer's
/// rate is set from.
pub fn unloaded_replace(entries: u64) -> Duration {
    let (kernel, handle, _) = kernel(entries);
    let started = Instant::now();
    kernel.replace_at(&handle, TableV2::default()).expect("replace");
    started.elapsed()
}

/// One pre-copied replacement of `entries` entries while `fraction` of them are written over
/// `copy` (an unloaded replacement's duration).
pub fn precopy_swap(entries: u64, fraction: f64, copy: Duration) -> Outcome {
    let (kernel, handle, seen) = kernel(entries);
    let stop = Arc::new(AtomicBool::new(false));
    let replacing = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let per_second = fraction * entries as f64 / copy.as_secs_f64();
    let writer = {
        let (handle, stop, writes) = (handle.clone(), Arc::clone(&stop), Arc::clone(&writes));
        thread::spawn(move || write_steadily(&handle, entries, per_second, &stop, &writes))
    };
    let prober = {
        let (handle, stop, replacing) = (handle.clone(), Arc::clone(&stop), Arc::clone(&replacing));
        thread::spawn(move || probe(&handle, entries, &stop, &replacing))
    };
    thread::sleep(Duration::from_millis(20));
    let before = writes.load(Ordering::Relaxed);
    replacing.store(true, Ordering::Release);
    let started = Instant::now();
    kernel.replace_at(&handle, TableV2::default()).expect("replace");
    let replace = started.elapsed();
    replacing.store(false, Ordering::Release);
    let written = writes.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Release);
    writer.join().expect("writer");
    let mut latencies = prober.join().expect("prober");
    latencies.sort();
    let (pause, rounds, in_pause) = seen.lock().unwrap().expect("the replacement pre-copied");
    Outcome {
        pause,
        replace,
        p99: quantile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        written_pct: 100.0 * written as f64 / entries.max(1) as f64,
        rounds,
        in_pause,
    }
}

/// Sets random entries at `per_second`, in a burst every millisecond.
fn write_steadily(handle: &Handle<Op, u64>, entries: u64, per_second: f64, stop: &AtomicBool, writes: &AtomicU64) {
    let started = Instant::now();
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut done = 0u64;
    while !stop.load(Ordering::Acquire) {
        let due = (started.elapsed().as_secs_f64() * per_second) as u64;
        while done < due {
            handle.call(Op::Write(random.below(entries), done)).expect("write");
            done += 1;
            writes.store(done, Ordering::Relaxed);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Reads a random entry every 200 µs; returns the latencies of the calls made while
/// `replacing`.
fn probe(handle: &Handle<Op, u64>, entries: u64, stop: &AtomicBool, replacing: &AtomicBool) -> Vec<Duration> {
    let mut random = Xorshift(0x2545_f491_4f6c_dd1d);
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let during = replacing.load(Ordering::Acquire);
        let started = Instant::now();
        std::hint::black_box(handle.call(Op::Read(random.below(entries))).expect("read"));
        if during {
            latencies.push(started.elapsed());
        }
        thread::sleep(Duration::from_micros(200));
    }
    latencies
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
