//! W1–W3 of `../shared/peers/README.md`, printed like `../shared/peers/run` so the figures can
//! be set side by side. Run in release mode:
//!
//! ```text
//! cargo run --release --example bench_peers [calls] [swaps] [big_entries]
//! cargo run --release --example bench_peers -- --w3 [big_entries] [rounds]
//! ```
//!
//! `--w3` prints only the W3 figures of the plain map: the headline swap, its floor and the
//! floor's halves, and the pipelined swap alternated with the floor (`rounds` of each, 15 by
//! default).
//!
//! `--precopy [entries] [rounds] [percent]` prints the pre-copied swap of the same table in a
//! `#[precopy]` map (`benches/precopy.rs`) while `percent` (1 by default) of its entries are
//! written during the copy: the kernel's pause, the p99 and maximum call latency during the
//! replacement and the whole replacement (medians of `rounds`, 5 by default), beside the
//! stop-the-world swap of the plain map and its floor, from the same run.

#[path = "../benches/workload.rs"]
mod workload;

#[path = "../benches/precopy.rs"]
mod precopy;

#[cfg(feature = "tokio")]
#[path = "../benches/async_workload.rs"]
mod async_workload;

use std::time::Instant;
use workload::ReplyDrop;

use microkernel::Event;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .map_or(default, |a| a.parse().expect("a number"))
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--precopy") {
        let (big, rounds) = (arg(2, 100_000), arg(3, 5) as usize);
        let percent: f64 = std::env::args()
            .nth(4)
            .map_or(1.0, |a| a.parse().expect("a percentage"));
        precopied(big, rounds, percent);
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("--w3") {
        let (big, rounds) = (arg(2, 100_000), arg(3, PIPELINED_ROUNDS as u64) as usize);
        let (kernel, handle) = workload::kernel();
        workload::fill(&handle, big);
        let large: Vec<_> = (0..5).map(|_| workload::timed_swap(&kernel)).collect();
        println!("swap_big_{big}_median_ms {:.2}", ms(workload::median(large)));
        println!(
            "swap_big_floor_{big}_median_ms {:.2}",
            ms(workload::state_crossing_floor(big, 5))
        );
        drop((kernel, handle));
        pipelined(big, rounds);
        return;
    }
    let (calls, swaps, big) = (arg(1, 2_000_000), arg(2, 20_000), arg(3, 100_000));
    let (kernel, handle) = workload::kernel();
    let request: Event = workload::request();

    let started = Instant::now();
    for _ in 0..calls {
        let reply = handle.call(request.clone()).expect("call");
        std::hint::black_box(reply);
    }
    let elapsed = started.elapsed();
    println!("call_round_trip_ns {:.1}", elapsed.as_nanos() as f64 / calls as f64);
    println!("call_ops_per_s {:.0}", calls as f64 / elapsed.as_secs_f64());

    let small: Vec<_> = (0..swaps).map(|_| workload::timed_swap(&kernel)).collect();
    println!(
        "swap_small_median_us {:.2}",
        workload::median(small).as_nanos() as f64 / 1000.0
    );
    println!("count_after {}", workload::count_and_entries(&handle).0);
    assert_eq!(
        workload::count_and_entries(&handle).0,
        calls,
        "every W1 call was answered exactly once, and counted across the W2 swaps"
    );

    workload::fill(&handle, big);
    let large: Vec<_> = (0..5).map(|_| workload::timed_swap(&kernel)).collect();
    println!(
        "swap_big_{big}_median_ms {:.2}",
        workload::median(large).as_micros() as f64 / 1000.0
    );
    println!("big_entries_after {}", workload::count_and_entries(&handle).1);
    big_variant::<workload::SizedHashEcho>("hashmap_sized", big);

    big_variant::<workload::TreeEcho>("btreemap", big);
    big_variant::<workload::BulkTreeEcho>("btreemap_bulk", big);
    // The headline's floor: its state encoded and decoded by postcard alone, in this process.
    println!(
        "swap_big_floor_{big}_median_ms {:.2}",
        workload::state_crossing_floor(big, 5).as_micros() as f64 / 1000.0
    );
    pipelined(big, PIPELINED_ROUNDS);

    #[cfg(feature = "tokio")]
    async_figures(calls);

    // After W1-W3, as the peers run them: the contention figures on a fresh service.
    let (kernel, handle) = workload::kernel();
    contention(&kernel, &handle, calls);
    assert_eq!(
        workload::count_and_entries(&handle).0,
        calls / 4 * 4 * (ROUNDS as u64 + 2),
        "every call of the W1c rounds and of the two sampled W1c runs was answered exactly once"
    );

    // Last, so that no other figure runs after callsites met a subscriber: W1 again with an
    // INFO subscriber installed, as a program that logs would have it. The handler's DEBUG
    // span must cost (next to) nothing.
    let (_kernel, handle) = workload::kernel();
    let info = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .finish();
    let traced = tracing::subscriber::with_default(info, || {
        let started = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(handle.call(request.clone()).expect("call"));
        }
        started.elapsed()
    });
    println!(
        "call_round_trip_info_subscriber_ns {:.1}",
        traced.as_nanos() as f64 / calls as f64
    );
    assert_eq!(
        workload::count_and_entries(&handle).0,
        calls,
        "every traced W1 call was answered once"
    );
}

/// Rounds of the pipelined swap and of the floor it alternates with.
const PIPELINED_ROUNDS: usize = 15;

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// The headline W3 swap (plain map; its crossing pipelined across two threads) against its
/// floor, the two alternated `rounds` times in this process so that both see the same load:
/// medians, spreads (min–max) and their ratio. Also the floor's halves (encode alone, decode
/// alone, one thread): a pipelined crossing cannot beat the slower of the two.
fn pipelined(big: u64, rounds: usize) {
    use workload::BenchState;
    let (kernel, handle) = workload::kernel();
    workload::fill(&handle, big);
    let mut state = BenchState {
        count: 0,
        table: workload::table(big).into_iter().collect(),
    };
    let [mut swaps, mut floors, mut encodes, mut decodes]: [Vec<std::time::Duration>; 4] = Default::default();
    // Each timed part starts once the one before has settled: the swapped-out table is freed
    // on the kernel's reaper thread, which the next figure should not share the cores with.
    let settle = || std::thread::sleep(std::time::Duration::from_millis(30));
    for _ in 0..rounds {
        settle();
        swaps.push(workload::timed_swap(&kernel));
        settle();
        let started = Instant::now();
        let bytes = postcard::to_allocvec(&state).expect("encode");
        let encoded = started.elapsed();
        let crossed: BenchState = postcard::from_bytes(&bytes).expect("decode");
        let elapsed = started.elapsed();
        drop(bytes);
        drop(std::mem::replace(&mut state, crossed));
        floors.push(elapsed);
        encodes.push(encoded);
        decodes.push(elapsed - encoded);
    }
    assert_eq!(
        workload::count_and_entries(&handle).1,
        big as usize,
        "the pipelined table arrived whole"
    );
    let spread = |samples: &[std::time::Duration]| {
        let (min, max) = (samples.iter().min().unwrap(), samples.iter().max().unwrap());
        format!("{:.2}-{:.2}", ms(*min), ms(*max))
    };
    let (swap_spread, floor_spread) = (spread(&swaps), spread(&floors));
    let [swap, floor, encode, decode] = [swaps, floors, encodes, decodes].map(workload::median);
    println!("swap_big_floor_encode_{big}_median_ms {:.2}", ms(encode));
    println!("swap_big_floor_decode_{big}_median_ms {:.2}", ms(decode));
    println!("swap_big_pipelined_{big}_median_ms {:.2}", ms(swap));
    println!("swap_big_pipelined_{big}_spread_ms {swap_spread}");
    println!("swap_big_pipelined_floor_{big}_median_ms {:.2}", ms(floor));
    println!("swap_big_pipelined_floor_{big}_spread_ms {floor_spread}");
    println!(
        "swap_big_pipelined_vs_floor {:.2}",
        swap.as_secs_f64() / floor.as_secs_f64()
    );
}

/// The pre-copied swap under writes, beside the stop-the-world swap of the plain map and the
/// floor, from this run.
fn precopied(big: u64, rounds: usize, percent: f64) {
    let (kernel, handle) = workload::kernel();
    workload::fill(&handle, big);
    let stop_the_world: Vec<_> = (0..rounds).map(|_| workload::timed_swap(&kernel)).collect();
    drop((kernel, handle));
    let floor = workload::state_crossing_floor(big, rounds);
    let copy = precopy::unloaded_replace(big);
    let outcomes: Vec<precopy::Outcome> = (0..rounds)
        .map(|_| precopy::precopy_swap(big, percent / 100.0, copy))
        .collect();
    let median_of =
        |f: fn(&precopy::Outcome) -> std::time::Duration| workload::median(outcomes.iter().map(f).collect());
    let written: Vec<f64> = outcomes.iter().map(|o| o.written_pct).collect();
    let pauses: Vec<String> = outcomes.iter().map(|o| format!("{:.3}", ms(o.pause))).collect();
    println!("swap_big_{big}_median_ms {:.2}", ms(workload::median(stop_the_world)));
    println!("swap_big_floor_{big}_median_ms {:.2}", ms(floor));
    println!("swap_precopy_{big}_pause_median_ms {:.3}", ms(median_of(|o| o.pause)));
    println!("swap_precopy_{big}_pause_each_ms {}", pauses.join(","));
    println!("swap_precopy_{big}_call_p99_median_ms {:.3}", ms(median_of(|o| o.p99)));
    println!("swap_precopy_{big}_call_max_median_ms {:.3}", ms(median_of(|o| o.max)));
    println!(
        "swap_precopy_{big}_replace_median_ms {:.1}",
        ms(median_of(|o| o.replace))
    );
    println!(
        "swap_precopy_{big}_written_pct {:.2}-{:.2}",
        written.iter().copied().fold(f64::MAX, f64::min),
        written.iter().copied().fold(0.0, f64::max)
    );
    let rounds_seen: Vec<String> = outcomes
        .iter()
        .map(|o| format!("{}/{}", o.rounds, o.in_pause))
        .collect();
    println!("swap_precopy_{big}_rounds_and_keys_in_pause {}", rounds_seen.join(","));
}

/// W3 with another table type, as an extra line.
fn big_variant<E>(label: &str, big: u64)
where
    E: microkernel::Handler<Request = Event, Response = microkernel::Reply> + Default,
{
    let (kernel, handle) = workload::kernel_with::<E>();
    workload::fill(&handle, big);
    let large: Vec<_> = (0..5).map(|_| workload::timed_swap_with::<E>(&kernel)).collect();
    println!(
        "swap_big_{label}_{big}_median_ms {:.2}",
        workload::median(large).as_micros() as f64 / 1000.0
    );
    assert_eq!(
        workload::count_and_entries(&handle).1,
        big as usize,
        "the {label} table arrived whole"
    );
}

/// W1c and its tails (issue: calls under contention), with the bare-`Mutex` limit of the same
/// run beside them.
fn contention(kernel: &microkernel::Kernel, handle: &microkernel::Handle, calls: u64) {
    const THREADS: u64 = 4;
    // Several threads on this machine's few cores: a figure swings with where the scheduler
    // puts them, so ours and the limit alternate, and the median of the rounds is printed.
    let [mut ours, mut limit, mut limit_out, mut parking]: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        ours.push(workload::concurrent_calls(handle, THREADS, calls));
        limit.push(workload::bare_mutex_calls(THREADS, calls, true, ReplyDrop::UnderLock));
        limit_out.push(workload::bare_mutex_calls(THREADS, calls, true, ReplyDrop::AfterUnlock));
        parking.push(workload::bare_parking_lot_calls(THREADS, calls));
    }
    let [ours, limit, limit_out, parking] = [ours, limit, limit_out, parking].map(median_of);
    println!("call_concurrent_ops_per_s {ours:.0}");
    println!("limit_mutex_concurrent_ops_per_s {limit:.0}");
    println!("call_concurrent_vs_limit {:.2}", ours / limit);
    // The same std Mutex with the reply handed out of the lock, as a call returning it must.
    println!("limit_mutex_reply_out_concurrent_ops_per_s {limit_out:.0}");
    println!("call_concurrent_vs_limit_reply_out {:.2}", ours / limit_out);
    println!("limit_parking_lot_concurrent_ops_per_s {parking:.0}");
    println!("call_concurrent_vs_parking_lot {:.2}", ours / parking);
    let mut quiet = workload::sampled_concurrent_calls(handle, THREADS, calls, 64, |_| {});
    quiet.sort();
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)] {
        println!("call_concurrent_{name}_ns {}", workload::quantile(&quiet, q).as_nanos());
    }
    let swaps = std::sync::atomic::AtomicU64::new(0);
    let mut swapping = workload::sampled_concurrent_calls(handle, THREADS, calls, 64, |done| {
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            workload::timed_swap(kernel);
            swaps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    swapping.sort();
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)] {
        println!(
            "call_during_swaps_{name}_ns {}",
            workload::quantile(&swapping, q).as_nanos()
        );
    }
    println!("swaps_during_calls {}", swaps.into_inner());
    independent(calls);
}

/// Rounds of each contended figure (ours and the limit alternating).
const ROUNDS: usize = 5;

fn median_of(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

/// Independent services: 4 threads each calling a service of its own (through its handle, and
/// by name), against a bare `Mutex` per thread; each also on 1 thread, so that how each scales
/// with threads can be set side by side (`*_scaling`: 4 threads' throughput over 1 thread's).
fn independent(calls: u64) {
    const THREADS: u64 = 4;
    let own = microkernel::Kernel::new();
    let mut figures: [Vec<f64>; 6] = Default::default();
    for _ in 0..ROUNDS {
        for (threads, at) in [(THREADS, 0), (1, 3)] {
            // `calls` per thread: long enough (0.1-0.2 s) for the scheduler to have spread the
            // threads over the cores, which a run of a few milliseconds mostly measures instead.
            let total = calls * threads;
            figures[at].push(workload::independent_calls(&own, threads, total, false));
            figures[at + 1].push(workload::independent_calls(&own, threads, total, true));
            figures[at + 2].push(workload::bare_mutex_calls(threads, total, false, ReplyDrop::UnderLock));
        }
    }
    let [handle, name, limit, handle_one, name_one, limit_one] = figures.map(median_of);
    for (label, many, one) in [
        ("call_independent_handle", handle, handle_one),
        ("call_independent_name", name, name_one),
        ("limit_mutex_independent", limit, limit_one),
    ] {
        println!("{label}_ops_per_s {many:.0}");
        println!("{label}_one_thread_ops_per_s {one:.0}");
        println!("{label}_scaling {:.2}", many / one);
    }
}

/// W1 and W1c for an async service (feature `tokio`), run as `../shared/peers/rust-actors`
/// runs its peers: W1 with one caller task on a `current_thread` runtime, W1c with 4 caller
/// tasks on a 2-worker runtime (and, as an extra, on one thread); then call latency on the
/// 2-worker runtime while the service is replaced in a loop.
#[cfg(feature = "tokio")]
fn async_figures(calls: u64) {
    async_workload::print_one_thread_figures(calls);
    let two_workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    two_workers.block_on(async {
        let (kernel, handle) = async_workload::kernel().await;
        println!(
            "async_call_concurrent_ops_per_s {:.0}",
            async_workload::concurrent_ops_per_s(&handle, 4, calls).await
        );
        let swapper = kernel.clone();
        let swaps = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = std::sync::Arc::clone(&swaps);
        let mut latencies = async_workload::sampled_latencies(&handle, 4, calls / 4, 64, move |done| async move {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                swapper
                    .replace_async(async_workload::AsyncEcho::default())
                    .await
                    .expect("a replacement");
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .await;
        latencies.sort();
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
            println!(
                "async_call_during_swaps_{name}_ns {}",
                workload::quantile(&latencies, q).as_nanos()
            );
        }
        println!(
            "async_swaps_during_calls {}",
            swaps.load(std::sync::atomic::Ordering::Relaxed)
        );
        async_workload::assert_count(&handle, calls / 4 * 4 + calls / 4 / 4 * 4).await;
        kernel.shutdown().await.expect("shutdown");
    });
}
