//! What several nodes cost, on loopback against a real `nats-server` (started here, as the tests
//! start theirs): a cross-node call against a raw request/reply of the same payload, a
//! handover's pause as a caller sees it, the fenced state write, and write-through.
//!
//! ```sh
//! cargo run --release -p kernel-nats --example bench_nats
//! ```

#[path = "../tests/counter/mod.rs"]
mod counter;
#[path = "../tests/server/mod.rs"]
mod server;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kernel_core::asynchronous::{AsyncContext, AsyncHandler};
use kernel_core::store::StateStore;
use kernel_core::store::conformance::object;
use kernel_core::{Event, Kernel, LifecycleError, Reply};
use kernel_nats::{NatsStore, NatsStoreOptions, NodeOptions, calls};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let server = server::NatsServer::start().ok_or("nats-server is not on PATH (apt-get install -y nats-server)")?;
    let version = std::process::Command::new("nats-server").arg("--version").output()?;
    println!("server: {}", String::from_utf8_lossy(&version.stdout).trim());
    let url = server.url();
    calls_against_raw(&url).await?;
    writes(&url).await?;
    let key = counter::shared_key();
    handovers(&url, &key, "small state (8 bytes)", 1).await?;
    handovers(&url, &key, "1 MiB state", 1 << 20).await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<44} n={:<5} mean {:>9.1?}  p50 {:>9.1?}  p99 {:>9.1?}",
        samples.len(),
        mean,
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );
    mean
}

/// A raw request/reply echoing the payload, against our call of the counter on another node
/// (its kernel, headers, shape check and record of answers), and with write-through. The kinds
/// alternate in rounds, so that a change of the machine's load falls on both alike; the
/// overhead is the median of the rounds' ratios of means.
async fn calls_against_raw(url: &str) -> Result<(), Error> {
    const ROUNDS: usize = 12;
    const PER_ROUND: usize = 500;
    let payload = postcard::to_allocvec(&counter::count())?;
    let responder = async_nats::connect(url).await?;
    let mut subscription = responder.subscribe("raw.echo").await?;
    let echo = tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, message.payload).await;
            }
        }
    });
    let client = async_nats::connect(url).await?;
    let key = counter::shared_key();
    let plain_node = counter::node_with(url, "plain", &key, NodeOptions::default()).await;
    let wt_node = counter::node_with(url, "wt", &key, NodeOptions::default().write_through(true)).await;
    let time = |n: usize| {
        let client = client.clone();
        let payload = payload.clone();
        move |ours: bool| {
            let (client, payload) = (client.clone(), payload.clone());
            async move {
                let mut samples = Vec::with_capacity(n);
                for _ in 0..n {
                    let started = Instant::now();
                    if ours {
                        calls::call(&client, counter::count(), Duration::from_secs(5)).await?;
                    } else {
                        client.request("raw.echo", payload.clone().into()).await?;
                    }
                    samples.push(started.elapsed());
                }
                Ok::<_, Error>(samples)
            }
        }
    };
    let run = time(PER_ROUND);
    let (mut raw, mut ours, mut wt, mut ratios, mut wt_extra) = (vec![], vec![], vec![], vec![], vec![]);
    let mean = |s: &[Duration]| s.iter().sum::<Duration>().as_secs_f64() / s.len() as f64;
    for _ in 0..ROUNDS {
        let r = run(false).await?;
        let owned = plain_node
            .take_over("counter", Duration::from_secs(5), counter::register_v1)
            .await?;
        let o = run(true).await?;
        owned.hand_over().await?;
        let owned = wt_node
            .take_over("counter", Duration::from_secs(5), counter::register_v1)
            .await?;
        let w = run(true).await?;
        owned.hand_over().await?;
        ratios.push(mean(&o) / mean(&r));
        wt_extra.push(mean(&w) - mean(&o));
        raw.extend(r);
        ours.extend(o);
        wt.extend(w);
    }
    echo.abort();
    summary("raw async-nats request/reply", raw);
    summary("cross-node call (calls::call)", ours);
    summary("cross-node call, write-through", wt);
    ratios.sort_by(f64::total_cmp);
    wt_extra.sort_by(f64::total_cmp);
    println!(
        "  overhead of a cross-node call over raw request/reply, median of {ROUNDS} alternating rounds: {:+.1}% (rounds {:+.1}% .. {:+.1}%); write-through adds {:.1} us per call",
        (ratios[ROUNDS / 2] - 1.0) * 100.0,
        (ratios[0] - 1.0) * 100.0,
        (ratios[ROUNDS - 1] - 1.0) * 100.0,
        wt_extra[ROUNDS / 2] * 1e6
    );
    Ok(())
}

/// The fenced write of a saved state (a compare-and-set on the entry's revision).
async fn writes(url: &str) -> Result<(), Error> {
    let client = async_nats::connect(url).await?;
    let store = NatsStore::open(client, "bench-writes", NatsStoreOptions::default()).await?;
    for (label, size, n) in [("1 KiB", 1 << 10, 500), ("1 MiB (object store)", 1 << 20, 30)] {
        let payload = vec![5u8; size];
        let service = format!("w{size}");
        let mut samples = Vec::with_capacity(n);
        for generation in 1..=n as u64 {
            let sealed = object(&service, generation, &payload);
            let started = Instant::now();
            store.save(&service, sealed).await?;
            samples.push(started.elapsed());
        }
        summary(&format!("fenced state write, {label}"), samples);
    }
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize, microkernel::Migratable, Default)]
#[migratable(version = 1)]
struct Blob {
    n: u64,
    data: Vec<u8>,
}

#[derive(microkernel::Service, Default)]
#[service(name = "blob")]
struct BlobService {
    #[state]
    blob: Blob,
    /// The node it runs on, in every reply.
    node: String,
}

impl AsyncHandler for BlobService {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, event: Event, _: &AsyncContext) -> Reply {
        if &*event.kind == "fill" {
            self.blob.data = vec![9; event.content.parse().unwrap_or(0)];
        }
        self.blob.n += 1;
        Reply::ok(self.node.clone(), self.blob.n.to_string())
    }
}

async fn register_blob(kernel: Kernel, node: String) -> Result<(), LifecycleError> {
    let service = BlobService {
        node,
        ..Default::default()
    };
    kernel.register_async(service).await.map(drop)
}

/// The pause a caller calling without pause sees: from the start of `hand_over` on the owner
/// (it stops taking requests) to the first reply from the next owner.
async fn handovers(url: &str, key: &kernel_core::seal::Key, label: &str, size: usize) -> Result<(), Error> {
    const HANDOVERS: usize = 24;
    let options = || {
        NodeOptions::default()
            .claims_bucket("bench-owners")
            .poll(Duration::from_millis(2))
    };
    let nodes = [
        counter::node_with(url, "bench-a", key, options()).await,
        counter::node_with(url, "bench-b", key, options()).await,
    ];
    let take = |i: usize| {
        let node = nodes[i % 2].clone();
        async move {
            let name = node.name().to_owned();
            node.take_over("blob", Duration::from_secs(10), move |k| register_blob(k, name))
                .await
        }
    };
    let client = async_nats::connect(url).await?;
    let mut owned = take(0).await?;
    let fill = Event::new("blob", "bench", "fill", size.to_string());
    calls::call(&client, fill, Duration::from_secs(5)).await?;

    // The caller: replies with when they came and from which node.
    let (tx, mut replies) = tokio::sync::mpsc::unbounded_channel();
    let caller = tokio::spawn(async move {
        loop {
            let reply = calls::call(
                &client,
                Event::new("blob", "bench", "count", ""),
                Duration::from_secs(10),
            )
            .await;
            match reply {
                Ok(reply) if tx.send((Instant::now(), reply.message.to_string())).is_ok() => {}
                _ => return,
            }
        }
    });
    let mut pauses = Vec::with_capacity(HANDOVERS);
    for i in 0..HANDOVERS {
        let next_name = nodes[(i + 1) % 2].name().to_owned();
        let taking = tokio::spawn(take(i + 1));
        tokio::time::sleep(Duration::from_millis(20)).await; // the next node is waiting
        while replies.try_recv().is_ok() {}
        let started = Instant::now();
        owned.hand_over().await?;
        owned = taking.await??;
        loop {
            let (at, node) = replies.recv().await.ok_or("the caller stopped")?;
            if node == next_name && at > started {
                pauses.push(at - started);
                break;
            }
        }
    }
    caller.abort();
    summary(&format!("handover pause, {label}"), pauses);
    owned.hand_over().await?;
    Ok(())
}
