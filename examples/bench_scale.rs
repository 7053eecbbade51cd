//! How the kernel's costs grow (issue 14): with the number of services — register, start_all,
//! stop_all, a call by name, memory per registered service, one sealed replacement of a service
//! with a small state — for services in a chain, independent, and in a wide fan-in (all on one);
//! and with the size of a state — a sealed replacement and a checkpoint, 1 KB to 100 MB.
//!
//! And (issue 24) with the number of entries of a map, the pause of a replacement: stop-the-world
//! (the W3 table as a plain `HashMap`) beside pre-copied (the same table in a `#[precopy]`
//! `PrecopyMap`, 1 % of its entries written during the copy; `benches/precopy.rs`), 1,000 to
//! 10,000,000 entries.
//!
//! ```text
//! cargo run --release --example bench_scale
//! cargo run --release --example bench_scale -- --gb          # also a 1 GB state
//! BENCH_SCALE_GB=1 cargo run --release --example bench_scale # the same
//! cargo run --release --example bench_scale -- --precopy     # only the pause curves
//! ```
//!
//! Writes `docs/scale/services.csv`, `docs/scale/states.csv`, `docs/scale/precopy.csv` and one
//! SVG chart per curve
//! (log–log, with a dashed linear reference through the first point). Each point is measured in
//! a process of its own (this example runs itself with `--point` or `--state`), so that every
//! memory figure starts from a fresh heap and no point inherits another's garbage.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../benches/workload.rs"]
mod workload;

#[path = "../benches/precopy.rs"]
mod precopy;

use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::store::{DirStore, StoreOptions};
use microkernel::{BoxError, Context, Event, Handler, Kernel, Migratable, Reply, Service};
use serde::{Deserialize, Serialize};

/// Service counts measured (a few between the decades, for the curves).
const COUNTS: [usize; 5] = [1_000, 3_000, 10_000, 30_000, 100_000];

/// State sizes measured by default; `--gb` or `BENCH_SCALE_GB=1` adds 1 GB.
const SIZES: [usize; 6] = [1 << 10, 10 << 10, 100 << 10, 1 << 20, 10 << 20, 100 << 20];
const GIGABYTE: usize = 1 << 30;
/// The smallest state whose peak memory is reported, in bytes of its own resident memory.
const MIN_PEAK_STATE: f64 = (1 << 20) as f64;

/// Calls by name per point, spread over every service.
const CALLS: usize = 2_000_000;
/// The step between the services called one after the other: a prime, so that the calls go
/// round all services (no count is a multiple of it) without following their order.
const STRIDE: usize = 7_919;
/// Replacements per point.
const REPLACEMENTS: usize = 50;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--point", shape, n] => services_point(Shape::parse(shape), n.parse().expect("a count")),
        ["--state", op, bytes] => state_point(StateOp::parse(op), bytes.parse().expect("a size")),
        ["--precopy-point", entries] => precopy_point(entries.parse().expect("an entry count")),
        [] => run_all(std::env::var_os("BENCH_SCALE_GB").is_some_and(|v| v == "1")),
        ["--gb"] => run_all(true),
        ["--precopy"] => run_precopy(),
        _ => panic!(
            "usage: bench_scale [--gb | --precopy | --point <shape> <n> | --state replace|checkpoint <bytes> | --precopy-point <entries>]"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The services measured.

/// A service whose name and dependencies are chosen at run time, with a small state.
struct Named {
    name: String,
    deps: Vec<String>,
    state: Small,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct Small {
    count: u64,
}

impl Service for Named {
    type State = Small;
    fn name(&self) -> &str {
        &self.name
    }
    fn dependencies(&self) -> Vec<String> {
        self.deps.clone()
    }
    fn export_state(&self) -> Result<&Small, BoxError> {
        Ok(&self.state)
    }
    fn import_state(&mut self, state: Small) -> Result<(), BoxError> {
        self.state = state;
        Ok(())
    }
}

impl Handler for Named {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        self.state.count += 1;
        Reply::ok("ok", "")
    }
}

/// One service holding a state of many bytes.
#[derive(microkernel::Service, Default)]
#[service(name = "holder")]
struct Holder {
    #[state]
    state: Blob,
}

/// A byte vector: its in-memory size is its encoded size, so that figures per byte of state
/// read plainly. serde encodes it element by element, as it does any `Vec<u8>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct Blob {
    bytes: Vec<u8>,
}

impl Handler for Holder {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("bytes", self.state.bytes.len().to_string())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Each service depends on the one before.
    Chain,
    /// No dependencies.
    Independent,
    /// Every service depends on the first.
    FanIn,
}

impl Shape {
    const ALL: [Shape; 3] = [Shape::Chain, Shape::Independent, Shape::FanIn];

    fn label(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::Independent => "independent",
            Shape::FanIn => "fan-in",
        }
    }

    fn parse(label: &str) -> Shape {
        *Shape::ALL.iter().find(|s| s.label() == label).expect("a shape")
    }

    /// Service number `i` of this shape.
    fn service(self, i: usize) -> Named {
        let dependency = match self {
            Shape::Chain => i.checked_sub(1),
            Shape::Independent => None,
            Shape::FanIn => (i > 0).then_some(0),
        };
        Named {
            name: name(i),
            deps: dependency.map(name).into_iter().collect(),
            state: Small::default(),
        }
    }
}

fn name(i: usize) -> String {
    format!("s{i:06}")
}

fn sealer() -> Sealer {
    Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm).expect("OS RNG")))
}

// ---------------------------------------------------------------------------------------------
// A point of the services' curves, in a process of its own.

/// The figures of one shape and count.
#[derive(Clone)]
struct ServicesPoint {
    shape: Shape,
    n: usize,
    register_ms: f64,
    start_all_ms: f64,
    stop_all_ms: f64,
    call_ns: f64,
    call_one_ns: f64,
    bytes_per_service: f64,
    replace_us: f64,
}

fn services_point(shape: Shape, n: usize) {
    // Sealed, as a kernel that replaces services is; no store, so that stopping saves nothing.
    let kernel = Kernel::builder().sealer(sealer()).build().expect("kernel");
    let before = rss_bytes();
    let services: Vec<Named> = (0..n).map(|i| shape.service(i)).collect();
    let started = Instant::now();
    for service in services {
        kernel.register(service).expect("register");
    }
    let register = started.elapsed();
    let bytes_per_service = rss_bytes().saturating_sub(before) as f64 / n as f64;
    let (start_all, stop_all) = start_and_stop(&kernel, (200_000 / n).clamp(9, 50));
    kernel.start_all().expect("start_all");
    let call_ns = calls_by_name(&kernel, n, STRIDE);
    let call_one_ns = calls_by_name(&kernel, n, 0);
    let replace = median(
        (0..REPLACEMENTS)
            .map(|_| timed(|| replace(&kernel, shape, n - 1)))
            .collect(),
    );
    println!(
        "register_ms={} start_all_ms={} stop_all_ms={} call_ns={call_ns} call_one_ns={call_one_ns} bytes_per_service={bytes_per_service} replace_us={}",
        ms(register),
        ms(start_all),
        ms(stop_all),
        ms(replace) * 1000.0
    );
    // Tearing 100,000 services down is not measured: leave it to the OS.
    std::process::exit(0);
}

/// Median times of `repeats` rounds of start_all then stop_all.
fn start_and_stop(kernel: &Kernel, repeats: usize) -> (Duration, Duration) {
    let (starts, stops): (Vec<_>, Vec<_>) = (0..repeats)
        .map(|_| {
            let start = timed(|| kernel.start_all().expect("start_all"));
            let stop = timed(|| kernel.stop_all().expect("stop_all"));
            (start, stop)
        })
        .unzip();
    (median(starts), median(stops))
}

/// Nanoseconds per call by name, each call `stride` services after the one before (0: the same
/// service every time).
fn calls_by_name(kernel: &Kernel, n: usize, stride: usize) -> f64 {
    let names: Vec<String> = (0..n).map(name).collect();
    // `call` routes by its first argument: one literal event serves every call, without an
    // allocation per call.
    let event = Event::new("any", "bench", "get", "");
    let mut at = 0;
    let elapsed = timed(|| {
        for _ in 0..CALLS {
            std::hint::black_box(kernel.call(&names[at], event.clone()).expect("call"));
            at = (at + stride) % n;
        }
    });
    elapsed.as_nanos() as f64 / CALLS as f64
}

fn replace(kernel: &Kernel, shape: Shape, i: usize) {
    kernel.replace(shape.service(i)).expect("replace");
}

// ---------------------------------------------------------------------------------------------
// A point of the states' curves, in a process of its own.

/// The figures of one state size.
struct StatePoint {
    bytes: usize,
    replace_ms: f64,
    checkpoint_ms: f64,
    /// The peak memory of the process during a replacement / a checkpoint, over what it was
    /// before the state was built, in states: 1 is the state alone; the old and the new state
    /// side by side are 2.
    replace_peak: f64,
    checkpoint_peak: f64,
}

/// What is done to a state, each in a process of its own so that its peak is its own.
#[derive(Clone, Copy)]
enum StateOp {
    Replace,
    Checkpoint,
}

impl StateOp {
    fn label(self) -> &'static str {
        match self {
            StateOp::Replace => "replace",
            StateOp::Checkpoint => "checkpoint",
        }
    }

    fn parse(label: &str) -> StateOp {
        [StateOp::Replace, StateOp::Checkpoint]
            .into_iter()
            .find(|op| op.label() == label)
            .expect("replace or checkpoint")
    }

    fn run(self, kernel: &Kernel) {
        match self {
            StateOp::Replace => drop(kernel.replace(Holder::default()).expect("replace")),
            StateOp::Checkpoint => drop(kernel.checkpoint_service("holder").expect("checkpoint")),
        }
    }
}

fn state_point(op: StateOp, bytes: usize) {
    let dir = std::env::temp_dir().join(format!("bench-scale-{}", std::process::id()));
    let limit = 2 * bytes as u64 + (1 << 20);
    let store = DirStore::open_with(&dir, StoreOptions::default().max_state_bytes(limit)).expect("store");
    let kernel = Kernel::builder().sealer(sealer()).store(store).build().expect("kernel");
    let before = rss_bytes();
    kernel.register(Holder { state: blob(bytes) }).expect("register");
    kernel.start_all().expect("start_all");
    let own = rss_bytes().saturating_sub(before).max(1) as f64;
    // The first run's peak, from a heap that has freed nothing yet: later runs reuse memory
    // the allocator kept, which would hide what the operation needs.
    reset_peak();
    let first = timed(|| op.run(&kernel));
    // Below a megabyte, the state's own growth is a few pages or none: no ratio to speak of.
    let peak = if own >= MIN_PEAK_STATE {
        peak_bytes().saturating_sub(before) as f64 / own
    } else {
        f64::NAN
    };
    let repeats = if bytes >= 100 << 20 { 2 } else { 8 };
    let mut times: Vec<Duration> = (0..repeats).map(|_| timed(|| op.run(&kernel))).collect();
    times.push(first);
    println!("ms={} peak={peak}", ms(median(times)));
    drop(kernel);
    std::fs::remove_dir_all(&dir).expect("remove the store");
}

/// `bytes` bytes, every page written, so that the state is resident before it is measured.
fn blob(bytes: usize) -> Blob {
    Blob {
        bytes: (0..bytes).map(|i| (i as u8).wrapping_mul(31)).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Memory, from /proc (Linux).

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS/VmHWM line")
}

fn rss_bytes() -> u64 {
    status_kb("VmRSS:") * 1024
}

/// The peak resident memory since the last [`reset_peak`].
fn peak_bytes() -> u64 {
    status_kb("VmHWM:") * 1024
}

/// Resets the peak to the current resident memory (Linux 4.0+).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs");
}

// ---------------------------------------------------------------------------------------------
// The whole run: every point in a child, then the files.

fn run_all(gigabyte: bool) {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scale");
    std::fs::create_dir_all(&out).expect("docs/scale");
    println!(
        "{:<12} {:>8} {:>12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>11}",
        "shape",
        "services",
        "register ms",
        "start_all ms",
        "stop_all ms",
        "call ns",
        "one ns",
        "B/service",
        "replace us"
    );
    let points: Vec<ServicesPoint> = Shape::ALL
        .iter()
        .flat_map(|shape| COUNTS.iter().map(move |n| (*shape, *n)))
        .map(|(shape, n)| measure_services(shape, n))
        .inspect(print_services)
        .collect();
    write(&out.join("services.csv"), &services_csv(&points));
    let mut sizes = SIZES.to_vec();
    if gigabyte {
        sizes.push(GIGABYTE);
    }
    println!(
        "\n{:>12} {:>11} {:>14} {:>13} {:>16}",
        "state bytes", "replace ms", "checkpoint ms", "replace peak", "checkpoint peak"
    );
    let states: Vec<StatePoint> = sizes.into_iter().map(measure_state).inspect(print_state).collect();
    write(&out.join("states.csv"), &states_csv(&states));
    services_charts(&out, &points);
    state_charts(&out, &states);
    run_precopy();
}

// ---------------------------------------------------------------------------------------------
// The pause against the entries of a map: stop-the-world beside pre-copied.

/// Entry counts of the pause curves.
const ENTRIES: [u64; 5] = [1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// The share of the entries written during a pre-copy.
const WRITTEN: f64 = 0.01;

struct PrecopyPoint {
    entries: u64,
    /// The plain map's replacement, which pauses the service throughout.
    stop_the_world_ms: f64,
    pause_ms: f64,
    call_p99_ms: f64,
    call_max_ms: f64,
    replace_ms: f64,
    written_pct: f64,
}

fn run_precopy() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scale");
    std::fs::create_dir_all(&out).expect("docs/scale");
    println!(
        "\n{:>10} {:>14} {:>10} {:>10} {:>10} {:>11} {:>9}",
        "entries", "stop-world ms", "pause ms", "p99 ms", "max ms", "replace ms", "written"
    );
    let points: Vec<PrecopyPoint> = ENTRIES
        .iter()
        .map(|entries| {
            let f = child(&["--precopy-point".into(), entries.to_string()]);
            PrecopyPoint {
                entries: *entries,
                stop_the_world_ms: figure(&f, "stop_the_world_ms"),
                pause_ms: figure(&f, "pause_ms"),
                call_p99_ms: figure(&f, "call_p99_ms"),
                call_max_ms: figure(&f, "call_max_ms"),
                replace_ms: figure(&f, "replace_ms"),
                written_pct: figure(&f, "written_pct"),
            }
        })
        .inspect(|p| {
            println!(
                "{:>10} {:>14.3} {:>10.3} {:>10.3} {:>10.3} {:>11.1} {:>8.2}%",
                p.entries, p.stop_the_world_ms, p.pause_ms, p.call_p99_ms, p.call_max_ms, p.replace_ms, p.written_pct
            );
        })
        .collect();
    let mut csv = String::from(
        "entries,stop_the_world_ms,precopy_pause_ms,precopy_call_p99_ms,precopy_call_max_ms,precopy_replace_ms,written_pct\n",
    );
    for p in &points {
        let _ = writeln!(
            csv,
            "{},{:.4},{:.4},{:.4},{:.4},{:.2},{:.3}",
            p.entries, p.stop_the_world_ms, p.pause_ms, p.call_p99_ms, p.call_max_ms, p.replace_ms, p.written_pct
        );
    }
    write(&out.join("precopy.csv"), &csv);
    // A point with no call during the replacement (too short for the prober) has no p99.
    let curve = |f: fn(&PrecopyPoint) -> f64| {
        points
            .iter()
            .map(|p| (p.entries as f64, f(p)))
            .filter(|(_, y)| *y > 0.0)
            .collect::<Vec<_>>()
    };
    let chart = Chart {
        file: "pause_vs_entries.svg",
        title: "pause of a sealed replacement: stop-the-world vs pre-copied (1% written)",
        x: "entries",
        y: "ms",
        curves: vec![
            (
                "stop-the-world (HashMap)",
                plotters::style::RED,
                curve(|p| p.stop_the_world_ms),
            ),
            ("pre-copied: pause", plotters::style::BLUE, curve(|p| p.pause_ms)),
            (
                "pre-copied: call p99",
                plotters::style::RGBColor(0, 140, 0),
                curve(|p| p.call_p99_ms),
            ),
        ],
        reference: Reference::Linear,
    };
    draw(&out.join(chart.file), &chart);
    println!("\nwrote {}", out.display());
}

/// One point, in a process of its own: medians of a few replacements (one at 10 M entries).
fn precopy_point(entries: u64) {
    let rounds = match entries {
        n if n >= 10_000_000 => 1,
        n if n >= 1_000_000 => 3,
        _ => 5,
    };
    let (kernel, handle) = workload::kernel();
    workload::fill(&handle, entries);
    let stop_the_world = median((0..rounds).map(|_| workload::timed_swap(&kernel)).collect());
    drop((kernel, handle));
    let copy = precopy::unloaded_replace(entries);
    let outcomes: Vec<precopy::Outcome> = (0..rounds)
        .map(|_| precopy::precopy_swap(entries, WRITTEN, copy))
        .collect();
    let of = |f: fn(&precopy::Outcome) -> Duration| ms(median(outcomes.iter().map(f).collect()));
    let written = outcomes.iter().map(|o| o.written_pct).sum::<f64>() / outcomes.len() as f64;
    println!(
        "stop_the_world_ms={} pause_ms={} call_p99_ms={} call_max_ms={} replace_ms={} written_pct={written}",
        ms(stop_the_world),
        of(|o| o.pause),
        of(|o| o.p99),
        of(|o| o.max),
        of(|o| o.replace),
    );
}

/// Runs this example again for one point and reads back its figures.
fn child(args: &[String]) -> Vec<(String, f64)> {
    let output = Command::new(std::env::current_exe().expect("this example"))
        .args(args)
        .output()
        .expect("run a point");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("figures")
        .split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("key=value");
            (key.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn figure(figures: &[(String, f64)], key: &str) -> f64 {
    figures.iter().find(|(k, _)| k == key).map(|(_, v)| *v).expect(key)
}

fn measure_services(shape: Shape, n: usize) -> ServicesPoint {
    let f = child(&["--point".into(), shape.label().into(), n.to_string()]);
    ServicesPoint {
        shape,
        n,
        register_ms: figure(&f, "register_ms"),
        start_all_ms: figure(&f, "start_all_ms"),
        stop_all_ms: figure(&f, "stop_all_ms"),
        call_ns: figure(&f, "call_ns"),
        call_one_ns: figure(&f, "call_one_ns"),
        bytes_per_service: figure(&f, "bytes_per_service"),
        replace_us: figure(&f, "replace_us"),
    }
}

fn measure_state(bytes: usize) -> StatePoint {
    let run = |op: StateOp| child(&["--state".into(), op.label().into(), bytes.to_string()]);
    let (replace, checkpoint) = (run(StateOp::Replace), run(StateOp::Checkpoint));
    StatePoint {
        bytes,
        replace_ms: figure(&replace, "ms"),
        checkpoint_ms: figure(&checkpoint, "ms"),
        replace_peak: figure(&replace, "peak"),
        checkpoint_peak: figure(&checkpoint, "peak"),
    }
}

fn print_services(p: &ServicesPoint) {
    println!(
        "{:<12} {:>8} {:>12.2} {:>12.2} {:>12.2} {:>10.1} {:>10.1} {:>10.0} {:>11.1}",
        p.shape.label(),
        p.n,
        p.register_ms,
        p.start_all_ms,
        p.stop_all_ms,
        p.call_ns,
        p.call_one_ns,
        p.bytes_per_service,
        p.replace_us
    );
}

fn print_state(p: &StatePoint) {
    println!(
        "{:>12} {:>11.3} {:>14.3} {:>13} {:>16}",
        p.bytes,
        p.replace_ms,
        p.checkpoint_ms,
        times(p.replace_peak),
        times(p.checkpoint_peak)
    );
}

fn services_csv(points: &[ServicesPoint]) -> String {
    let mut csv = String::from(
        "shape,services,register_ms,start_all_ms,stop_all_ms,call_by_name_ns,call_one_by_name_ns,bytes_per_service,replace_small_us\n",
    );
    for p in points {
        let _ = writeln!(
            csv,
            "{},{},{:.3},{:.3},{:.3},{:.1},{:.1},{:.0},{:.2}",
            p.shape.label(),
            p.n,
            p.register_ms,
            p.start_all_ms,
            p.stop_all_ms,
            p.call_ns,
            p.call_one_ns,
            p.bytes_per_service,
            p.replace_us
        );
    }
    csv
}

/// A ratio as `2.95x`, or `-` where there is none.
fn times(ratio: f64) -> String {
    if ratio.is_nan() {
        "-".into()
    } else {
        format!("{ratio:.2}x")
    }
}

/// A ratio for the CSV: empty where there is none.
fn csv_ratio(ratio: f64) -> String {
    if ratio.is_nan() {
        String::new()
    } else {
        format!("{ratio:.2}")
    }
}

fn states_csv(states: &[StatePoint]) -> String {
    let mut csv =
        String::from("state_bytes,replace_ms,checkpoint_ms,replace_peak_in_states,checkpoint_peak_in_states\n");
    for p in states {
        let _ = writeln!(
            csv,
            "{},{:.4},{:.4},{},{}",
            p.bytes,
            p.replace_ms,
            p.checkpoint_ms,
            csv_ratio(p.replace_peak),
            csv_ratio(p.checkpoint_peak)
        );
    }
    csv
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// Charts.

/// What the dashed reference line through a curve's first point stands for.
#[derive(Clone, Copy)]
enum Reference {
    /// Growth in proportion to x.
    Linear,
    /// The same cost per item at every x (the per-item view of linear growth).
    Flat,
}

/// A curve's label, colour and points.
type Curve<'a> = (&'a str, plotters::style::RGBColor, Vec<(f64, f64)>);

/// One chart: its file, title, axis labels, curves and reference.
struct Chart<'a> {
    file: &'a str,
    title: &'a str,
    x: &'a str,
    y: &'a str,
    curves: Vec<Curve<'a>>,
    reference: Reference,
}

fn services_charts(out: &Path, points: &[ServicesPoint]) {
    type Metric = fn(&ServicesPoint) -> f64;
    let metrics: [(&str, &str, &str, Metric, Reference); 6] = [
        (
            "register.svg",
            "register N services",
            "ms",
            |p| p.register_ms,
            Reference::Linear,
        ),
        (
            "start_all.svg",
            "start_all",
            "ms",
            |p| p.start_all_ms,
            Reference::Linear,
        ),
        ("stop_all.svg", "stop_all", "ms", |p| p.stop_all_ms, Reference::Linear),
        (
            "call_by_name.svg",
            "a call by name, spread over all services",
            "ns per call",
            |p| p.call_ns,
            Reference::Flat,
        ),
        (
            "memory.svg",
            "memory per registered service (RSS growth / N)",
            "bytes per service",
            |p| p.bytes_per_service,
            Reference::Flat,
        ),
        (
            "replace_small.svg",
            "one sealed replacement, small state",
            "µs",
            |p| p.replace_us,
            Reference::Flat,
        ),
    ];
    for (file, title, y, metric, reference) in metrics {
        let curves = Shape::ALL
            .iter()
            .map(|shape| {
                let curve = points
                    .iter()
                    .filter(|p| p.shape == *shape)
                    .map(|p| (p.n as f64, metric(p)))
                    .collect();
                (shape.label(), color(*shape), curve)
            })
            .collect();
        draw(
            &out.join(file),
            &Chart {
                file,
                title,
                x: "services",
                y,
                curves,
                reference,
            },
        );
    }
}

fn state_charts(out: &Path, states: &[StatePoint]) {
    let curve = |f: fn(&StatePoint) -> f64| states.iter().map(|p| (p.bytes as f64, f(p))).collect::<Vec<_>>();
    let charts = [
        (
            "replace_vs_state.svg",
            "one sealed replacement",
            curve(|p| p.replace_ms),
        ),
        (
            "checkpoint_vs_state.svg",
            "one checkpoint (sealed, written, fsynced)",
            curve(|p| p.checkpoint_ms),
        ),
    ];
    for (file, title, points) in charts {
        let chart = Chart {
            file,
            title,
            x: "state bytes",
            y: "ms",
            curves: vec![("Vec<u8> state", plotters::style::BLUE, points)],
            reference: Reference::Linear,
        };
        draw(&out.join(file), &chart);
    }
    // Peak memory in states, where the state is large enough to have a ratio.
    let peak = |f: fn(&StatePoint) -> f64| -> Vec<(f64, f64)> {
        states
            .iter()
            .filter(|p| !f(p).is_nan())
            .map(|p| (p.bytes as f64, f(p)))
            .collect()
    };
    let chart = Chart {
        file: "peak_vs_state.svg",
        title: "peak memory during a replacement / a checkpoint, in states",
        x: "state bytes",
        y: "peak RSS growth / state's own size",
        curves: vec![
            ("sealed replacement", plotters::style::RED, peak(|p| p.replace_peak)),
            ("checkpoint", plotters::style::BLUE, peak(|p| p.checkpoint_peak)),
        ],
        reference: Reference::Flat,
    };
    draw(&out.join(chart.file), &chart);
}

fn color(shape: Shape) -> plotters::style::RGBColor {
    match shape {
        Shape::Chain => plotters::style::RED,
        Shape::Independent => plotters::style::BLUE,
        Shape::FanIn => plotters::style::RGBColor(0, 140, 0),
    }
}

/// The dashed line through a curve's first point over the curve's x range.
fn reference_line(curve: &[(f64, f64)], reference: Reference) -> Vec<(f64, f64)> {
    let (Some(&(x0, y0)), Some(&(x1, _))) = (curve.first(), curve.last()) else {
        return Vec::new();
    };
    let at = |x: f64| match reference {
        Reference::Linear => y0 * x / x0,
        Reference::Flat => y0,
    };
    vec![(x0, at(x0)), (x1, at(x1))]
}

/// The log ranges holding every curve and reference, with some room around.
fn ranges(chart: &Chart<'_>) -> ((f64, f64), (f64, f64)) {
    let all: Vec<(f64, f64)> = chart
        .curves
        .iter()
        .flat_map(|(_, _, c)| c.iter().copied().chain(reference_line(c, chart.reference)))
        .filter(|(_, y)| *y > 0.0)
        .collect();
    let span = |v: &mut dyn Iterator<Item = f64>| v.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x0, x1) = span(&mut all.iter().map(|p| p.0));
    let (y0, y1) = span(&mut all.iter().map(|p| p.1));
    ((x0 / 1.3, x1 * 1.3), (y0 / 2.0, y1 * 2.0))
}

fn draw(path: &PathBuf, chart: &Chart<'_>) {
    use plotters::prelude::*;
    let ((x0, x1), (y0, y1)) = ranges(chart);
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).expect("background");
    let mut ctx = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .expect(chart.file);
    ctx.configure_mesh()
        .x_desc(chart.x)
        .y_desc(chart.y)
        // Enough labels that a curve within one decade still reads.
        .y_labels(12)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()
        .expect("axes");
    for (k, (label, color, curve)) in chart.curves.iter().enumerate() {
        let style = ShapeStyle::from(*color).stroke_width(2);
        ctx.draw_series(LineSeries::new(curve.iter().copied(), style).point_size(3))
            .expect("curve")
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        let dashed = DashedLineSeries::new(
            reference_line(curve, chart.reference),
            6,
            4,
            ShapeStyle::from(*color).stroke_width(1),
        );
        ctx.draw_series(dashed).expect("reference");
        // The last point's value, since a log axis labels only its decades; set above-left of
        // the point (in pixels) so that it stays inside the plot, each curve's a line higher.
        if let Some(&(x, y)) = curve.last() {
            let font = ("sans-serif", 12).into_font().color(color);
            let value = EmptyElement::at((x, y)) + Text::new(short(y), (-36, -16 - 13 * k as i32), font);
            ctx.draw_series(std::iter::once(value)).expect("value");
        }
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .expect("legend");
    let note = match chart.reference {
        Reference::Linear => "dashed: linear growth through the first point",
        Reference::Flat => "dashed: the first point's value held flat (no growth with N)",
    };
    root.draw(&Text::new(note, (80, 462), ("sans-serif", 13)))
        .expect("note");
    root.present().expect(chart.file);
}

/// 1000 → "1k", 0.25 → "0.25": axis labels that fit.
fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e9 => format!("{}G", trim(v / 1e9)),
        a if a >= 1e6 => format!("{}M", trim(v / 1e6)),
        a if a >= 1e3 => format!("{}k", trim(v / 1e3)),
        _ => trim(v),
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

// ---------------------------------------------------------------------------------------------

fn timed(work: impl FnOnce()) -> Duration {
    let started = Instant::now();
    work();
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
