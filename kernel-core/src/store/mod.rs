//! Where sealed states live between runs: the [`StateStore`] trait, its embedded default
//! [`DirStore`] (a directory of files), and the [`conformance`] suite every backend runs.
//!
//! A kernel given a store (with [`KernelBuilder::store`](crate::KernelBuilder::store)) saves a
//! service's state when it stops and on [`Kernel::checkpoint`](crate::Kernel::checkpoint), and
//! a service registering while the store holds its state starts from it, upgraded through its
//! chain: this is how a new binary takes over the state of the old one across a restart.
//!
//! A store keeps **sealed objects** ([`SealedObject`]): the kernel seals a state before it
//! hands it over and opens it after it comes back, so a backend never holds a key and can
//! read nothing of a state but the envelope's clear header (service, state version,
//! generation).

mod block_on;
pub mod conformance;
mod dir;
mod error;
mod files;
mod platform;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use block_on::block_on;
pub use dir::{DEFAULT_MAX_STATE_BYTES, DirStore, MAX_NAME_LEN, StoreOptions, check_name, read_state_file};
pub use error::{Location, StoreError};

use crate::seal::{SealError, SealedObject};
use crate::state::StateTag;

/// What a store's operations return: a future of the result, `Send`, borrowing the store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A place that keeps one sealed state per service: the seam between the kernel and its
/// persistence (a directory, a NATS JetStream bucket, …).
///
/// Operations return futures, so that a backend whose client is async needs no `block_on` of
/// its own: the synchronous kernel drives them with [`block_on`] on the thread that saves or
/// restores (never an async runtime's worker), and async code awaits them. A backend that needs
/// a runtime to make progress (timers, sockets) spawns its work onto a runtime it holds and
/// returns a future waiting for the result, which every executor can poll. The directory store's
/// futures are ready at once.
///
/// # What every backend guarantees
///
/// The [`conformance`] suite checks each of these; run it with one line
/// ([`store_conformance!`](crate::store_conformance)).
///
/// - **Atomic replace.** A save replaces the service's object as a whole or not at all: a
///   reader (or a crash) sees the old object or the new one, never a mix.
/// - **Generations never go back.** Per service, the store remembers the newest generation it
///   has written or loaded ([`SealedObject::generation`]) and refuses a save of a generation not
///   above it ([`StoreError::Stale`], the object untouched), and refuses to load an object older
///   than it ([`StoreError::Replayed`], the object untouched). Concurrent saves of one service
///   are ordered by generation: the newest wins whatever the interleaving.
/// - **One owner at a time.** While a store holds a service's state, no other store (in this or
///   another process or host) writes it: opening a second store over the same place fails
///   ([`StoreError::Locked`]), or its writes fail ([`StoreError::Conflict`]) and leave the
///   object as it was.
/// - **Untouched on failure.** A load never changes what is stored; an object that cannot be
///   used stays as it is until [`set_aside`](Self::set_aside) moves it away; a refused save
///   writes nothing.
/// - **Bounded.** An object over the store's size limit is refused before it is written or read
///   ([`StoreError::TooLarge`]).
/// - **Errors name the object.** Every error about an object carries its [`Location`].
pub trait StateStore: Send + Sync + fmt::Debug + 'static {
    /// Whether the store can keep a state for a service of this name (checked when a service
    /// registers, before anything is stored).
    fn check_name(&self, service: &str) -> Result<(), StoreError>;

    /// Where the service's state is (or would be) kept, for errors and logs.
    fn location(&self, service: &str) -> Location;

    /// Replaces the service's object by `object`, atomically, unless the store has written or
    /// loaded a generation at least as new for it ([`StoreError::Stale`]). Returns where it was
    /// written.
    fn save<'a>(&'a self, service: &'a str, object: SealedObject) -> StoreFuture<'a, Location>;

    /// The service's object, or `None` if the store holds none. Refuses an object older than
    /// what the store has written or loaded for the service ([`StoreError::Replayed`]).
    fn load<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Stored>>;

    /// Moves the service's object out of the way, kept for inspection (for
    /// [`LoadPolicy::StartFreshKeepAside`]); returns where it went, or `None` if there was none.
    fn set_aside<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Location>>;

    /// The newest generation the store has written or loaded for the service (0 if none): a
    /// service registering goes on above it, whatever became of the object.
    fn known_generation(&self, service: &str) -> u64;

    /// Begins writing the service's object of `generation` part by part (a large state's
    /// segmented envelope, sealed as it is encoded), so that the kernel never holds it whole to
    /// save it. `None`, the default, if the store takes whole objects only ([`save`](Self::save)).
    /// A backend that streams keeps every guarantee above: nothing is visible before
    /// [`ObjectWriter::commit`], and a writer dropped before leaves nothing behind.
    ///
    /// The kernel calls [`ObjectWriter::write`] while it holds the service (its state is being
    /// encoded): calls to the service wait meanwhile, so a backend whose writes are slow (a
    /// remote one) should keep returning `None` here. It calls `commit` after releasing it.
    fn begin_save<'a>(&'a self, service: &'a str, generation: u64) -> Option<Box<dyn ObjectWriter<'a> + 'a>> {
        let _ = (service, generation);
        None
    }
}

/// A service's object being written part by part ([`StateStore::begin_save`]).
pub trait ObjectWriter<'a>: Send {
    /// Appends the next part; refuses to go past the store's size limit
    /// ([`StoreError::TooLarge`], nothing kept).
    fn write(&mut self, part: &[u8]) -> StoreFuture<'_, ()>;

    /// Makes what was written the service's object, atomically, unless the store has written or
    /// loaded a generation at least as new for it ([`StoreError::Stale`], nothing kept): the
    /// same checks as [`StateStore::save`]. Returns where it was written.
    fn commit(self: Box<Self>) -> StoreFuture<'a, Location>;
}

/// An object read from a store.
#[derive(Debug)]
#[non_exhaustive]
pub struct Stored {
    /// Where it was read from.
    pub location: Location,
    /// The sealed state.
    pub object: SealedObject,
}

impl Stored {
    /// An object read from `location`.
    pub fn new(location: Location, object: SealedObject) -> Self {
        Self { location, object }
    }
}

/// What a registering service does with its stored state: when none is stored, and when the
/// one stored cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadPolicy {
    /// Refuse to register the service if its stored state cannot be used (the default): the
    /// error names the object and the reason. A service with no stored state starts from the
    /// state it was given ([`Notice::NoStoredState`](crate::Notice::NoStoredState) says so).
    #[default]
    Fail,
    /// As [`Fail`](Self::Fail), and refuse to register a service that has no stored state
    /// ([`LifecycleError::NoStoredState`](crate::LifecycleError::NoStoredState)): for programs
    /// that must continue from their saved state, where a wrong store path must not silently
    /// start from scratch.
    RequireStored,
    /// Move the object aside ([`StateStore::set_aside`]; the directory store renames the file
    /// to `<service>.state.rejected-<unix seconds>`) and start the service with its default
    /// state. Only for services whose state may be rebuilt.
    StartFreshKeepAside,
}

/// Reads the state tag of a stored file without a key (for tools): the envelope header is clear
/// (and not yet authenticated).
pub fn peek_tag(blob: &[u8]) -> Result<StateTag, SealError> {
    crate::seal::envelope::Header::parse(blob).map(|(h, _)| h.state)
}
