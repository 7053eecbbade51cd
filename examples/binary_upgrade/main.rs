//! A new binary takes over a running one with no request refused, lost or answered twice: an
//! HTTP counter (axum) whose v1 and v2 keep different state types.
//!
//! ```text
//! cargo run --features takeover,tokio --example binary_upgrade -- --demo
//! ```
//!
//! The demo starts v1 as a child process, calls it from four clients continuously, starts v2 as
//! a second child which takes over — the listening socket passed, the count and a table sealed
//! across and upgraded through the chain (`CountV1` → `CountV2`) — and prints what the clients
//! saw: failed requests, whether the counts were exactly 1..=N, the versions in order, and the
//! latency of the requests sent during the switch. `--entries N` gives the table N entries
//! (the pause for a large state).
//!
//! By hand, with one key for both:
//!
//! ```text
//! export MICROKERNEL_STATE_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
//! cargo run --features takeover,tokio --example binary_upgrade -- v1 /tmp/counter &
//! curl -X POST localhost:3000/hit                      # v1 1
//! cargo run --features takeover,tokio --example binary_upgrade -- v2 /tmp/counter &
//! curl -X POST localhost:3000/hit                      # v2 2; v1 has exited
//! ```
//!
//! A v2 started with another key cannot open the state: it exits with an error naming the
//! service, and v1 serves on.
//!
//! Or let the running process start the new binary and hear how it went (what systemd's
//! `ExecReload=` runs; SIGHUP does the same, the outcome in the old process's log only):
//!
//! ```text
//! BINARY_UPGRADE_NEXT_VERSION=v2 cargo run --features takeover,tokio --example binary_upgrade -- v1 /tmp/counter &
//! cargo run --features takeover,tokio --example binary_upgrade -- reload /tmp/counter
//! # upgraded: process 12345 serves (counter, table handed over); exit status 0
//! # or: error: the upgrade failed: the new process aborted the takeover: ...; exit status 1
//! ```
//!
//! Under systemd with a socket unit (`ListenStream=3000`, `FileDescriptorName=http`), the
//! first process serves on the socket systemd passed (`takeover::activated_sockets`); each
//! successor inherits it from its predecessor.

#[path = "app.rs"]
mod app;

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use app::{KEY_VAR, Load, Options, Report, Server, ms};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let entries = match option("--entries").map(|n| n.parse::<usize>()).transpose() {
        Ok(n) => n.unwrap_or(0),
        Err(error) => {
            eprintln!("error: --entries: {error}");
            return ExitCode::from(2);
        }
    };
    let addr = match option("--addr").map(|a| a.parse()).transpose() {
        Ok(addr) => addr.unwrap_or(([127, 0, 0, 1], 3000).into()),
        Err(error) => {
            eprintln!("error: --addr: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("--demo") => demo(entries),
        Some("reload") if args.len() == 2 => return reload(&args[1]),
        Some(version @ ("v1" | "v2")) if args.len() >= 2 => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_max_level(tracing::Level::WARN)
                .init();
            app::serve(&Options {
                version: version.to_owned(),
                dir: args[1].clone().into(),
                addr,
                entries,
            })
        }
        _ => {
            eprintln!(
                "usage: binary_upgrade v1|v2 DIR [--addr HOST:PORT] [--entries N]   (with {KEY_VAR} set to a 32-byte hex key)\n       binary_upgrade reload DIR   (the server in DIR starts its new binary; exit status 0 once it took over)\n       binary_upgrade --demo [--entries N]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Asks the server listening in `dir` to start its new binary, and says how it went: exit
/// status 0 once the new binary took over, 1 with the reason if it did not (the old one serves
/// on) — what systemd's `ExecReload=` needs to report a failed reload.
fn reload(dir: &str) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    match microkernel::takeover::request_upgrade(dir) {
        Ok(done) => {
            println!(
                "upgraded: process {} serves ({} handed over)",
                done.successor_pid,
                done.services.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// v1, a load, v2 taking over, the report.
fn demo(entries: usize) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = std::env::temp_dir().join(format!("binary-upgrade-{}", std::process::id()));
    let key = match std::env::var(KEY_VAR) {
        Ok(key) => key,
        Err(_) => random_key()?,
    };
    let exe = std::env::current_exe()?;
    let server = |version: &str, entries: usize| {
        let mut command = Command::new(&exe);
        command.arg(version).arg(&dir).env(KEY_VAR, &key);
        command.args(["--entries", &entries.to_string(), "--addr", "127.0.0.1:0"]);
        command
    };
    let mut v1 = Server::start(server("v1", entries), Duration::from_secs(60))?;
    println!("v1 serves on {} (pid {})", v1.addr, v1.child.id());
    let load = Load::start(v1.addr, 4);
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    let mut v2 = Server::start(server("v2", 0), Duration::from_secs(60))?;
    let serving = Instant::now();
    let exit = v1.child.wait()?;
    let old_gone = started.elapsed();
    println!(
        "v2 took over (pid {}): serving after {}, v1 exited ({exit}) {} after v2 started",
        v2.child.id(),
        ms(serving - started),
        ms(old_gone)
    );
    std::thread::sleep(Duration::from_millis(700));
    let samples = load.finish();
    let report = Report::new(&samples, 1, (started, serving));
    println!("Requests: {}", samples.len());
    for line in report.lines() {
        println!("{line}");
    }
    let replaced = app::in_process_replacement(entries)?;
    println!("In-process replacement of the same services: pause {}", ms(replaced));
    let _ = v2.child.kill();
    let _ = v2.child.wait();
    drop(v2.lines);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A 32-byte key in hex, from the operating system's random source.
fn random_key() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
