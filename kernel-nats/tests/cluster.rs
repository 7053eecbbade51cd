//! Three `nats-server`s in a JetStream cluster on loopback (every bucket kept by all three):
//! nodes connected to different servers take a service over and hand it over, a caller on the
//! third server reaching it throughout.
//!
//! Cluster formation takes seconds and depends on the machine's timing, so this one is run by
//! hand: `cargo test -p kernel-nats --test cluster -- --ignored`.

mod counter;
mod server;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use counter::{count, register_v1, register_v2, shared_key};
use kernel_core::Kernel;
use kernel_core::seal::{Keyring, Sealer};
use kernel_nats::{NatsStore, NatsStoreOptions, Node, NodeOptions, calls};

struct Cluster {
    servers: Vec<Option<Child>>,
    urls: Vec<String>,
    dir: PathBuf,
}

impl Cluster {
    fn start() -> Option<Self> {
        // Without nats-server on PATH: the harness says so (or fails when it is required).
        drop(server::NatsServer::start()?);
        let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let clients: Vec<u16> = (0..3).map(|_| free()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free()).collect();
        let dir = std::env::temp_dir().join(format!("mk-cluster-test-{}", std::process::id()));
        let mut servers = Vec::new();
        for i in 0..3 {
            let config = dir.join(format!("n{i}.conf"));
            std::fs::create_dir_all(dir.join(format!("js{i}"))).unwrap();
            let others: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("nats-route://127.0.0.1:{}", routes[j]))
                .collect();
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\ncluster {{ name: mk\n listen: 127.0.0.1:{}\n routes: [{}] }}\n",
                    clients[i],
                    dir.join(format!("js{i}")).display(),
                    routes[i],
                    others.join(", ")
                ),
            )
            .unwrap();
            let child = Command::new("nats-server")
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            servers.push(Some(child));
        }
        let urls = clients.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
        Some(Self { servers, urls, dir })
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node on server `url`, every bucket kept by three servers; waits for the cluster's
/// JetStream to be ready (it elects a leader first).
async fn node(url: &str, name: &str, key: &kernel_core::seal::Key) -> Node {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let client = async_nats::connect(url).await?;
            let store = NatsStore::open(client.clone(), "states", NatsStoreOptions::default().replicas(3)).await?;
            let kernel = Kernel::builder()
                .sealer(Sealer::new(Keyring::new(1, key.clone())))
                .store(store)
                .build()?;
            // A claim outlives a failover of the cluster (a new stream leader takes seconds).
            let options = NodeOptions::default().claim_ttl(Duration::from_secs(10)).replicas(3);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Node::open(&kernel, client, name, options).await?)
        };
        match attempt.await {
            Ok(node) => return node,
            Err(error) if Instant::now() < deadline => {
                eprintln!("cluster not ready yet: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("the cluster did not become ready: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts a three-server cluster (seconds to form); run by hand with --ignored"]
async fn a_three_server_cluster_moves_a_service_between_nodes_on_different_servers() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let key = shared_key();
    let a = node(&cluster.urls[0], "node-a", &key).await;
    let b = node(&cluster.urls[1], "node-b", &key).await;
    let caller = async_nats::connect(&cluster.urls[2]).await.unwrap();

    let owned = a
        .take_over("counter", Duration::from_secs(10), register_v1)
        .await
        .unwrap();
    for n in 1..=3 {
        let reply = calls::call(&caller, count(), Duration::from_secs(10)).await.unwrap();
        assert_eq!(reply.data, n.to_string());
    }
    let taking = tokio::spawn({
        let b = b.clone();
        async move { b.take_over("counter", Duration::from_secs(10), register_v2).await }
    });
    owned.hand_over().await.unwrap();
    let owned = taking.await.unwrap().unwrap();
    let reply = calls::call(&caller, count(), Duration::from_secs(10)).await.unwrap();
    assert_eq!((&*reply.message, &*reply.data), ("v2", "4"));

    owned.hand_over().await.unwrap();
    // Not tested: a server's death. In tries on this machine (nats-server 2.9.10), after one of
    // the three was killed the two others answered "no stream found" for the buckets for more
    // than 30 s, and claims could not be refreshed; not investigated further.
}
