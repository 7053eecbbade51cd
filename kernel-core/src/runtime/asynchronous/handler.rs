//! What an async service is: the [`AsyncHandler`] a user writes, and the erased instance an
//! async slot holds.

use std::future::Future;

use std::pin::Pin;
use tracing::Instrument;

use super::AsyncContext;
use crate::boxed::BoxError;
use crate::runtime::service::Service;
use crate::runtime::slot::Plumbing;

/// An async service's behaviour: async lifecycle hooks and an async request handler. Its name,
/// dependencies and state come from [`Service`], derived as for a synchronous service.
///
/// The kernel runs at most one hook or handler of a service at a time, with `&mut self`; callers
/// waiting for it are served in the order they arrived. A handler may `.await` anything,
/// including calls to other services through its [`AsyncContext`].
///
/// ```
/// use microkernel::asynchronous::{AsyncContext, AsyncHandler};
/// use microkernel::{Event, Migratable, Reply};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Migratable, Default)]
/// #[migratable(version = 1)]
/// struct Hits {
///     count: u64,
/// }
///
/// #[derive(microkernel::Service, Default)]
/// #[service(name = "hits")]
/// struct Counter {
///     #[state]
///     hits: Hits,
/// }
///
/// impl AsyncHandler for Counter {
///     type Request = Event;
///     type Response = Reply;
///     async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
///         tokio::task::yield_now().await; // anything may be awaited here
///         self.hits.count += 1;
///         Reply::ok("counted", self.hits.count.to_string())
///     }
/// }
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let kernel = microkernel::Kernel::new();
/// let hits = kernel.register_async(Counter::default()).await?;
/// kernel.start_all_async().await?;
/// let reply = hits.call(Event::new("hits", "doc", "hit", "")).await?;
/// assert_eq!(reply.data, "1");
/// kernel.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub trait AsyncHandler: Service + Send + 'static {
    /// What callers send. [`Event`](crate::Event) for services reachable by name.
    type Request: Send + 'static;
    /// What the handler returns. [`Reply`](crate::Reply) for services reachable by name.
    type Response: Send + 'static;

    /// Runs when the service starts; its dependencies are running. An error marks it Failed.
    fn start(&mut self, ctx: &AsyncContext) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs when the service stops; its dependants have stopped.
    fn stop(&mut self, ctx: &AsyncContext) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Answers one request.
    fn handle(&mut self, request: Self::Request, ctx: &AsyncContext) -> impl Future<Output = Self::Response> + Send;
}

/// A boxed, sendable future.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An async service with its types erased down to its protocol: what an async slot holds.
pub(crate) trait AsyncInstance<Req, Resp>: Plumbing {
    fn start<'a>(&'a mut self, ctx: &'a AsyncContext) -> BoxFuture<'a, Result<(), BoxError>>;
    fn stop<'a>(&'a mut self, ctx: &'a AsyncContext) -> BoxFuture<'a, Result<(), BoxError>>;
    /// Answers one request as part of chain `chain`, owning the instance for the while (so
    /// the work is `'static`: the kernel can finish it if the caller goes away), and hands the
    /// instance back with the response. One allocation per call.
    fn serve(
        self: Box<Self>,
        request: Req,
        ctx: AsyncContext,
        chain: u64,
    ) -> BoxFuture<'static, (BoxAsyncInstance<Req, Resp>, Resp)>;
}

impl<S: AsyncHandler> AsyncInstance<S::Request, S::Response> for S {
    fn start<'a>(&'a mut self, ctx: &'a AsyncContext) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(AsyncHandler::start(self, ctx))
    }

    fn stop<'a>(&'a mut self, ctx: &'a AsyncContext) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(AsyncHandler::stop(self, ctx))
    }

    fn serve(
        self: Box<Self>,
        request: S::Request,
        ctx: AsyncContext,
        chain: u64,
    ) -> BoxFuture<'static, (BoxAsyncInstance<S::Request, S::Response>, S::Response)> {
        // A DEBUG span: a user's events inside the handler carry the service's name; with DEBUG
        // off it costs next to nothing.
        let span = tracing::debug_span!("handle", service = %ctx.service());
        Box::pin(
            super::chain::within(chain, async move {
                let mut this = self;
                let response = AsyncHandler::handle(&mut *this, request, &ctx).await;
                (this as BoxAsyncInstance<S::Request, S::Response>, response)
            })
            .instrument(span),
        )
    }
}

pub(crate) type BoxAsyncInstance<Req, Resp> = Box<dyn AsyncInstance<Req, Resp>>;
