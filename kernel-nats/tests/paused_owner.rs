//! A paused owner: the node serving a service is a separate process, stopped with SIGSTOP. It
//! stays a member of the NATS queue group (the server drops it only after minutes of missed
//! pings), so requests keep being routed to it. Another node takes the service over once the
//! paused owner's claim expires, and every call is answered within the documented bound —
//! the claim's time to live, plus the take-over, plus one attempt (`calls::MAX_ATTEMPT`) —
//! by the new owner, each exactly once; the old owner, resumed, answers nothing.
//!
//! The owner is paused between calls, as the drill's exactly-once count requires: it sends the
//! calls only once every thread of the owning process has stopped. An owner that stalls in a
//! call, after its write-through save and before its reply, has that call handled again by the
//! next owner when the caller retries it (the record of answers is not saved with each call:
//! docs/GUIDE.md, "Failures").

mod counter;
mod server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use counter::{count, node_with, register_v1};
use kernel_core::code;
use kernel_core::seal::{Algorithm, Key};
use kernel_nats::calls::code::HANDLED_NOT_SAVED;
use kernel_nats::{NodeOptions, calls};

const TTL: Duration = Duration::from_secs(2);
/// What the take-over itself may take on a loaded 2-core machine (the server's expiry of the
/// claim, the new owner's poll, restore, fencing write, start, subscribe), on top of the
/// documented `TTL + MAX_ATTEMPT`: a correctness bound, not a benchmark.
const TAKE_OVER_ALLOWANCE: Duration = Duration::from_secs(2);
/// Calls started as the owner is paused, at once.
const CALLERS: usize = 8;
/// Calls made one after another while the paused owner is still in the queue group.
const LATER_CALLS: usize = 20;

/// The owning node, run as a child process of the drill below (this test binary again, with
/// `--ignored`): takes the counter over (write-through on), says `ready`, serves until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_paused_owner_delays_a_call_at_most_a_claims_lifetime_and_one_attempt"]
async fn paused_owning_node_process() {
    let url = std::env::var("MK_DRILL_URL").expect("run by the drill, which sets MK_DRILL_URL");
    let key = Key::from_hex(Algorithm::XChaCha20Poly1305, &std::env::var("MK_DRILL_KEY").unwrap()).unwrap();
    let node = node_with(&url, "node-paused", &key, options()).await;
    let _owned = node.take_over("counter", TTL, register_v1).await.unwrap();
    println!("\nMK-DRILL-READY"); // after the harness's "test ... " on the same line
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// A reply saying the call was handled: a success, or (a write-through save that failed — the
/// concurrent saves of issue 21 can) a success not yet saved.
fn handled(reply: &kernel_core::Reply) -> bool {
    reply.code == code::OK || reply.code == HANDLED_NOT_SAVED
}

fn options() -> NodeOptions {
    NodeOptions::default().claim_ttl(TTL).write_through(true)
}

/// The owning process; killed (SIGKILL works on a stopped process too) whatever the test's end.
struct Owner(Child);

impl Owner {
    /// Stops the process (SIGSTOP) and waits until every one of its threads has stopped.
    ///
    /// `kill` returns once the signal is sent, not once it has taken effect: the process stops
    /// when the thread the signal was given to next runs (and stops the others), and until then
    /// the others go on. On a loaded machine the owner went on long enough to take the calls
    /// sent right after `kill` returned, handle one, make its write-through save and only then
    /// stop, before its reply: the next owner, restored from that save, handled the call again
    /// when it was retried, and the count the owner had given was seen by nobody.
    async fn pause(&self) {
        self.signal("-STOP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.stopped() {
            assert!(Instant::now() < deadline, "the owning process did not stop within 10 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Whether every thread of the process is stopped: each thread's state in
    /// `/proc/<pid>/task/<tid>/stat` (Linux), else the process's state as `ps` reports it.
    fn stopped(&self) -> bool {
        let pid = self.0.id();
        let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            let state = Command::new("ps")
                .args(["-o", "state=", "-p", &pid.to_string()])
                .output()
                .unwrap();
            return String::from_utf8_lossy(&state.stdout).trim_start().starts_with('T');
        };
        threads.flatten().all(|thread| {
            // `<tid> (<name>) <state> ...`; a thread that has ended meanwhile runs no more.
            let Ok(stat) = std::fs::read_to_string(thread.path().join("stat")) else {
                return true;
            };
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            matches!(state, Some('T' | 't' | 'Z' | 'X'))
        })
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_delays_a_call_at_most_a_claims_lifetime_and_one_attempt() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let hex: String = (0..32).map(|i| format!("{:02x}", (i * 53 + 7) as u8)).collect();
    let key = Key::from_hex(Algorithm::XChaCha20Poly1305, &hex).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "paused_owning_node_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MK_DRILL_URL", server.url())
        .env("MK_DRILL_KEY", &hex)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let owner = Owner(child);
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .any(|l| l.is_ok_and(|l| l.contains("MK-DRILL-READY")))
    });
    assert!(ready.await.unwrap(), "the owning node did not start");

    let client = async_nats::connect(server.url()).await.unwrap();
    let mut counts = Vec::new();
    for _ in 0..5 {
        let reply = calls::call(&client, count(), Duration::from_secs(5)).await.unwrap();
        counts.push(reply.data.parse::<usize>().unwrap());
    }
    assert_eq!(counts, [1, 2, 3, 4, 5], "the owning process serves");

    // Another node waits to take the service over.
    let b = node_with(&server.url(), "node-b", &key, options()).await;
    let taking = tokio::spawn({
        let b = b.clone();
        async move { b.take_over("counter", Duration::from_secs(60), register_v1).await }
    });

    owner.pause().await;
    let paused = Instant::now();
    let bound = TTL + calls::MAX_ATTEMPT + TAKE_OVER_ALLOWANCE;
    let mut waiting = Vec::new();
    for _ in 0..CALLERS {
        let client = client.clone();
        waiting.push(tokio::spawn(async move {
            let started = Instant::now();
            let reply = calls::call(&client, count(), Duration::from_secs(60)).await;
            (reply, started.elapsed())
        }));
    }
    let mut waits = Vec::new();
    for call in waiting {
        let (reply, waited) = call.await.unwrap();
        let reply = reply.unwrap_or_else(|e| panic!("a call failed: {e}"));
        assert!(handled(&reply), "{reply}");
        counts.push(reply.data.parse().unwrap());
        waits.push(waited);
    }
    let owned = taking.await.unwrap().unwrap();
    let taken_over = paused.elapsed();
    eprintln!("paused owner: taken over {taken_over:?} after the pause; calls waited {waits:?}");
    let longest = waits.iter().max().copied().unwrap();
    assert!(
        longest < bound,
        "a call waited {longest:?} for the paused owner, past the bound {bound:?} (claim TTL {TTL:?} + one attempt {:?} + {TAKE_OVER_ALLOWANCE:?} for the take-over)",
        calls::MAX_ATTEMPT
    );

    // The paused process is still in the queue group: a new call may be routed to it first,
    // and loses at most an attempt to it.
    let mut later = Vec::new();
    for _ in 0..LATER_CALLS {
        let started = Instant::now();
        let reply = calls::call(&client, count(), Duration::from_secs(60)).await.unwrap();
        later.push(started.elapsed());
        assert!(handled(&reply), "{reply}");
        counts.push(reply.data.parse().unwrap());
    }
    eprintln!("later calls waited {later:?}");
    let longest = later.iter().max().copied().unwrap();
    let bound = calls::MAX_ATTEMPT + Duration::from_secs(1);
    assert!(
        longest < bound,
        "a call made after the take-over waited {longest:?} (bound {bound:?})"
    );

    // Resumed, the old owner finds its claim expired and answers nothing: the counts go on
    // from the new owner's, with no number twice.
    owner.signal("-CONT");
    for _ in 0..10 {
        let reply = calls::call(&client, count(), Duration::from_secs(10)).await.unwrap();
        assert!(handled(&reply), "{reply}");
        counts.push(reply.data.parse().unwrap());
    }
    counts.sort_unstable();
    let total = 5 + CALLERS + LATER_CALLS + 10;
    assert_eq!(
        counts,
        (1..=total).collect::<Vec<_>>(),
        "every call answered exactly once"
    );
    assert!(owned.is_valid());
    drop(owner);
    owned.hand_over().await.unwrap();
}
