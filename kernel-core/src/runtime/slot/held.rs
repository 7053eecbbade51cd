//! A slot held for a lifecycle change, whatever its kind: what replacement, restart and the
//! hooks do with a held slot is written once, over this trait, and serves synchronous slots
//! ([`Entered`]) and async ones (`AsyncEntered`, feature `tokio`) alike. Each kind says only
//! how it runs a hook (on this thread, or by waiting for the hook's future) and how it stores
//! an instance.

use std::sync::Arc;

use super::{BoxInstance, Entered, SlotCore};
use crate::runtime::error::Status;
use crate::runtime::error::{Hook, LifecycleError};
use crate::runtime::lifecycle::Plumbing;
use crate::runtime::service::Handler;

/// A service's slot, held: nobody else can call, start, stop, save or replace it meanwhile.
pub(crate) trait HeldSlot {
    /// The instance as this kind of slot stores it.
    type Instance: Send + 'static;

    /// What every kind of slot keeps beside its instance.
    fn core(&self) -> &SlotCore;
    /// The current instance's state plumbing; `None` if it was lost (an async handler that
    /// panicked took its instance with it).
    fn plumbing(&self) -> Option<&dyn Plumbing>;
    /// Runs `start` or `stop` on the current instance, panics caught, leaving the status as it
    /// is: a replacement swaps instances inside one Running period, so that nobody reading the
    /// status without the slot sees the service stopped in between.
    fn invoke(&mut self, hook: Hook) -> Result<(), LifecycleError>;
    /// Puts `instance` in the slot and returns the one it replaces.
    fn swap(&mut self, instance: Self::Instance) -> Self::Instance;

    /// The service's name.
    fn name(&self) -> &Arc<str> {
        &self.core().name
    }

    fn status(&self) -> Status {
        self.core().status()
    }

    fn set_status(&self, status: Status) {
        self.core().set_status(status);
    }

    /// The generation of a state exported now (one more than the last).
    fn next_generation(&self) -> u64 {
        self.core().next_generation()
    }

    /// Which instance the slot holds: one more at every swap.
    fn epoch(&self) -> u64 {
        self.core().epoch()
    }

    /// Waits until every save exported from this slot has been written.
    fn wait_for_saves(&self) {
        self.core().wait_for_saves();
    }

    /// Runs a hook and records the outcome: Running or Stopped on success, Failed on an error
    /// or a panic.
    fn run_hook(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        let result = self.invoke(hook);
        self.set_status(status_after(hook, &result));
        result
    }
}

/// A service's status after `hook` ran with `result`.
pub(crate) fn status_after(hook: Hook, result: &Result<(), LifecycleError>) -> Status {
    match (result, hook) {
        (Ok(()), Hook::Stop) => Status::Stopped,
        (Ok(()), _) => Status::Running,
        (Err(_), _) => Status::Failed,
    }
}

/// A held slot that can take a new instance made of a service `S` of its kind.
pub(crate) trait Installs<S>: HeldSlot {
    /// `service` as this slot stores an instance.
    fn instance_of(&self, service: S) -> Self::Instance;
}

impl<Req: Send + 'static, Resp: Send + 'static> HeldSlot for Entered<'_, Req, Resp> {
    type Instance = BoxInstance<Req, Resp>;

    fn core(&self) -> &SlotCore {
        self.slot.core()
    }

    fn plumbing(&self) -> Option<&dyn Plumbing> {
        let instance: &dyn Plumbing = &**self.instance;
        Some(instance)
    }

    fn invoke(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        Entered::invoke(self, hook)
    }

    fn swap(&mut self, instance: Self::Instance) -> Self::Instance {
        Entered::swap(self, instance)
    }
}

impl<S: Handler> Installs<S> for Entered<'_, S::Request, S::Response> {
    fn instance_of(&self, service: S) -> Self::Instance {
        Box::new(service)
    }
}
