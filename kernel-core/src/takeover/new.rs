//! The taking-over side: a new process connects to the old one, takes its listening sockets,
//! loads each service's sealed state through a [`StateStore`], and commits.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::channel::{self, Channel, PROTOCOL, ToNew, ToOld};
use super::fds::recv_fds;
use super::{DEFAULT_TIMEOUT, TakeoverError};
use crate::seal::SealedObject;
use crate::store::{Location, ObjectWriter, StateStore, StoreError, StoreFuture, Stored};

/// A takeover under way, in the new process (see the [module](super)).
///
/// Dropping it before [`commit`](Self::commit) closes the connection: the old process takes
/// its services back and serves on.
pub struct TakeOver {
    session: Arc<Session>,
    listeners: Vec<(String, Option<OwnedFd>)>,
    old_pid: u32,
    socket: PathBuf,
}

impl fmt::Debug for TakeOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakeOver")
            .field("socket", &self.socket)
            .field("old_pid", &self.old_pid)
            .field(
                "listeners",
                &self.listeners.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The connection, shared with the stores made from it; `None` once committed or given up.
struct Session {
    channel: Mutex<Option<Channel>>,
    old_pid: u32,
    /// The generation of each state received, so that saves go on above it.
    generations: Mutex<HashMap<String, u64>>,
}

impl Session {
    fn close(&self) -> Option<Channel> {
        self.channel.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl TakeOver {
    /// Connects to the process listening in `dir` ([`Handover`](super::Handover)) and takes
    /// its listening sockets; the whole takeover must commit within [`DEFAULT_TIMEOUT`].
    ///
    /// [`TakeoverError::NoOldProcess`] if none listens there: start afresh then.
    pub fn connect(dir: impl AsRef<Path>) -> Result<Self, TakeoverError> {
        Self::connect_timeout(dir, DEFAULT_TIMEOUT)
    }

    /// [`connect`](Self::connect), the takeover bounded by `timeout` on this side.
    pub fn connect_timeout(dir: impl AsRef<Path>, timeout: Duration) -> Result<Self, TakeoverError> {
        let (stream, socket) = channel::connect(dir.as_ref())?;
        let mut channel = Channel::new(stream, timeout);
        channel.send(&ToOld::Hello { protocol: PROTOCOL })?;
        let (names, old_pid) = match channel.recv::<ToNew>()? {
            ToNew::Welcome { listeners, pid } => (listeners, pid),
            ToNew::Refused { reason } => return Err(TakeoverError::Refused { reason }),
            other => return Err(TakeoverError::Protocol(format!("expected Welcome, got {other:?}"))),
        };
        channel.arm()?;
        let fds = recv_fds(channel.stream(), names.len())?;
        tracing::info!(old_pid, listeners = ?names, "connected to the old process to take over");
        Ok(Self {
            session: Arc::new(Session {
                channel: Mutex::new(Some(channel)),
                old_pid,
                generations: Mutex::default(),
            }),
            listeners: names.into_iter().zip(fds.into_iter().map(Some)).collect(),
            old_pid,
            socket,
        })
    }

    /// The old process's id.
    pub fn old_pid(&self) -> u32 {
        self.old_pid
    }

    /// The names of the listening sockets the old process passed.
    pub fn listener_names(&self) -> Vec<&str> {
        self.listeners.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The listening socket passed as `name` (once): turn it into a listener with
    /// `std::net::TcpListener::from(fd)` or `std::os::unix::net::UnixListener::from(fd)`. Do
    /// not accept on it before [`commit`](Self::commit) returns: until then the old process may
    /// take its services back, and a request served here would be lost with this process's
    /// state.
    pub fn take_listener(&mut self, name: &str) -> Option<OwnedFd> {
        self.listeners
            .iter_mut()
            .find(|(n, _)| n == name)
            .and_then(|(_, fd)| fd.take())
    }

    /// A store for [`KernelBuilder::store`](crate::KernelBuilder::store) that loads each
    /// service's state from the old process (which pauses at the first load). Saves are not
    /// kept (use [`store_over`](Self::store_over) to keep them): a kernel built with it passes
    /// its states on by the next takeover only.
    pub fn store(&self) -> HandoverStore {
        HandoverStore {
            session: Arc::clone(&self.session),
            inner: None,
        }
    }

    /// As [`store`](Self::store), with saves (and loads of services the old process does not
    /// have) going to `inner`. `inner` must not be locked by the old process (a
    /// [`DirStore`](crate::DirStore) on the old process's directory is, until it exits).
    pub fn store_over(&self, inner: impl StateStore) -> HandoverStore {
        HandoverStore {
            session: Arc::clone(&self.session),
            inner: Some(Box::new(inner)),
        }
    }

    /// Tells the old process that every service is registered and started here: it unregisters
    /// its own and stops serving. Once this returns `Ok`, serve on the listeners. An error
    /// means the old process did not let go (it serves on): exit without serving.
    pub fn commit(self) -> Result<(), TakeoverError> {
        let mut channel = self.session.close().ok_or(TakeoverError::Over)?;
        channel.send(&ToOld::Commit)?;
        match channel.recv::<ToNew>()? {
            ToNew::Committed => {
                tracing::info!(old_pid = self.old_pid, "took over: the old process let go");
                Ok(())
            }
            ToNew::Failed { reason } => Err(TakeoverError::Failed { reason }),
            other => Err(TakeoverError::Protocol(format!("expected Committed, got {other:?}"))),
        }
    }

    /// Gives the takeover up, telling the old process why (it serves on, and reports `reason`
    /// as [`TakeoverError::Aborted`]). Dropping the `TakeOver` does the same without a reason.
    pub fn abort(self, reason: &str) {
        if let Some(mut channel) = self.session.close() {
            let _ = channel.send(&ToOld::Abort { reason: reason.into() });
        }
    }
}

impl Drop for TakeOver {
    fn drop(&mut self) {
        // Closing the connection is the old process's signal to take everything back.
        if self.session.close().is_some() {
            tracing::warn!(
                old_pid = self.old_pid,
                "takeover dropped before commit; the old process serves on"
            );
        }
    }
}

/// The [`StateStore`] of a new process taking over ([`TakeOver::store`]): `load` asks the old
/// process for the service's state, sealed; everything else goes to the inner store, if any.
pub struct HandoverStore {
    session: Arc<Session>,
    inner: Option<Box<dyn StateStore>>,
}

impl fmt::Debug for HandoverStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoverStore")
            .field("old_pid", &self.session.old_pid)
            .field("inner", &self.inner)
            .finish()
    }
}

impl HandoverStore {
    fn location(&self, service: &str) -> Location {
        Location::key(format!("the handover from process {}", self.session.old_pid), service)
    }

    /// Asks the old process for `service`'s state: `Ok(None)` if it has no such service or the
    /// takeover is over.
    fn load_from_old(&self, service: &str) -> Result<Option<Stored>, StoreError> {
        let mut guard = self.session.channel.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(channel) = guard.as_mut() else {
            return Ok(None);
        };
        let object = self.location(service);
        let failed = |error: TakeoverError| StoreError::Backend {
            object: object.clone(),
            source: Box::new(error),
        };
        let exchange = |channel: &mut Channel| -> Result<Option<(u64, Vec<u8>)>, TakeoverError> {
            channel.send(&ToOld::Load {
                service: service.to_owned(),
            })?;
            match channel.recv::<ToNew>()? {
                ToNew::State { generation } => Ok(Some((generation, channel.recv_raw()?))),
                ToNew::NoState => Ok(None),
                ToNew::Failed { reason } => Err(TakeoverError::Failed { reason }),
                other => Err(TakeoverError::Protocol(format!("expected a state, got {other:?}"))),
            }
        };
        match exchange(channel) {
            Ok(None) => Ok(None),
            Ok(Some((generation, sealed))) => {
                let sealed = SealedObject::from_bytes(sealed).map_err(|source| StoreError::Seal {
                    object: object.clone(),
                    source,
                })?;
                self.session
                    .generations
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(service.to_owned(), generation);
                Ok(Some(Stored::new(object, sealed)))
            }
            Err(error) => {
                // The exchange is broken: close it, so the old process takes everything back.
                *guard = None;
                Err(failed(error))
            }
        }
    }
}

impl StateStore for HandoverStore {
    fn check_name(&self, service: &str) -> Result<(), StoreError> {
        match &self.inner {
            Some(inner) => inner.check_name(service),
            None => Ok(()),
        }
    }

    fn location(&self, service: &str) -> Location {
        match &self.inner {
            Some(inner) => inner.location(service),
            None => HandoverStore::location(self, service),
        }
    }

    fn save<'a>(&'a self, service: &'a str, object: SealedObject) -> StoreFuture<'a, Location> {
        match &self.inner {
            Some(inner) => inner.save(service, object),
            None => {
                tracing::debug!(service, "state not kept: no store behind the takeover");
                let location = HandoverStore::location(self, service);
                Box::pin(std::future::ready(Ok(location)))
            }
        }
    }

    fn load<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Stored>> {
        // Answered at once (the kernel's restore waits on this thread anyway).
        let loaded = self.load_from_old(service);
        match (loaded, &self.inner) {
            (Ok(None), Some(inner)) => inner.load(service),
            (loaded, _) => Box::pin(std::future::ready(loaded)),
        }
    }

    fn set_aside<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Location>> {
        match &self.inner {
            Some(inner) => inner.set_aside(service),
            None => Box::pin(std::future::ready(Ok(None))),
        }
    }

    fn known_generation(&self, service: &str) -> u64 {
        let handed = self
            .session
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .copied()
            .unwrap_or(0);
        handed.max(self.inner.as_ref().map_or(0, |inner| inner.known_generation(service)))
    }

    fn begin_save<'a>(&'a self, service: &'a str, generation: u64) -> Option<Box<dyn ObjectWriter<'a> + 'a>> {
        self.inner
            .as_ref()
            .and_then(|inner| inner.begin_save(service, generation))
    }
}
