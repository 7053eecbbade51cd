//! The workloads of `../shared/peers/README.md` (W1–W3), shared by the criterion benches and
//! `examples/bench_peers.rs` so both measure exactly the same work.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::{BoxError, Context, Event, Handle, Kernel, Migratable, Reply, Service};
use serde::{Deserialize, Serialize};

/// The echo state of the benchmarks: a counter and, for W3, a table. The table is an ordered
/// map decoded in one pass (see `state::bulk_btree_map` and BENCHMARKS.md for the figures of a
/// plain `HashMap`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
pub struct BenchState {
    pub count: u64,
    #[serde(with = "microkernel::state::bulk_btree_map")]
    pub table: BTreeMap<String, u64>,
}

/// The benchmark's echo: adds 1 per request, replies with a freshly built reply.
#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
pub struct BenchEcho {
    #[state]
    pub state: BenchState,
}

impl Service for BenchEcho {
    type Request = Event;
    type Response = Reply;

    fn start(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
        Ok(())
    }

    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        match &*event.kind {
            // Control requests of the harness; they do not count.
            "count" => return Reply::ok("count", format!("{} {}", self.state.count, self.state.table.len())),
            "fill" => {
                self.state.table = table(event.content.parse().expect("an entry count"));
                return Reply::ok("filled", "");
            }
            _ => {}
        }
        echo(&mut self.state.count, &event)
    }
}

/// The W1 handler's work: count, and build a fresh reply.
pub fn echo(count: &mut u64, event: &Event) -> Reply {
    *count += 1;
    let mut data = String::with_capacity(7 + event.from.len() + event.content.len());
    data.push_str("from ");
    data.push_str(&event.from);
    data.push_str(": ");
    data.push_str(&event.content);
    Reply::ok("echo service handled", data)
}

/// The bench echo under another name, for several services in one kernel.
pub struct NamedEcho {
    pub name: &'static str,
    pub state: BenchState,
}

impl microkernel::ServiceMeta for NamedEcho {
    type State = BenchState;
    fn name(&self) -> &str {
        self.name
    }
    fn dependencies(&self) -> &[&str] {
        &[]
    }
    fn export_state(&self) -> Result<&BenchState, BoxError> {
        Ok(&self.state)
    }
    fn import_state(&mut self, state: BenchState) -> Result<(), BoxError> {
        self.state = state;
        Ok(())
    }
}

impl Service for NamedEcho {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        echo(&mut self.state.count, &event)
    }
}

/// The W1 request.
pub fn request() -> Event {
    Event::new("echo", "bench", "unknown", "Hello, Log!")
}

/// A kernel sealing with a fresh AES-256-GCM key, serving the bench echo.
pub fn kernel() -> (Kernel, Handle) {
    let key = Key::generate(Algorithm::Aes256Gcm).expect("OS RNG");
    let kernel = Kernel::builder().sealer(Sealer::new(Keyring::new(1, key))).build();
    let handle = kernel.register(BenchEcho::default()).expect("register");
    kernel.start_all().expect("start");
    (kernel, handle)
}

/// The W3 table: `"key-<i>"` → `i * 7919`.
pub fn table(entries: u64) -> BTreeMap<String, u64> {
    (0..entries).map(|i| (format!("key-{i}"), i * 7919)).collect()
}

/// Replaces echo by a new instance, timing the replace call.
pub fn timed_swap(kernel: &Kernel) -> Duration {
    let started = Instant::now();
    kernel.replace(BenchEcho::default()).expect("replace");
    started.elapsed()
}

/// The count and the table's length, as the service reports them.
pub fn count_and_entries(handle: &Handle) -> (u64, usize) {
    let reply = handle.call(Event::new("echo", "bench", "count", "")).expect("count");
    let (count, entries) = reply.data.split_once(' ').expect("two numbers");
    (count.parse().expect("count"), entries.parse().expect("entries"))
}

/// Fills the table with `entries` entries.
pub fn fill(handle: &Handle, entries: u64) {
    handle
        .call(Event::new("echo", "bench", "fill", entries.to_string()))
        .expect("fill");
}

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// W1c: `threads` callers share one service through clones of its handle, `total / threads`
/// calls each. Returns calls per second.
pub fn concurrent_calls(handle: &Handle, threads: u64, total: u64) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let handle = handle.clone();
            s.spawn(move || {
                let request = request();
                for _ in 0..total / threads {
                    std::hint::black_box(handle.call(request.clone()).expect("call"));
                }
            });
        }
    });
    (total / threads * threads) as f64 / started.elapsed().as_secs_f64()
}

/// W1c with every `every`-th call timed (so that timing does not dominate), while `beside`
/// runs on a thread of its own until the callers are done. Returns the sampled latencies.
pub fn sampled_concurrent_calls(
    handle: &Handle,
    threads: u64,
    total: u64,
    every: u64,
    beside: impl Fn(&std::sync::atomic::AtomicBool) + Sync,
) -> Vec<Duration> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    let samples = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| beside(&done));
        let callers: Vec<_> = (0..threads)
            .map(|_| {
                let handle = handle.clone();
                let samples = &samples;
                s.spawn(move || {
                    let request = request();
                    let mut mine = Vec::with_capacity((total / threads / every) as usize + 1);
                    for i in 0..total / threads {
                        if i % every == 0 {
                            let started = Instant::now();
                            std::hint::black_box(handle.call(request.clone()).expect("call"));
                            mine.push(started.elapsed());
                        } else {
                            std::hint::black_box(handle.call(request.clone()).expect("call"));
                        }
                    }
                    samples.lock().expect("samples").extend(mine);
                })
            })
            .collect();
        for caller in callers {
            caller.join().expect("caller");
        }
        done.store(true, Ordering::Release);
    });
    samples.into_inner().expect("samples")
}

/// The `q`-quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// `threads` callers, each calling a service of its own: through its handle, or by name.
/// Returns calls per second.
pub fn independent_calls(kernel: &Kernel, threads: u64, total: u64, by_name: bool) -> f64 {
    let names: Vec<&'static str> = (0..threads)
        .map(|i| &*Box::leak(format!("echo-own-{i}-{by_name}").into_boxed_str()))
        .collect();
    let handles: Vec<Handle> = names
        .iter()
        .map(|name| {
            kernel
                .register(NamedEcho {
                    name,
                    state: BenchState::default(),
                })
                .expect("register")
        })
        .collect();
    kernel.start_all().expect("start");
    let started = Instant::now();
    std::thread::scope(|s| {
        for (name, handle) in names.iter().zip(&handles) {
            s.spawn(move || {
                let request = Event::new(*name, "bench", "unknown", "Hello, Log!");
                for _ in 0..total / threads {
                    let reply = if by_name {
                        kernel.call(name, request.clone())
                    } else {
                        handle.call(request.clone())
                    };
                    std::hint::black_box(reply.expect("call"));
                }
            });
        }
    });
    (total / threads * threads) as f64 / started.elapsed().as_secs_f64()
}

/// The physical limit beside our figures, in the same run: the W1 handler behind a bare
/// `std::sync::Mutex`, either one shared by `threads` callers or one per caller.
pub fn bare_mutex_calls(threads: u64, total: u64, shared: bool) -> f64 {
    use std::sync::Mutex;
    let locks: Vec<Mutex<u64>> = (0..threads).map(|_| Mutex::new(0)).collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads as usize {
            let lock = if shared { &locks[0] } else { &locks[t] };
            s.spawn(move || {
                let request = request();
                for _ in 0..total / threads {
                    let event = request.clone();
                    let mut count = lock.lock().expect("lock");
                    std::hint::black_box(echo(&mut count, &event));
                }
            });
        }
    });
    (total / threads * threads) as f64 / started.elapsed().as_secs_f64()
}
