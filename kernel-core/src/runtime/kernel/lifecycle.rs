//! The lifecycle in dependency order: start, stop, cascades, `start_all`/`stop_all`, hooks and
//! their reports, bounded stops.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{Entry, Kernel, Shared, not_found};
use crate::runtime::error::Status;
use crate::runtime::error::{Hook, LifecycleError, StopAllError};
use crate::runtime::graph::{self, Graph};
use crate::runtime::lifecycle::StopRace;
use crate::runtime::notice::Notice;

#[cfg(test)]
mod linear;

impl Kernel {
    /// Starts one service. Its dependencies must be registered and running. Starting a running
    /// service does nothing.
    pub fn start(&self, name: &str) -> Result<(), LifecycleError> {
        let _serial = self.shared.lifecycle_lock("start")?;
        self.ensure_checkpointer();
        let entry = self.shared.entry(name).ok_or_else(|| not_found(name))?;
        if entry.lifecycle.status() == Status::Running {
            return Ok(());
        }
        self.shared.check_running(name, &entry.deps)?;
        self.shared.run_hook(&entry, Hook::Start)
    }

    /// Stops one service. Refuses while running services depend on it, naming them; use
    /// [`stop_cascade`](Self::stop_cascade) to stop them first. Stopping a service that is not
    /// running does nothing.
    pub fn stop(&self, name: &str) -> Result<(), LifecycleError> {
        let _serial = self.shared.lifecycle_lock("stop")?;
        let entry = self.shared.entry(name).ok_or_else(|| not_found(name))?;
        let dependants: Vec<String> = self
            .shared
            .dependants_of(name)
            .into_iter()
            .filter(|(_, dependant)| dependant.lifecycle.status() == Status::Running)
            .map(|(dependant, _)| dependant.to_string())
            .collect();
        if !dependants.is_empty() {
            return Err(LifecycleError::HasRunningDependants {
                service: name.to_owned(),
                dependants,
            });
        }
        self.shared.stop_if_running(&entry)
    }

    /// Stops a service after every running service that depends on it, directly or not,
    /// dependants first. Stops at the first failure, leaving the rest running.
    pub fn stop_cascade(&self, name: &str) -> Result<(), LifecycleError> {
        let _serial = self.shared.lifecycle_lock("stop_cascade")?;
        let services = self.shared.numbered();
        let service = services.graph.number(name).ok_or_else(|| not_found(name))?;
        let order = services.graph.start_order()?;
        let mut affected = services.graph.dependants_closure(service);
        affected[service] = true;
        for &stopping in order.iter().rev().filter(|s| affected[**s]) {
            self.shared.stop_if_running(services.entry(stopping))?;
        }
        Ok(())
    }

    /// Starts every service that is not running, in dependency order. Unknown dependencies and
    /// cycles are refused before anything starts. If a service fails to start, it is marked
    /// Failed, the services this call started are stopped again in reverse order, and the
    /// start error is returned.
    pub fn start_all(&self) -> Result<(), LifecycleError> {
        let _serial = self.shared.lifecycle_lock("start_all")?;
        self.ensure_checkpointer();
        let services = self.shared.numbered();
        let order = services.graph.start_order()?;
        let mut started: Vec<&Entry> = Vec::new();
        for &service in &order {
            let entry = services.entry(service);
            if entry.lifecycle.status() == Status::Running {
                continue;
            }
            let outcome = services
                .dependencies_running(service)
                .and_then(|()| self.shared.run_hook(entry, Hook::Start));
            if let Err(error) = outcome {
                tracing::warn!(service = services.graph.name(service), %error, "start_all failed; stopping what it started");
                for done in started.iter().rev() {
                    if let Err(stop_error) = self.shared.stop_if_running(done) {
                        tracing::warn!(%stop_error, "stopping after a failed start_all failed too");
                    }
                }
                return Err(error);
            }
            started.push(entry);
        }
        Ok(())
    }

    /// Stops every running service in reverse dependency order. Goes on past a failing stop
    /// (that service is marked Failed) and reports every failure. When it returns, no service
    /// runs (a restart that was pending is dropped) and the kernel's own threads (push workers,
    /// supervisor, checkpoints, reaper) have ended; they start again when needed. Only a stop
    /// hook that outlived `stop_timeout` goes on, on its own thread, until it returns.
    pub fn stop_all(&self) -> Result<(), StopAllError> {
        self.shared.stop_all()
    }

    /// Starts the periodic checkpoint thread if one is configured and not running.
    fn ensure_checkpointer(&self) {
        let shared = Arc::downgrade(&self.shared);
        self.shared.persistence.start_checkpoints(move || {
            let Some(shared) = shared.upgrade() else { return false };
            // User code (a state's `Serialize`, `export_state`) is guarded inside; this keeps
            // the thread alive whatever else unwinds.
            match crate::panic::catch(|| shared.checkpoint_all()) {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "periodic checkpoint failed"),
                Err(message) => tracing::error!(%message, "periodic checkpoint panicked; checkpoints go on"),
            }
            true
        });
    }
}

impl Shared {
    /// Runs a start or stop hook and reports the outcome.
    fn run_hook(&self, entry: &Entry, hook: Hook) -> Result<(), LifecycleError> {
        let result = entry.lifecycle.run_hook(hook);
        self.report_hook(entry, hook, result)
    }

    /// Notices, logs and follow-ups (save on stop, supervision's good state) of a hook's result.
    fn report_hook(&self, entry: &Entry, hook: Hook, result: Result<(), LifecycleError>) -> Result<(), LifecycleError> {
        let service = &**entry.lifecycle.name();
        match (&result, hook) {
            (Ok(()), Hook::Stop) => {
                tracing::debug!(service, "stopped");
                self.notify(&Notice::Stopped { service });
                return self.save_after_stop(entry);
            }
            (Ok(()), _) => {
                tracing::debug!(service, "started");
                self.notify(&Notice::Started { service });
                self.restarts().started(service);
            }
            (Err(error), _) => {
                tracing::warn!(service, %error, "hook failed; service marked failed");
                self.notify(&Notice::Failed { service });
            }
        }
        result
    }

    fn stop_if_running(&self, entry: &Entry) -> Result<(), LifecycleError> {
        if entry.lifecycle.status() != Status::Running {
            return Ok(());
        }
        let Some(timeout) = self.stop_timeout else {
            return self.run_hook(entry, Hook::Stop);
        };
        // The stop runs on another thread: from inside the service it would wait for this
        // thread's own slot. Refuse, as an unbounded stop does.
        if entry.lifecycle.held_here() {
            return Err(LifecycleError::Reentrant {
                service: entry.lifecycle.name().to_string(),
            });
        }
        // Run the hook on its own thread so that a hook that never returns cannot hold up the
        // rest of the shutdown. The stopper and this thread agree, under `race`, whether the
        // stop finished in time: a stop that finishes later leaves the service Failed (as
        // reported) and saves its state then, so that nothing the hook did is lost.
        let (tx, rx) = std::sync::mpsc::channel();
        let race = Arc::new(Mutex::new(StopRace::Waiting));
        let (late_entry, late_race) = (entry.clone(), Arc::clone(&race));
        let kernel = self.weak_self();
        // The hook runs for the chain of calls that asked for the stop: a hook that calls back
        // into a service that chain holds is refused at once, as on the caller's own thread.
        let chain = crate::runtime::caller::caller_token();
        let spawned = std::thread::Builder::new()
            .name("microkernel-stop".into())
            .spawn(move || {
                let _chain = crate::runtime::caller::Scope::enter(chain);
                let (result, late) = late_entry.lifecycle.stop_bounded(&late_race);
                if late {
                    stopped_late(kernel.upgrade().as_deref(), &late_entry, result);
                } else {
                    drop(tx.send(result));
                }
            });
        let stopper = match spawned {
            Ok(stopper) => stopper,
            Err(error) => {
                tracing::warn!(%error, "no thread for a bounded stop; stopping without a bound");
                return self.run_hook(entry, Hook::Stop);
            }
        };
        let service = &**entry.lifecycle.name();
        let in_time = match rx.recv_timeout(timeout) {
            Ok(result) => Some(result),
            Err(_) => {
                let mut race = race.lock().unwrap_or_else(PoisonError::into_inner);
                if *race == StopRace::Done {
                    // It finished just now: its result is on the way.
                    drop(race);
                    rx.recv().ok()
                } else {
                    *race = StopRace::Abandoned;
                    entry.lifecycle.abandon_stop();
                    None
                }
            }
        };
        match in_time {
            Some(result) => {
                // It has sent its result and is returning: wait for it, so that no kernel
                // thread outlives `stop_all`.
                let _ = stopper.join();
                self.report_hook(entry, Hook::Stop, result)
            }
            None => {
                tracing::error!(service, ?timeout, "stop did not finish in time; marked failed");
                self.notify(&Notice::Failed { service });
                Err(LifecycleError::StopTimeout {
                    service: service.to_owned(),
                    timeout,
                })
            }
        }
    }

    fn stop_all(&self) -> Result<(), StopAllError> {
        let serial = self.lifecycle_lock("stop_all").map_err(|e| StopAllError(vec![e]))?;
        // Restarts scheduled before this point are dropped: after `stop_all`, nothing runs.
        self.stops.fetch_add(1, Ordering::SeqCst);
        let services = self.numbered();
        // A cycle cannot have started, but stop everything anyway: reverse name order then.
        let order = services
            .graph
            .start_order()
            .unwrap_or_else(|_| (0..services.graph.len()).collect());
        let errors: Vec<LifecycleError> = order
            .iter()
            .rev()
            .filter_map(|service| self.stop_if_running(services.entry(*service)).err())
            .collect();
        // The supervisor may be waiting for the lock to drop a restart: release it first.
        drop(serial);
        self.stop_threads();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(StopAllError(errors))
        }
    }
}

impl Shared {
    /// Ends the kernel's own threads; each starts again when next needed.
    fn stop_threads(&self) {
        self.persistence.stop_checkpoints();
        self.restarts.shutdown();
        self.pusher
            .shutdown(self.stop_timeout.unwrap_or(Duration::from_secs(5)));
        self.reaper.shutdown();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Err(error) = self.stop_all() {
            tracing::warn!(%error, "stopping services while dropping the kernel failed");
        }
    }
}

/// A stop that finished after its timeout: the service stays Failed (as `stop` reported), and
/// the state the hook left is saved, so that nothing it did is lost.
fn stopped_late(kernel: Option<&Shared>, entry: &Entry, result: Result<(), LifecycleError>) {
    let service = &**entry.lifecycle.name();
    tracing::warn!(
        service,
        ok = result.is_ok(),
        "a stop finished after its timeout; the service stays failed"
    );
    let Some(kernel) = kernel else { return };
    if result.is_ok() && kernel.persistence().store().is_some() {
        match kernel.save(entry) {
            Ok(location) => tracing::info!(service, %location, "saved the state of a late stop"),
            Err(error) => tracing::error!(service, %error, "saving the state of a late stop failed"),
        }
    }
}

/// The registry copied for a walk over every service: the entries in name order, numbered as in
/// their graph, so that the walk finds an entry by its number, without a lookup by name.
struct Numbered {
    entries: Vec<Entry>,
    graph: Graph<Arc<str>>,
}

impl Numbered {
    /// The entry of service number `service`.
    fn entry(&self, service: usize) -> &Entry {
        graph::visited(1);
        &self.entries[service]
    }

    /// Every dependency of service number `service` is running; the first that is not (in the
    /// order listed) is named. Its dependencies are all registered: the graph's order was found.
    fn dependencies_running(&self, service: usize) -> Result<(), LifecycleError> {
        for &dependency in self.graph.deps(service) {
            let status = self.entries[dependency].lifecycle.status();
            if status != Status::Running {
                return Err(LifecycleError::DependencyNotRunning {
                    service: self.graph.name(service).to_owned(),
                    dependency: self.graph.name(dependency).to_owned(),
                    status,
                });
            }
        }
        Ok(())
    }
}

impl Shared {
    /// A copy of the registry to walk, numbered in name order with its graph, made under one
    /// read lock: no registry lock is held while service code runs.
    fn numbered(&self) -> Numbered {
        let registry = self.read();
        let services = graph::sorted_by_name(registry.iter());
        let graph = Graph::new(
            services
                .iter()
                .map(|(name, entry)| (Arc::clone(name), &*entry.deps))
                .collect(),
        );
        let entries = services.into_iter().map(|(_, entry)| entry.clone()).collect();
        Numbered { entries, graph }
    }

    /// A copy of the service's entry, if it is registered.
    pub(crate) fn entry(&self, name: &str) -> Option<Entry> {
        graph::visited(1);
        self.read().get(name).cloned()
    }

    /// The registered services that list `service` as a dependency, in name order (from the
    /// registry's reverse edges: no pass over other services).
    pub(crate) fn dependants_of(&self, service: &str) -> Vec<(Arc<str>, Entry)> {
        let mut dependants: Vec<(Arc<str>, Entry)> = self
            .read()
            .dependants(service)
            .map(|(name, entry)| (Arc::clone(name), entry.clone()))
            .collect();
        dependants.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        dependants
    }
}
