//! What a service is: its metadata and state plumbing ([`Service`], usually derived) and its
//! behaviour ([`Handler`], written by the user).

use crate::runtime::context::Context;
use crate::state::Migratable;

pub use crate::boxed::BoxError;

/// What `#[derive(Service)]` generates: the service's name, its dependencies, and how its state
/// leaves and enters an instance during a replacement.
///
/// Implement it by hand only to validate state on import or to compute the name at run time.
pub trait Service {
    /// The state that moves across a replacement; [`Stateless`](crate::Stateless) for none.
    type State: Migratable;

    /// The name the kernel registers the service under.
    fn name(&self) -> &str;

    /// Names of the services that must be running before this one starts, each once. Owned, so
    /// that names computed at run time need no `'static` (and no leak): the kernel asks when
    /// the service registers and when it is replaced, never on a call.
    ///
    /// ```
    /// use microkernel::{BoxError, Service, Stateless};
    ///
    /// /// A cache in front of a database chosen by configuration.
    /// struct Cache {
    ///     database: String,
    /// }
    ///
    /// impl Service for Cache {
    ///     type State = Stateless;
    ///     fn name(&self) -> &str {
    ///         "cache"
    ///     }
    ///     fn dependencies(&self) -> Vec<String> {
    ///         vec![self.database.clone()]
    ///     }
    ///     fn export_state(&self) -> Result<&Stateless, BoxError> {
    ///         Ok(&Stateless)
    ///     }
    ///     fn import_state(&mut self, _: Stateless) -> Result<(), BoxError> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let cache = Cache { database: format!("db-{}", 7) };
    /// assert_eq!(cache.dependencies(), ["db-7"]);
    /// ```
    fn dependencies(&self) -> Vec<String>;

    /// Lends the current state for encoding. An error aborts a replacement before anything
    /// changed.
    fn export_state(&self) -> Result<&Self::State, BoxError>;

    /// Takes over a state exported by an earlier version (already upgraded to `Self::State`).
    /// An error aborts a replacement; the old version keeps serving.
    fn import_state(&mut self, state: Self::State) -> Result<(), BoxError>;
}

/// A service's behaviour: lifecycle hooks and a request handler.
///
/// The kernel runs at most one hook or handler of a service at a time, with `&mut self`, on the
/// caller's thread. Each receives a [`Context`] to call other services, push events and log.
///
/// ```
/// use microkernel::{Context, Event, Reply, Handler};
///
/// #[derive(microkernel::Service, Default)]
/// #[service(name = "echo")]
/// struct Echo;
///
/// impl Handler for Echo {
///     type Request = Event;
///     type Response = Reply;
///     fn handle(&mut self, ev: Event, _ctx: &Context<'_>) -> Reply {
///         Reply::ok("echo service handled", format!("from {}: {}", ev.from, ev.content))
///     }
/// }
///
/// let kernel = microkernel::Kernel::new();
/// let echo = kernel.register(Echo)?;
/// kernel.start_all()?;
/// let reply = echo.call(Event::new("echo", "doc", "greet", "hi"))?;
/// assert_eq!(reply.to_string(), "{0 echo service handled from doc: hi}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Handler: Service + Send + 'static {
    /// What callers send. [`Event`](crate::Event) for services reachable by name.
    type Request: Send + 'static;
    /// What the handler returns. [`Reply`](crate::Reply) for services reachable by name.
    type Response: Send + 'static;

    /// Runs when the service starts; its dependencies are running. An error marks it Failed.
    fn start(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// Runs when the service stops; its dependants have stopped.
    fn stop(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// Answers one request.
    fn handle(&mut self, request: Self::Request, ctx: &Context<'_>) -> Self::Response;
}
