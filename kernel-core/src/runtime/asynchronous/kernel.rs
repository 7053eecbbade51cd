//! The kernel from async code: registering async services, awaitable calls and pushes, and the
//! lifecycle operations run off the runtime's workers.

use std::sync::Arc;
use std::time::Duration;

use super::chain::off_workers;
use super::handle::AsyncHandle;
use super::handler::AsyncHandler;
use super::slot::{AsyncLifecycle, AsyncSlot};
use crate::messaging::message::{Event, KERNEL, Reply};
use crate::runtime::error::{CallError, LifecycleError, StopAllError};
use crate::runtime::kernel::Kernel;
use crate::runtime::lifecycle::Lifecycle;
use crate::runtime::notice::Notice;
use crate::runtime::persist::CheckpointError;
use crate::runtime::route::Route;
use crate::store::Location;

impl Kernel {
    /// Registers an async service that speaks [`Event`]/[`Reply`], reachable by name from sync
    /// and async callers alike. Call it from within a tokio runtime: the service's futures run
    /// there. Its stored state, if the kernel has a store, is restored off the runtime's workers.
    pub async fn register_async<S>(&self, service: S) -> Result<AsyncHandle, LifecycleError>
    where
        S: AsyncHandler<Request = Event, Response = Reply>,
    {
        let slot = self.new_async_slot(service).await?;
        self.insert(
            Arc::new(AsyncLifecycle(Arc::clone(&slot))) as Arc<dyn Lifecycle>,
            Route::Events(Arc::clone(&slot) as _),
        )?;
        Ok(AsyncHandle::new_async(slot))
    }

    /// Registers an async service with its own request and response types. Its [`AsyncHandle`]
    /// reaches it, and so does a typed call by name ([`Kernel::call_typed_async`],
    /// [`Kernel::call_typed`], [`Kernel::async_handle_typed`]), whose types are checked against
    /// these; an `Event` call to it by name gets [`CallError::WrongTypes`] (415 as a reply).
    pub async fn register_async_typed<S: AsyncHandler>(
        &self,
        service: S,
    ) -> Result<AsyncHandle<S::Request, S::Response>, LifecycleError> {
        let slot = self.new_async_slot(service).await?;
        self.insert(
            Arc::new(AsyncLifecycle(Arc::clone(&slot))) as Arc<dyn Lifecycle>,
            Route::registered_typed::<S::Request, S::Response, _, AsyncSlot<Event, Reply>>(Arc::clone(&slot)),
        )?;
        Ok(AsyncHandle::new_async(slot))
    }

    /// The slot for a new async service, its state restored from the store if it holds one.
    async fn new_async_slot<S: AsyncHandler>(
        &self,
        service: S,
    ) -> Result<Arc<AsyncSlot<S::Request, S::Response>>, LifecycleError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LifecycleError::NoRuntime {
            service: service.name().to_owned(),
        })?;
        if self.status(service.name()).is_some() {
            return Err(LifecycleError::Duplicate {
                name: service.name().to_owned(),
            });
        }
        self.check_registrable(service.name(), &service.dependencies())?;
        let kernel = self.clone();
        let (service, generation) = off_workers(move || {
            let mut service = service;
            let generation = kernel.restore(&mut service);
            (service, generation)
        })
        .await;
        let generation = generation?;
        let name: Arc<str> = service.name().into();
        Ok(AsyncSlot::new(
            name,
            service,
            Arc::downgrade(self.shared_arc()),
            generation,
            runtime,
        ))
    }

    /// A handle to the `Event`/`Reply` service `name`, async or not, to call it from async code
    /// without a name lookup. A service with its own protocol is reached with
    /// [`async_handle_typed`](Self::async_handle_typed) ([`CallError::WrongTypes`] here, as
    /// [`Kernel::handle`] says).
    pub fn async_handle(&self, name: &str) -> Result<AsyncHandle, CallError> {
        self.async_handle_typed(name)
    }

    /// A typed handle to the service `name`, async or not, whatever protocol it speaks: `Req`
    /// and `Resp` are checked against the types it was registered with
    /// ([`CallError::WrongTypes`] when they differ).
    pub fn async_handle_typed<Req: Send + 'static, Resp: Send + 'static>(
        &self,
        name: &str,
    ) -> Result<AsyncHandle<Req, Resp>, CallError> {
        AsyncHandle::of(&self.shared().route(name)?, name)
    }

    /// Calls the service `name` (async or not) with a typed request from async code: the
    /// async spelling of [`Kernel::call_typed`].
    pub async fn call_typed_async<Req: Send + 'static, Resp: Send + 'static>(
        &self,
        name: &str,
        request: Req,
    ) -> Result<Resp, CallError> {
        AsyncHandle::<Req, Resp>::of(
            &self
                .shared()
                .local_route(name, crate::runtime::kernel::TYPED_STAYS_HERE)?,
            name,
        )?
        .call(request)
        .await
    }

    /// Calls the service `to` (async or not) from async code and awaits its reply.
    ///
    /// A name no local service has goes to the kernel's [`RemoteCalls`](super::RemoteCalls),
    /// if it was given one (`KernelBuilder::remote`): the service may run on another node.
    pub async fn call_async(&self, to: &str, event: Event) -> Result<Reply, CallError> {
        match self.async_handle(to) {
            Ok(handle) => handle.call(event).await,
            Err(CallError::NotFound { service }) => match self.shared().remote_for(to) {
                Some(remote) => remote.call(event, None).await,
                None => Err(CallError::NotFound { service }),
            },
            Err(error) => Err(error),
        }
    }

    /// [`call_async`](Self::call_async), waiting at most `timeout` to enter the service.
    pub async fn call_async_timeout(&self, to: &str, event: Event, timeout: Duration) -> Result<Reply, CallError> {
        match self.async_handle(to) {
            Ok(handle) => handle.call_timeout(event, timeout).await,
            Err(CallError::NotFound { service }) => match self.shared().remote_for(to) {
                Some(remote) => remote.call(event, Some(timeout)).await,
                None => Err(CallError::NotFound { service }),
            },
            Err(error) => Err(error),
        }
    }

    /// Pushes an event and awaits its reply for at most `timeout` (tokio's timer): the Go
    /// design's `Push`, as a future. An event addressed to [`KERNEL`] is answered by the kernel;
    /// one addressed to a service is handled on the runtime even if the wait ends first. It
    /// reaches this node's services only, as [`Kernel::push`] does. Failures are reply codes:
    /// 404 unknown or not running, 408 timeout, 415 for a service with its own request type.
    pub async fn push_async(&self, event: Event, timeout: Duration) -> Reply {
        self.shared().notify(&Notice::Pushed { event: &event });
        if event.to == KERNEL {
            return Reply::ok("Handled by kernel", "ok");
        }
        let handle = match self.async_handle(&event.to) {
            Ok(handle) => handle,
            Err(error) => return error.to_reply(),
        };
        let handled = tokio::spawn(async move { handle.call(event).await.unwrap_or_else(|e| e.to_reply()) });
        match tokio::time::timeout(timeout, handled).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(join)) => CallError::Panicked {
                service: "push".into(),
                message: join.to_string(),
            }
            .to_reply(),
            Err(_) => Reply::new(crate::code::TIMEOUT, "Timeout", format!("no reply within {timeout:?}")),
        }
    }

    /// [`start_all`](Self::start_all) from async code, run off the runtime's workers.
    pub async fn start_all_async(&self) -> Result<(), LifecycleError> {
        let kernel = self.clone();
        off_workers(move || kernel.start_all()).await
    }

    /// [`stop_all`](Self::stop_all) from async code, run off the runtime's workers.
    pub async fn stop_all_async(&self) -> Result<(), StopAllError> {
        let kernel = self.clone();
        off_workers(move || kernel.stop_all()).await
    }

    /// [`start`](Self::start) from async code, run off the runtime's workers.
    pub async fn start_async(&self, name: &str) -> Result<(), LifecycleError> {
        let (kernel, name) = (self.clone(), name.to_owned());
        off_workers(move || kernel.start(&name)).await
    }

    /// [`stop`](Self::stop) from async code, run off the runtime's workers.
    pub async fn stop_async(&self, name: &str) -> Result<(), LifecycleError> {
        let (kernel, name) = (self.clone(), name.to_owned());
        off_workers(move || kernel.stop(&name)).await
    }

    /// [`stop_cascade`](Self::stop_cascade) from async code, run off the runtime's workers.
    pub async fn stop_cascade_async(&self, name: &str) -> Result<(), LifecycleError> {
        let (kernel, name) = (self.clone(), name.to_owned());
        off_workers(move || kernel.stop_cascade(&name)).await
    }

    /// [`checkpoint_service`](Self::checkpoint_service) from async code, run off the runtime's
    /// workers.
    pub async fn checkpoint_service_async(&self, name: &str) -> Result<Location, LifecycleError> {
        let (kernel, name) = (self.clone(), name.to_owned());
        off_workers(move || kernel.checkpoint_service(&name)).await
    }

    /// [`send`](Self::send) from async code: routes `event` to the service named by
    /// `event.to` (async or not) and awaits its reply; failures become replies with their codes.
    pub async fn send_async(&self, event: Event) -> Reply {
        let to = event.to.clone();
        self.call_async(&to, event).await.unwrap_or_else(|e| e.to_reply())
    }

    /// [`checkpoint`](Self::checkpoint) from async code, run off the runtime's workers.
    pub async fn checkpoint_async(&self) -> Result<Vec<Location>, CheckpointError> {
        let kernel = self.clone();
        off_workers(move || kernel.checkpoint()).await
    }

    /// Stops every service in reverse dependency order, awaiting their async `stop` hooks (and
    /// saving their states, with a store): how a program with async services ends. Dropping the
    /// last `Kernel` inside a runtime instead stops async services only as far as it can without
    /// blocking.
    pub async fn shutdown(&self) -> Result<(), StopAllError> {
        self.stop_all_async().await
    }

    /// Runs any synchronous kernel operation off the runtime's workers (on the blocking pool):
    /// for a replacement of a synchronous service, say, from async code.
    pub async fn blocking<T: Send + 'static>(&self, operation: impl FnOnce(&Kernel) -> T + Send + 'static) -> T {
        let kernel = self.clone();
        off_workers(move || operation(&kernel)).await
    }
}
