//! Failure drills against a real `nats-server`: the owning node killed with SIGKILL (another node
//! takes the service over once the claim expires, from the last saved state — with write-through,
//! nothing acknowledged is lost), and the server itself killed and restarted (nodes reconnect and
//! carry on serving).

mod counter;
mod server;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use counter::{count, node, node_with, register_v1, shared_key};
use kernel_core::seal::{Algorithm, Key};
use kernel_nats::{NodeOptions, calls};

const TTL: Duration = Duration::from_secs(2);

/// The owning node, run as a child process of the drill below (this test binary again, with
/// `--ignored`): it takes the counter over with write-through on, says `ready`, and serves until
/// it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_killed_owner_is_taken_over_without_losing_an_acknowledged_call"]
async fn owning_node_process() {
    let url = std::env::var("MK_DRILL_URL").expect("run by the drill, which sets MK_DRILL_URL");
    let key = Key::from_hex(Algorithm::XChaCha20Poly1305, &std::env::var("MK_DRILL_KEY").unwrap()).unwrap();
    let options = NodeOptions::default().claim_ttl(TTL).write_through(true);
    let node = node_with(&url, "node-doomed", &key, options).await;
    let _owned = node.take_over("counter", TTL, register_v1).await.unwrap();
    println!("\nMK-DRILL-READY"); // after the harness's "test ... " on the same line
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_taken_over_without_losing_an_acknowledged_call() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let hex: String = (0..32).map(|i| format!("{:02x}", (i * 37 + 11) as u8)).collect();
    let key = Key::from_hex(Algorithm::XChaCha20Poly1305, &hex).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "owning_node_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MK_DRILL_URL", server.url())
        .env("MK_DRILL_KEY", &hex)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("MK-DRILL-READY"))),
        "the owning node did not start"
    );

    let client = async_nats::connect(server.url()).await.unwrap();
    for n in 1..=5 {
        let reply = calls::call(&client, count(), Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.data, n.to_string());
    }
    child.kill().unwrap(); // SIGKILL: no handover, no release, no last save
    child.wait().unwrap();
    let killed = Instant::now();

    let survivor = node(&server.url(), "node-survivor", &key, TTL).await;
    let _owned = survivor.take_over("counter", TTL * 4, register_v1).await.unwrap();
    let waited = killed.elapsed();
    let reply = calls::call(&client, count(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        reply.data, "6",
        "write-through: every acknowledged call was saved before its reply"
    );
    // The survivor could take it only once the dead owner's claim had expired.
    assert!(
        waited >= TTL / 2,
        "taken over after {waited:?}, before the claim could expire"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_carry_on_after_the_server_restarts() {
    let Some(mut server) = server::NatsServer::start() else {
        return;
    };
    let key = shared_key();
    let owner = node(&server.url(), "node-a", &key, Duration::from_secs(4)).await;
    let owned = owner.take_over("counter", TTL, register_v1).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    for n in 1..=3 {
        let reply = calls::call(&client, count(), Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.data, n.to_string());
    }

    // Killed and back 200 ms later, on the same port with the same store.
    let _server = tokio::task::spawn_blocking(move || {
        server.restart(Duration::from_millis(200));
        server
    })
    .await
    .unwrap();
    // Both clients reconnect by themselves; the call retries until the node serves again.
    let reply = calls::call(&client, count(), Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.data, "4", "the same node, the same state, after the restart");
    assert!(owned.is_valid(), "the claim survived a short outage");
    owned.hand_over().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_server_stops_serving_before_its_claim_expires() {
    let Some(mut server) = server::NatsServer::start() else {
        return;
    };
    let owner = node(&server.url(), "node-a", &shared_key(), TTL).await;
    let owned = owner.take_over("counter", TTL, register_v1).await.unwrap();
    let cut = Instant::now();
    // Down for longer than a claim lives.
    let restarting = tokio::task::spawn_blocking(move || {
        server.restart(TTL * 2);
        server
    });
    while owner.kernel().status("counter") == Some(kernel_core::Status::Running) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped_after = cut.elapsed();
    assert!(!owned.is_valid());
    // The server keeps a claim TTL past the last refresh it stored, which began before the
    // cut: the claim cannot expire there before TTL after the cut. The node gives up a margin
    // (TTL/10) earlier, by its own clock.
    assert!(
        stopped_after < TTL,
        "stopped {stopped_after:?} after the cut: too late, another node may have started it"
    );
    drop(restarting.await.unwrap());
}
