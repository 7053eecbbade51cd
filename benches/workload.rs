//! The workloads of `../shared/peers/README.md` (W1–W3), shared by the criterion benches and
//! `examples/bench_peers.rs` so both measure exactly the same work.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::{BoxError, Context, Event, Handle, Handler, Kernel, Migratable, Reply};
use serde::{Deserialize, Serialize};

/// An echo service over a state holding a counter and, for W3, a table of type `$table`: the
/// same handler for every table type, so that only the state's encoding differs.
macro_rules! bench_echo {
    ($(#[$doc:meta])* $state:ident, $echo:ident, $table:ty $(, #[$field:meta])?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
        #[migratable(version = 1)]
        pub struct $state {
            pub count: u64,
            $(#[$field])?
            pub table: $table,
        }

        /// The benchmark's echo: adds 1 per request, replies with a freshly built reply.
        #[derive(microkernel::Service, Default)]
        #[service(name = "echo")]
        pub struct $echo {
            #[state]
            pub state: $state,
        }

        impl Handler for $echo {
            type Request = Event;
            type Response = Reply;

            fn start(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
                Ok(())
            }

            fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
                match &*event.kind {
                    // Control requests of the harness; they do not count.
                    "count" => {
                        return Reply::ok("count", format!("{} {}", self.state.count, self.state.table.len()));
                    }
                    "fill" => {
                        let entries = event.content.parse().expect("an entry count");
                        self.state.table = table(entries).into_iter().collect();
                        return Reply::ok("filled", "");
                    }
                    _ => {}
                }
                echo(&mut self.state.count, &event)
            }
        }
    };
}

bench_echo!(
    /// The headline state: what a user writes, a plain `HashMap<String, u64>` (the Go
    /// design's `map[string]uint64`, OTP's map).
    BenchState,
    BenchEcho,
    HashMap<String, u64>
);

bench_echo!(
    /// An ordered map decoded by serde entry by entry.
    TreeState,
    TreeEcho,
    BTreeMap<String, u64>
);

bench_echo!(
    /// An ordered map decoded in one pass by `state::bulk_btree_map`.
    BulkTreeState,
    BulkTreeEcho,
    BTreeMap<String, u64>,
    #[serde(with = "microkernel::state::bulk_btree_map")]
);

bench_echo!(
    /// The headline table with one attribute: decoded by `state::hash_map` into a table sized
    /// once.
    SizedHashState,
    SizedHashEcho,
    HashMap<String, u64>,
    #[serde(with = "microkernel::state::hash_map")]
);

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

impl microkernel::Service for NamedEcho {
    type State = BenchState;
    fn name(&self) -> &str {
        self.name
    }
    fn dependencies(&self) -> Vec<String> {
        Vec::new()
    }
    fn export_state(&self) -> Result<&BenchState, BoxError> {
        Ok(&self.state)
    }
    fn import_state(&mut self, state: BenchState) -> Result<(), BoxError> {
        self.state = state;
        Ok(())
    }
}

impl Handler for NamedEcho {
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
    kernel_with::<BenchEcho>()
}

/// [`kernel`] serving the echo `E`.
pub fn kernel_with<E>() -> (Kernel, Handle)
where
    E: Handler<Request = Event, Response = Reply> + Default,
{
    let key = Key::generate(Algorithm::Aes256Gcm).expect("OS RNG");
    let kernel = Kernel::builder()
        .sealer(Sealer::new(Keyring::new(1, key)))
        .build()
        .unwrap();
    let handle = kernel.register(E::default()).expect("register");
    kernel.start_all().expect("start");
    (kernel, handle)
}

/// The W3 table: `"key-<i>"` → `i * 7919`.
pub fn table(entries: u64) -> BTreeMap<String, u64> {
    (0..entries).map(|i| (format!("key-{i}"), i * 7919)).collect()
}

/// Replaces echo by a new instance, timing the replace call.
pub fn timed_swap(kernel: &Kernel) -> Duration {
    timed_swap_with::<BenchEcho>(kernel)
}

/// [`timed_swap`] to a new `E`.
pub fn timed_swap_with<E>(kernel: &Kernel) -> Duration
where
    E: Handler<Request = Event, Response = Reply> + Default,
{
    let started = Instant::now();
    kernel.replace(E::default()).expect("replace");
    started.elapsed()
}

/// W3's floor: the same state crossing with no kernel at all — `postcard` encodes a
/// [`BenchState`] of `entries` entries and decodes it again on this thread, with no sealing, no
/// slot, no reaper (each old state is dropped outside the timed part). Returns the median of
/// `rounds` crossings: what serde, postcard and the allocator alone cost for this state.
pub fn state_crossing_floor(entries: u64, rounds: usize) -> Duration {
    let mut state = BenchState {
        count: 0,
        table: table(entries).into_iter().collect(),
    };
    let samples = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let bytes = postcard::to_allocvec(&state).expect("encode");
            let crossed: BenchState = postcard::from_bytes(&bytes).expect("decode");
            let elapsed = started.elapsed();
            assert_eq!(crossed.table.len(), entries as usize, "the table crossed whole");
            drop(std::mem::replace(&mut state, crossed));
            elapsed
        })
        .collect();
    median(samples)
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
    // Fresh names each time, so that one kernel can serve several runs.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let names: Vec<&'static str> = (0..threads)
        .map(|i| &*Box::leak(format!("echo-own-{run}-{i}").into_boxed_str()))
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
            // Each caller owns its handle, as a thread serving requests would.
            let handle = handle.clone();
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

/// W1c's other limit: the W1 handler behind one bare `parking_lot::Mutex` (the lock a slot is
/// built on) shared by `threads` callers. Returns calls per second.
pub fn bare_parking_lot_calls(threads: u64, total: u64) -> f64 {
    let lock = parking_lot::Mutex::new(0u64);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let lock = &lock;
            s.spawn(move || {
                let request = request();
                for _ in 0..total / threads {
                    // As the peers' `limit-mutex` loop: the reply is dropped with the lock held.
                    let mut count = lock.lock();
                    std::hint::black_box(echo(&mut count, &request.clone()));
                }
            });
        }
    });
    (total / threads * threads) as f64 / started.elapsed().as_secs_f64()
}

/// Where a bare-lock limit drops the W1 reply.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ReplyDrop {
    /// With the lock held, as the peers' `limit-mutex` loop
    /// (`black_box(lock.lock().unwrap().handle(req()))`): the reply's free is inside the critical
    /// section, and the lock is free only for the loop's few instructions between two calls.
    UnderLock,
    /// After the lock is released, as it must be for any call that hands its reply to the
    /// caller (ours): the free runs outside, and a waiter can take the lock meanwhile.
    AfterUnlock,
}

/// The physical limit beside our figures, in the same run: the W1 handler behind a bare
/// `std::sync::Mutex`, either one shared by `threads` callers or one per caller, the reply
/// dropped where `reply_drop` says.
pub fn bare_mutex_calls(threads: u64, total: u64, shared: bool, reply_drop: ReplyDrop) -> f64 {
    use std::sync::Mutex;
    /// One lock per cache line, so that independent locks share nothing (as slots do).
    #[repr(align(128))]
    struct Padded(Mutex<u64>);
    let locks = [Padded(Mutex::new(0))];
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let shared_lock = &locks[0].0;
            s.spawn(move || {
                // An own lock is made on the caller's thread, as a service's slot would be
                // its own: nothing of it shares a cache line with another caller's.
                let own = Padded(Mutex::new(0));
                let lock = if shared { shared_lock } else { &own.0 };
                let request = request();
                for _ in 0..total / threads {
                    let mut count = lock.lock().expect("lock");
                    let reply = echo(&mut count, &request.clone());
                    // Under the lock, waiters give up spinning and sleep, so the lock stays
                    // with the thread running: that shape is what makes the peers' figure high.
                    if reply_drop == ReplyDrop::AfterUnlock {
                        drop(count);
                    }
                    std::hint::black_box(reply);
                }
            });
        }
    });
    (total / threads * threads) as f64 / started.elapsed().as_secs_f64()
}
