//! The http_swap application: an async "hits" service that counts requests, in two versions
//! whose states convert both ways, behind an axum router. Shared by the example (`main.rs`) and
//! its test (`tests/http_swap.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use microkernel::asynchronous::{AsyncContext, AsyncHandle, AsyncHandler};
use microkernel::{Event, Kernel, Migratable, Reply};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 1)]
pub struct HitsV1 {
    pub count: u64,
}

/// Version 2 also counts how many times it was swapped in.
#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 2, from = HitsV1, down = down_v2)]
pub struct HitsV2 {
    pub count: u64,
    pub arrivals: u64,
}

impl From<HitsV1> for HitsV2 {
    fn from(v1: HitsV1) -> Self {
        Self {
            count: v1.count,
            arrivals: 0,
        }
    }
}

fn down_v2(v2: &HitsV2) -> HitsV1 {
    HitsV1 { count: v2.count }
}

#[derive(microkernel::Service, Default)]
#[service(name = "hits")]
pub struct HitsServiceV1 {
    #[state]
    hits: HitsV1,
}

impl AsyncHandler for HitsServiceV1 {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, ev: Event, _: &AsyncContext) -> Reply {
        if ev.kind != "get" {
            self.hits.count += 1;
        }
        Reply::ok("v1", self.hits.count.to_string())
    }
}

#[derive(microkernel::Service, Default)]
#[service(name = "hits")]
pub struct HitsServiceV2 {
    #[state]
    hits: HitsV2,
}

impl AsyncHandler for HitsServiceV2 {
    type Request = Event;
    type Response = Reply;
    async fn start(&mut self, _: &AsyncContext) -> Result<(), microkernel::BoxError> {
        self.hits.arrivals += 1;
        Ok(())
    }
    async fn handle(&mut self, ev: Event, _: &AsyncContext) -> Reply {
        if ev.kind != "get" {
            self.hits.count += 1;
        }
        Reply::ok("v2", self.hits.count.to_string())
    }
}

/// What the routes share: the kernel, a handle to the service, and which version is in.
#[derive(Clone)]
pub struct App {
    pub kernel: Kernel,
    pub hits: AsyncHandle,
    /// Held while a swap runs; tells which version is in.
    on_v2: Arc<tokio::sync::Mutex<bool>>,
}

impl App {
    /// Registers and starts v1 on `kernel`.
    pub async fn start(kernel: Kernel) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let hits = kernel.register_async(HitsServiceV1::default()).await?;
        kernel.start_all_async().await?;
        Ok(Self {
            kernel,
            hits,
            on_v2: Arc::default(),
        })
    }

    /// Replaces v1 by v2, or v2 by v1 (a rollback, the state converted down); returns the
    /// version now serving.
    ///
    /// Runs in a task of its own: a client that disconnects mid-swap drops the request's
    /// future, but the replacement and the record of which version is in still finish together.
    pub async fn swap(&self) -> Result<&'static str, microkernel::ReplaceError> {
        let app = self.clone();
        let swapped = tokio::spawn(async move {
            let mut on_v2 = app.on_v2.lock().await;
            if *on_v2 {
                app.kernel.rollback_async(HitsServiceV1::default()).await?;
            } else {
                app.kernel.replace_async(HitsServiceV2::default()).await?;
            }
            *on_v2 = !*on_v2;
            Ok(if *on_v2 { "v2" } else { "v1" })
        });
        match swapped.await {
            Ok(result) => result,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

/// `GET /hit` counts and answers `<version> <count>`; `GET /count` reads the count;
/// `POST /swap` swaps the version.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/hit", get(hit))
        .route("/count", get(count))
        .route("/swap", post(swap))
        .with_state(app)
}

async fn hit(State(app): State<App>) -> Result<String, (StatusCode, String)> {
    call(&app, "hit").await
}

async fn count(State(app): State<App>) -> Result<String, (StatusCode, String)> {
    call(&app, "get").await
}

async fn call(app: &App, kind: &'static str) -> Result<String, (StatusCode, String)> {
    match app.hits.call(Event::new("hits", "http", kind, "")).await {
        Ok(reply) => Ok(format!("{} {}", reply.message, reply.data)),
        Err(error) => Err((StatusCode::SERVICE_UNAVAILABLE, error.to_string())),
    }
}

async fn swap(State(app): State<App>) -> Result<String, (StatusCode, String)> {
    app.swap()
        .await
        .map(str::to_owned)
        .map_err(|error| (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

/// Serves `app` on `addr` (port 0: an ephemeral one) until the task is dropped; returns the
/// address bound.
pub async fn serve(
    app: App,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router(app)).await });
    Ok((bound, server))
}

/// The HTTP client the demo and the test use (hyper's, keeping connections alive).
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<axum::body::Bytes>,
>;

/// A new client.
pub fn client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// One request: the status and the body as text.
pub async fn request(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> Result<(StatusCode, String), Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::BodyExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::new())?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec())?))
}

/// One request with a fresh client; an error unless the status is 200.
pub async fn call_over_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let (status, body) = request(&client(), addr, method, path).await?;
    if status != StatusCode::OK {
        return Err(format!("{method} {path}: {status} {body}").into());
    }
    Ok(body)
}
