//! One node process: a kernel with the NATS store, waiting for the counter's claim, serving it
//! while it holds it, and handing it over when told to quit.

use std::time::Duration;

use microkernel::Kernel;
use microkernel::nats::async_nats;
use microkernel::nats::{NatsStore, NatsStoreOptions, Node, NodeOptions};
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};

use crate::counter;

pub const KEY_ENV: &str = "MK_CLUSTER_KEY";

/// Runs node `name` with the counter of `version` until `cluster.<name>.quit` is requested.
pub async fn run(name: &str, version: u32, url: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = async_nats::connect(url).await?;
    // One XChaCha20-Poly1305 key shared by every node: 192-bit random nonces, so the nodes
    // need not coordinate their seal counts (docs/SECURITY.md, "Several nodes").
    let key = Key::from_env(Algorithm::XChaCha20Poly1305, KEY_ENV)?;
    let store = NatsStore::open(client.clone(), "cluster-states", NatsStoreOptions::default()).await?;
    let kernel = Kernel::builder()
        .sealer(Sealer::new(Keyring::new(1, key)))
        .store(store)
        .build()?;
    let options = NodeOptions::default()
        .claims_bucket("cluster-owners")
        .answers_bucket("cluster-answers")
        .claim_ttl(Duration::from_secs(3));
    let node = Node::open(&kernel, client.clone(), name, options).await?;
    let mut quit = client.subscribe(format!("cluster.{name}.quit")).await?;
    println!("up, v{version}");

    let taking = node.take_over("counter", Duration::from_secs(3600), move |k| {
        counter::register(k, version)
    });
    tokio::select! {
        owned = taking => {
            let owned = owned?;
            println!("serving counter with v{version} (state restored from the store, upgraded through its chain)");
            let request = futures_next(&mut quit).await;
            owned.hand_over().await?;
            println!("handed counter over");
            reply(&client, request).await;
        }
        request = futures_next(&mut quit) => reply(&client, request).await,
    }
    kernel.shutdown().await?;
    Ok(())
}

async fn futures_next(subscriber: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    use futures_util::StreamExt;
    subscriber.next().await
}

async fn reply(client: &async_nats::Client, request: Option<async_nats::Message>) {
    if let Some(reply_to) = request.and_then(|m| m.reply) {
        let _ = client.publish(reply_to, "bye".into()).await;
        let _ = client.flush().await;
    }
}
