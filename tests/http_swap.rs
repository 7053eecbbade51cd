//! The http_swap example under load: concurrent HTTP clients while 100 replacements happen.
//! Zero failed requests, the final count equals the requests made, and every response came
//! from exactly one version (each count was handed out once).

#[path = "../examples/http_swap/app.rs"]
#[allow(dead_code)]
mod app;

use std::collections::BTreeSet;

use microkernel::Kernel;
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};

const CLIENTS: usize = 8;
const SWAPS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_through_100_replacements_lose_nothing() {
    let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::ChaCha20Poly1305).unwrap()));
    let kernel = Kernel::builder().sealer(sealer).build().unwrap();
    let app = app::App::start(kernel.clone()).await.unwrap();
    let (addr, server) = app::serve(app.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let swapping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let swapping = std::sync::Arc::clone(&swapping);
            tokio::spawn(async move {
                let client = app::client();
                let mut answers = Vec::new();
                // Keep requesting while the swaps go on, and a little after.
                while swapping.load(std::sync::atomic::Ordering::Relaxed) || answers.len() < 20 {
                    let (status, body) = app::request(&client, addr, "GET", "/hit").await.expect("request");
                    assert_eq!(status, 200, "a request failed: {body}");
                    answers.push(body);
                }
                answers
            })
        })
        .collect();
    let admin = app::client();
    let mut versions = Vec::new();
    for _ in 0..SWAPS {
        let (status, now) = app::request(&admin, addr, "POST", "/swap").await.unwrap();
        assert_eq!(status, 200, "a swap failed: {now}");
        versions.push(now);
        tokio::task::yield_now().await;
    }
    swapping.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }
    // 100 swaps alternate v1 -> v2 -> v1 ...: the last one put v1 back.
    assert_eq!(versions.len(), SWAPS);
    assert_eq!(versions.last().map(String::as_str), Some("v1"));
    // Each response is "<version> <count>", from one version, and each count was given once.
    let mut counts = BTreeSet::new();
    for answer in &answers {
        let (version, count) = answer.split_once(' ').expect("<version> <count>");
        assert!(version == "v1" || version == "v2", "{answer}");
        assert!(
            counts.insert(count.parse::<u64>().unwrap()),
            "count {count} handed out twice"
        );
    }
    let total = answers.len() as u64;
    assert_eq!(counts, (1..=total).collect(), "every request counted exactly once");
    let (_, final_count) = app::request(&admin, addr, "GET", "/count").await.unwrap();
    assert_eq!(final_count, format!("v1 {total}"));
    assert!(answers.iter().any(|a| a.starts_with("v2")), "no request reached v2");
    server.abort();
    kernel.shutdown().await.unwrap();
}
