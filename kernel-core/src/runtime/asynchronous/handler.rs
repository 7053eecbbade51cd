//! What an async service is: the [`AsyncHandler`] a user writes, and the erased instance an
//! async slot holds.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::AsyncContext;
use crate::boxed::BoxError;
use crate::runtime::lifecycle::Plumbing;
use crate::runtime::service::Service;

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

/// What a handler's work ends with: its response, or the payload of the panic that ended it.
pub(crate) type Served<Resp> = Result<Resp, Box<dyn Any + Send>>;

/// An async service with its types erased down to its protocol: what an async slot holds.
///
/// A request is served in place: the handler's future lives in storage the instance keeps
/// from call to call (no allocation per call) and owns the service while it runs, so the
/// instance can be moved — to a task of the runtime, if the caller goes away — and the work
/// finished there.
pub(crate) trait AsyncInstance<Req, Resp>: Send {
    /// The state plumbing; `None` once a panic of its handler lost the service.
    fn plumbing(&self) -> Option<&dyn Plumbing>;
    /// The `start` hook's future; `None` if the service was lost.
    fn start(&mut self) -> Option<BoxFuture<'_, Result<(), BoxError>>>;
    /// The `stop` hook's future; `None` if the service was lost.
    fn stop(&mut self) -> Option<BoxFuture<'_, Result<(), BoxError>>>;
    /// Starts answering `request` as part of chain `chain`, and polls the handler once: most
    /// handlers are done then. `Pending`: the work goes on in [`resume`](Self::resume).
    /// Not called while a handler's work is unfinished, nor once the service is lost.
    fn serve(&mut self, request: Req, chain: u64, cx: &mut Context<'_>) -> Poll<Served<Resp>>;
    /// Polls the unfinished work of [`serve`](Self::serve). After a panic (`Ready(Err)`), the
    /// service is lost.
    fn resume(&mut self, chain: u64, cx: &mut Context<'_>) -> Poll<Served<Resp>>;
}

pub(crate) type BoxAsyncInstance<Req, Resp> = Box<dyn AsyncInstance<Req, Resp>>;

/// The service with what its handler is given, owned by the handler's work while it runs.
struct Owned<S> {
    service: S,
    ctx: AsyncContext,
}

/// One request answered: the work that owns the service, and gives it back.
async fn serve_one<S: AsyncHandler>(mut owned: Box<Owned<S>>, request: S::Request) -> (Box<Owned<S>>, S::Response) {
    let Owned { service, ctx } = &mut *owned;
    let response = AsyncHandler::handle(service, request, ctx).await;
    (owned, response)
}

/// An async service and the storage its handler's work runs in. `F` is the future of
/// [`serve_one`], `M` the function that makes it (named so that the future's type can be).
struct Runner<S, M, F> {
    /// The service when no handler runs; the work has it while one does; `None` for good once
    /// a panic lost it.
    idle: Option<Box<Owned<S>>>,
    /// The current (or last) handler's work, in storage kept from call to call.
    work: Pin<Box<Option<F>>>,
    make: M,
    /// The handler's DEBUG span: a user's events inside the handler carry the service's name;
    /// with DEBUG off it costs next to nothing.
    span: tracing::Span,
}

/// An async service, boxed as a slot holds it, with `ctx` for its hooks and handler.
pub(crate) fn boxed<S: AsyncHandler>(service: S, ctx: AsyncContext) -> BoxAsyncInstance<S::Request, S::Response> {
    Box::new(runner(service, ctx, serve_one::<S>))
}

fn runner<S, M, F>(service: S, ctx: AsyncContext, make: M) -> Runner<S, M, F>
where
    M: Fn(Box<Owned<S>>, S::Request) -> F,
    S: AsyncHandler,
{
    Runner {
        idle: Some(Box::new(Owned { service, ctx })),
        work: Box::pin(None),
        make,
        span: tracing::Span::none(),
    }
}

impl<S, M, F> AsyncInstance<S::Request, S::Response> for Runner<S, M, F>
where
    S: AsyncHandler,
    M: Fn(Box<Owned<S>>, S::Request) -> F + Send + 'static,
    F: Future<Output = (Box<Owned<S>>, S::Response)> + Send + 'static,
{
    fn plumbing(&self) -> Option<&dyn Plumbing> {
        self.idle.as_deref().map(|owned| &owned.service as &dyn Plumbing)
    }

    fn start(&mut self) -> Option<BoxFuture<'_, Result<(), BoxError>>> {
        let Owned { service, ctx } = self.idle.as_deref_mut()?;
        Some(Box::pin(AsyncHandler::start(service, ctx)))
    }

    fn stop(&mut self) -> Option<BoxFuture<'_, Result<(), BoxError>>> {
        let Owned { service, ctx } = self.idle.as_deref_mut()?;
        Some(Box::pin(AsyncHandler::stop(service, ctx)))
    }

    #[inline]
    fn serve(&mut self, request: S::Request, chain: u64, cx: &mut Context<'_>) -> Poll<Served<S::Response>> {
        let Some(owned) = self.idle.take() else {
            unreachable!("the slot serves no request while a handler runs or after the service was lost")
        };
        self.span = tracing::debug_span!("handle", service = %owned.ctx.service());
        let work = (self.make)(owned, request);
        self.work.set(Some(work));
        self.resume(chain, cx)
    }

    #[inline]
    fn resume(&mut self, chain: u64, cx: &mut Context<'_>) -> Poll<Served<S::Response>> {
        let polled = {
            let _chain = crate::runtime::caller::Scope::enter(chain);
            let _span = self.span.enter();
            let work = &mut self.work;
            catch_unwind(AssertUnwindSafe(|| match work.as_mut().as_pin_mut() {
                Some(work) => work.poll(cx),
                None => unreachable!("resumed with no work"),
            }))
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready((owned, response))) => {
                // The finished work owns nothing now; its storage is reused by the next call.
                self.idle = Some(owned);
                Poll::Ready(Ok(response))
            }
            Err(panic) => {
                // The work unwound with the service inside it: drop what is left of it.
                let work = &mut self.work;
                let _ = catch_unwind(AssertUnwindSafe(|| work.set(None)));
                Poll::Ready(Err(panic))
            }
        }
    }
}
