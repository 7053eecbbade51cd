//! Registration: a service's slot is made (its state restored from the store), its name and
//! dependencies checked, and it is entered in the registry.

use std::sync::Arc;

use super::{Entry, Kernel};
use crate::messaging::message::{Event, Reply};
use crate::runtime::error::LifecycleError;
use crate::runtime::graph;
use crate::runtime::handle::Handle;
use crate::runtime::notice::Notice;
use crate::runtime::route::Route;
use crate::runtime::service::Handler;
use crate::runtime::slot::{Lifecycle, Slot, SlotOf};

impl Kernel {
    /// Registers a service that speaks the default [`Event`]/[`Reply`] protocol, reachable by
    /// name. It starts in [`Status::Created`](crate::Status::Created); its dependencies need not be registered yet.
    pub fn register<S>(&self, service: S) -> Result<Handle, LifecycleError>
    where
        S: Handler<Request = Event, Response = Reply>,
    {
        let slot = self.new_slot(service)?;
        self.insert(Arc::clone(&slot) as Arc<dyn Lifecycle>, Route::Sync(Arc::clone(&slot)))?;
        Ok(Handle::new(slot))
    }

    /// Registers a service with its own request and response types. Only its [`Handle`]
    /// reaches it; events routed to it by name get [`CallError::Unsupported`](crate::CallError::Unsupported) (415).
    pub fn register_typed<S: Handler>(&self, service: S) -> Result<Handle<S::Request, S::Response>, LifecycleError> {
        let slot = self.new_slot(service)?;
        self.insert(Arc::clone(&slot) as Arc<dyn Lifecycle>, Route::Typed)?;
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
        let invalid = |reason: String| LifecycleError::InvalidName {
            service: name.chars().take(64).collect(),
            reason,
        };
        if let Some(store) = self.shared.store() {
            store.check_name(name).map_err(|e| invalid(e.to_string()))?;
        }
        if self.shared.sealer().is_some() && name.len() > crate::seal::envelope::MAX_NAME_LEN {
            return Err(invalid(format!(
                "{} bytes; a sealed state's header holds at most {} bytes of service name",
                name.len(),
                crate::seal::envelope::MAX_NAME_LEN
            )));
        }
        match graph::listed_twice(deps) {
            Some(dependency) => Err(LifecycleError::DuplicateDependency {
                service: name.to_owned(),
                dependency: dependency.to_owned(),
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn insert(&self, lifecycle: Arc<dyn Lifecycle>, route: Route) -> Result<(), LifecycleError> {
        let name = Arc::clone(lifecycle.name());
        let deps = lifecycle.dependencies();
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
