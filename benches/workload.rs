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
        self.state.count += 1;
        let mut data = String::with_capacity(7 + event.from.len() + event.content.len());
        data.push_str("from ");
        data.push_str(&event.from);
        data.push_str(": ");
        data.push_str(&event.content);
        Reply::ok("echo service handled", data)
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
