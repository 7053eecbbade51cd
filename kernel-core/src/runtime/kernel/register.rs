//! Registration: a service's slot is made (its state restored from the store), its name and
//! dependencies checked, and it is entered in the registry.

use std::sync::Arc;

use super::{Entry, Kernel};
use crate::messaging::message::{Event, Reply};
use crate::runtime::error::Status;
use crate::runtime::error::{LifecycleError, NameRefusal};
use crate::runtime::graph;
use crate::runtime::handle::Handle;
use crate::runtime::lifecycle::Lifecycle;
use crate::runtime::notice::Notice;
use crate::runtime::route::Route;
use crate::runtime::service::Handler;
use crate::runtime::slot::{Slot, SlotOf};

impl Kernel {
    /// Registers a service that speaks the default [`Event`]/[`Reply`] protocol, reachable by
    /// name. It starts in [`Status::Created`](crate::Status::Created); its dependencies need not be registered yet.
    pub fn register<S>(&self, service: S) -> Result<Handle, LifecycleError>
    where
        S: Handler<Request = Event, Response = Reply>,
    {
        let slot = self.new_slot(service)?;
        self.insert(
            Arc::clone(&slot) as Arc<dyn Lifecycle>,
            Route::Events(Arc::clone(&slot) as _),
        )?;
        Ok(Handle::new(slot))
    }

    /// Registers a service with its own request and response types. Its [`Handle`] reaches
    /// it, and so does a typed call by name ([`Kernel::call_typed`], [`Kernel::handle_typed`]),
    /// whose types are checked against these; an `Event` call, send or push to it by name gets
    /// [`CallError::WrongTypes`](crate::CallError::WrongTypes) (415 as a reply).
    pub fn register_typed<S: Handler>(&self, service: S) -> Result<Handle<S::Request, S::Response>, LifecycleError> {
        let slot = self.new_slot(service)?;
        let route = Route::registered_typed::<S::Request, S::Response, _, Slot<Event, Reply>>(Arc::clone(&slot));
        self.insert(Arc::clone(&slot) as Arc<dyn Lifecycle>, route)?;
        Ok(Handle::new(slot))
    }

    /// The slot for a new service, its state restored from the store if it has a file there.
    fn new_slot<S: Handler>(&self, mut service: S) -> Result<Arc<SlotOf<S>>, LifecycleError> {
        if self.shared.read().contains_key(service.name()) {
            return Err(LifecycleError::Duplicate {
                name: service.name().to_owned(),
            });
        }
        self.check_registrable(service.name(), &service.dependencies())?;
        let generation = self.restore(&mut service)?;
        let name: Arc<str> = service.name().into();
        Ok(Slot::new(
            name,
            Box::new(service),
            Arc::downgrade(&self.shared),
            generation,
        ))
    }

    /// A name the configured store and sealer can carry, and each dependency listed once.
    pub(crate) fn check_registrable(&self, name: &str, deps: &[String]) -> Result<(), LifecycleError> {
        let invalid = |reason| LifecycleError::InvalidName {
            service: name.chars().take(64).collect(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid(NameRefusal::Empty));
        }
        if let Some(store) = self.shared.persistence.store() {
            store.check_name(name).map_err(|e| invalid(NameRefusal::Store(e)))?;
        }
        // Every replacement seals its state (with the kernel's own key if none was configured),
        // and the sealed header carries the name.
        let max = crate::seal::envelope::MAX_NAME_LEN;
        if name.len() > max {
            return Err(invalid(NameRefusal::TooLongToSeal { len: name.len(), max }));
        }
        match graph::listed_twice(deps) {
            Some(dependency) => Err(LifecycleError::DuplicateDependency {
                service: name.to_owned(),
                dependency: dependency.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Removes a service that is not running (created, stopped or failed) from the kernel, so
    /// that the name can be registered again — by a node that handed the service to another
    /// node and may take it back later with the state saved since. Its state is not saved here
    /// (stopping saved it). Services that depend on it stay registered and cannot start until a
    /// service of that name is registered again. Handles to it keep answering
    /// [`CallError::NotRunning`](crate::CallError::NotRunning).
    ///
    /// ```
    /// # use microkernel::{Kernel, Event, Reply, Context, Handler, Service, LifecycleError};
    /// # #[derive(Service)] #[service(name = "echo")] struct Echo;
    /// # impl Handler for Echo { type Request = Event; type Response = Reply;
    /// #     fn handle(&mut self, e: Event, _: &Context) -> Reply { Reply::ok("echo", e.content) } }
    /// let kernel = Kernel::new();
    /// kernel.register(Echo)?;
    /// kernel.start("echo")?;
    /// assert!(matches!(kernel.unregister("echo"), Err(LifecycleError::NotStopped { .. })));
    /// kernel.stop("echo")?;
    /// kernel.unregister("echo")?;
    /// assert_eq!(kernel.status("echo"), None);
    /// kernel.register(Echo)?; // the name is free again
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unregister(&self, name: &str) -> Result<(), LifecycleError> {
        // Under the lifecycle lock: no start can slip in between the check and the removal.
        let _serial = self.shared.lifecycle_lock("unregister")?;
        {
            let mut registry = self.shared.write();
            let entry = registry
                .get(name)
                .ok_or_else(|| LifecycleError::NotFound { name: name.to_owned() })?;
            let status = entry.lifecycle.status();
            if !matches!(status, Status::Created | Status::Stopped | Status::Failed) {
                return Err(LifecycleError::NotStopped {
                    service: name.to_owned(),
                    status,
                });
            }
            registry.remove(name);
            // Threads' cached routes may lead to the removed slot: they are read again.
            self.shared.removals.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        tracing::debug!(service = name, "unregistered");
        Ok(())
    }

    pub(crate) fn insert(&self, lifecycle: Arc<dyn Lifecycle>, route: Route) -> Result<(), LifecycleError> {
        let name = Arc::clone(lifecycle.name());
        let deps: Arc<[String]> = lifecycle.dependencies().into();
        {
            let mut registry = self.shared.write();
            if registry.contains_key(&name) {
                return Err(LifecycleError::Duplicate { name: name.to_string() });
            }
            registry.insert(Arc::clone(&name), Entry { lifecycle, route, deps });
        }
        tracing::debug!(service = %name, "registered");
        self.shared.notify(&Notice::Registered { service: &name });
        Ok(())
    }
}
