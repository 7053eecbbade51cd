//! An axum server whose `/hit` route calls a hot-swappable async service through an
//! `AsyncHandle`, and whose `/swap` route replaces v1 by v2 and back while requests keep
//! coming, the state sealed across each time.
//!
//! ```sh
//! cargo run --features tokio --example http_swap            # serves on 127.0.0.1:3000
//! curl localhost:3000/hit; curl -X POST localhost:3000/swap; curl localhost:3000/hit
//! cargo run --features tokio --example http_swap -- --demo  # a short run that exits
//! ```

mod app;

use std::net::SocketAddr;

use microkernel::Kernel;
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).init();
    let demo = std::env::args().any(|a| a == "--demo");
    let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm)?));
    let kernel = Kernel::builder().sealer(sealer).build()?;
    let app = app::App::start(kernel.clone()).await?;
    let addr: SocketAddr = if demo { "127.0.0.1:0" } else { "127.0.0.1:3000" }.parse()?;
    let (bound, server) = app::serve(app.clone(), addr).await?;
    println!("listening on http://{bound}");
    if !demo {
        server.await??;
        return Ok(());
    }
    // The demo: requests through the server's own route, swaps in between.
    for round in 0..3 {
        let reply = app::call_over_http(bound, "GET", "/hit").await?;
        println!("GET /hit -> {reply}");
        let now = app::call_over_http(bound, "POST", "/swap").await?;
        println!("POST /swap -> {now} serving (round {round})");
    }
    println!("GET /count -> {}", app::call_over_http(bound, "GET", "/count").await?);
    server.abort();
    kernel.shutdown().await?;
    Ok(())
}
