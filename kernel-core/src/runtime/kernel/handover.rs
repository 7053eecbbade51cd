//! What a takeover by a new process needs of the kernel (feature `takeover`): every service held
//! for the handover as a replacement holds one — calls arriving meanwhile wait, calls admitted
//! before finish — its state exported and sealed for the successor without writing it to the
//! store, and then either let go (commit) or started again (the takeover failed).

use std::cell::OnceCell;
use std::sync::Arc;

use super::{Kernel, not_found};
use crate::runtime::error::Status;
use crate::runtime::error::{Hook, LifecycleError};
use crate::runtime::lifecycle::{Exported, HandoverHold, Lifecycle, Plumbing};
use crate::runtime::notice::Notice;
use crate::runtime::slot::{HeldSlot, export_now};
use crate::runtime::sync::ReentrantGuard;
use crate::state::EncodedState;
use crate::takeover::TakeoverError;

impl<H: HeldSlot> HandoverHold for H {
    fn run(&mut self, hook: Hook) -> Result<(), LifecycleError> {
        HeldSlot::invoke(self, hook)
    }

    fn mark(&self, status: Status) {
        HeldSlot::set_status(self, status);
    }

    fn current_status(&self) -> Status {
        HeldSlot::status(self)
    }

    fn export_state(&self) -> Result<(EncodedState, u64), LifecycleError> {
        let instance = self.plumbing().ok_or_else(|| LifecycleError::InstanceLost {
            service: self.name().to_string(),
        })?;
        export_now(self.name(), instance, || self.next_generation())
    }
}

/// One service held for a takeover.
struct HeldService<'k> {
    name: Arc<str>,
    hold: Box<dyn HandoverHold + 'k>,
    /// It was running and its stop hook ran: it is started again if the takeover fails.
    stopped: bool,
}

/// The kernel paused for a takeover: its lifecycle lock taken (no service starts, stops, is
/// replaced or unregistered meanwhile) and every service held, dependants first, the running
/// ones stopped. Calls to them wait. Ends with [`let_go`](Self::let_go) (the successor took
/// over: waiting calls get `NotRunning`) or [`take_back`](Self::take_back) (they are served).
pub(crate) struct Paused<'k> {
    kernel: &'k Kernel,
    /// In the order they were held: dependants first.
    held: Vec<HeldService<'k>>,
    /// Released last, after the services.
    _serial: ReentrantGuard<'k>,
}

impl Kernel {
    /// Pauses for a takeover (see [`Paused`]). `services` keeps the slots held for as long as
    /// the pause lasts. If a stop fails, what was stopped is started again and released, and
    /// the error names the service.
    pub(crate) fn pause_for_handover<'k>(
        &'k self,
        services: &'k OnceCell<Vec<Arc<dyn Lifecycle>>>,
    ) -> Result<Paused<'k>, TakeoverError> {
        let serial = self
            .shared()
            .lifecycle_lock("handover")
            .map_err(|source| stop_error("(the kernel's lifecycle lock)", source))?;
        let order = self
            .start_order()
            .map_err(|source| stop_error("(dependency order)", source))?;
        let shared = self.shared();
        let lifecycles = services.get_or_init(|| {
            order
                .iter()
                .rev()
                .filter_map(|name| shared.entry(name).map(|entry| entry.lifecycle))
                .collect()
        });
        let mut paused = Paused {
            kernel: self,
            held: Vec::with_capacity(lifecycles.len()),
            _serial: serial,
        };
        for lifecycle in lifecycles {
            let name = Arc::clone(lifecycle.name());
            // Waits for the calls the service admitted; calls arriving from now on wait.
            let mut hold = match lifecycle.hold_for_handover() {
                Ok(hold) => hold,
                Err(source) => {
                    paused.take_back();
                    return Err(stop_error(&name, source));
                }
            };
            let running = hold.current_status() == Status::Running;
            if running && let Err(source) = hold.run(Hook::Stop) {
                // As a failed stop does: the service is Failed, and stays so.
                hold.mark(Status::Failed);
                shared.notify(&Notice::Failed { service: &name });
                tracing::warn!(service = %name, error = %source, "stop failed while pausing for a takeover");
                drop(hold);
                paused.take_back();
                return Err(stop_error(&name, source));
            }
            paused.held.push(HeldService {
                name,
                hold,
                stopped: running,
            });
        }
        tracing::info!(services = ?paused.stopped(), "paused for a takeover: services stopped and held");
        Ok(paused)
    }

    /// Exports the state of `service` (whatever its status) at its next generation and seals
    /// it with the configured sealer; returns the sealed envelope and its generation. For a
    /// service not held by a pause (registered after it began).
    pub(crate) fn export_for_handover(&self, service: &str) -> Result<(Vec<u8>, u64), TakeoverError> {
        let shared = self.shared();
        let entry = shared.entry(service).ok_or_else(|| TakeoverError::Export {
            service: service.to_owned(),
            source: Box::new(not_found(service)),
        })?;
        let mut export = |instance: &dyn Plumbing, generation: u64| -> Result<Exported<'static>, LifecycleError> {
            let (encoded, _) = export_now(service, instance, || generation)?;
            Ok(Exported::Encoded(encoded))
        };
        let (exported, generation, _in_flight) =
            entry
                .lifecycle
                .export_for_save(&mut export)
                .map_err(|source| TakeoverError::Export {
                    service: service.to_owned(),
                    source: Box::new(source),
                })?;
        match exported {
            Exported::Encoded(encoded) => self.seal_for_handover(service, encoded, generation),
            Exported::Sealed(blob) => Ok((blob, generation)),
            // The exporter above never streams.
            Exported::Streamed(_) => Err(TakeoverError::Seal {
                service: service.to_owned(),
                source: crate::seal::SealError::BadSegments("a handover export was streamed".into()),
            }),
        }
    }

    fn seal_for_handover(
        &self,
        service: &str,
        encoded: EncodedState,
        generation: u64,
    ) -> Result<(Vec<u8>, u64), TakeoverError> {
        let sealer = self.shared().persistence().sealer().ok_or(TakeoverError::NoSealer)?;
        sealer
            .seal_state_at(service, encoded, generation)
            .map(|sealed| (sealed, generation))
            .map_err(|source| TakeoverError::Seal {
                service: service.to_owned(),
                source,
            })
    }
}

impl Paused<'_> {
    /// The services stopped for the takeover, in the order they stopped.
    pub(crate) fn stopped(&self) -> Vec<String> {
        self.held
            .iter()
            .filter(|held| held.stopped)
            .map(|held| held.name.to_string())
            .collect()
    }

    /// The sealed state of `service` and its generation, exported from its held slot; `None`
    /// if the kernel has no such service.
    pub(crate) fn export(&self, service: &str) -> Result<Option<(Vec<u8>, u64)>, TakeoverError> {
        let Some(held) = self.held.iter().find(|held| &*held.name == service) else {
            if self.kernel.status(service).is_none() {
                return Ok(None);
            }
            return self.kernel.export_for_handover(service).map(Some);
        };
        let (encoded, generation) = held.hold.export_state().map_err(|source| TakeoverError::Export {
            service: service.to_owned(),
            source: Box::new(source),
        })?;
        self.kernel.seal_for_handover(service, encoded, generation).map(Some)
    }

    /// The takeover failed: every stopped service starts again, in dependency order, each
    /// released once started (a dependant's `start` may call it) — the calls that waited are
    /// served by it, with the state it had.
    pub(crate) fn take_back(mut self) {
        let shared = self.kernel.shared();
        while let Some(mut held) = self.held.pop() {
            if held.stopped
                && let Err(error) = held.hold.run(Hook::Start)
            {
                held.hold.mark(Status::Failed);
                shared.notify(&Notice::Failed { service: &held.name });
                tracing::error!(service = %held.name, %error, "could not start a service again after a failed takeover");
            }
        }
    }

    /// The successor took over: every service is marked stopped and unregistered, then
    /// released — the calls that waited get `NotRunning`, later ones `NotFound`. Returns the
    /// services that were stopped, in the order they stopped.
    pub(crate) fn let_go(self) -> Vec<String> {
        let stopped = self.stopped();
        let shared = self.kernel.shared();
        for held in self.held.iter().filter(|held| held.stopped) {
            held.hold.mark(Status::Stopped);
            shared.notify(&Notice::Stopped { service: &held.name });
        }
        let order = self.kernel.start_order().unwrap_or_else(|_| self.kernel.services());
        for service in order.iter().rev() {
            if let Err(error) = self.kernel.unregister(service) {
                tracing::warn!(service, %error, "could not unregister a handed-over service");
            }
        }
        drop(self);
        stopped
    }
}

fn stop_error(service: &str, source: LifecycleError) -> TakeoverError {
    TakeoverError::Stop {
        service: service.to_owned(),
        source: Box::new(source),
    }
}
