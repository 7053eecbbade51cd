//! What can go wrong with a store, each error naming the stored object.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::boxed::BoxError;
use crate::seal::SealError;
use crate::state::StateError;

/// Where a store keeps an object (or where the store itself is): named in every error. Cheap
/// to clone (one `Arc`), so errors stay small.
///
/// ```
/// use microkernel::store::Location;
///
/// let file = Location::file("/var/lib/app/echo.state");
/// assert_eq!(file.to_string(), "`/var/lib/app/echo.state`");
/// let key = Location::key("NATS KV bucket `states`", "echo");
/// assert_eq!(key.to_string(), "`echo` in NATS KV bucket `states`");
/// assert_eq!(key.path(), None);
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location(Arc<Place>);

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Place {
    Path(PathBuf),
    Key { store: String, key: String },
}

impl Location {
    /// A file or directory (the [`DirStore`](super::DirStore)'s state files, its directory).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self(Arc::new(Place::Path(path.into())))
    }

    /// A key in a named store of another kind: `store` as its backend names it (`"NATS KV
    /// bucket \`states\`"`), and the key.
    pub fn key(store: impl Into<String>, key: impl Into<String>) -> Self {
        Self(Arc::new(Place::Key {
            store: store.into(),
            key: key.into(),
        }))
    }

    /// The path, for a location on a file system.
    pub fn path(&self) -> Option<&Path> {
        match &*self.0 {
            Place::Path(path) => Some(path),
            Place::Key { .. } => None,
        }
    }

    /// The store and the key, for a location in a keyed store.
    pub fn store_and_key(&self) -> Option<(&str, &str)> {
        match &*self.0 {
            Place::Path(_) => None,
            Place::Key { store, key } => Some((store, key)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Place::Path(path) => write!(f, "`{}`", path.display()),
            Place::Key { store, key } => write!(f, "`{key}` in {store}"),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::file(path)
    }
}

/// A stored state could not be used or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation on a file or directory failed.
    #[error("cannot {op} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The backend failed (a network error, a server's refusal) for a reason of its own.
    #[error("state store failed on {object}: {source}")]
    Backend {
        /// The object (or the store) it failed on.
        object: Location,
        /// The backend's error.
        source: BoxError,
    },
    /// Another kernel (in this or another process) holds the store.
    #[error("state store {store} is in use by another kernel")]
    Locked {
        /// The store (for the directory store, the directory, whose `.lock` is held).
        store: Location,
    },
    /// Another kernel wrote the object since this store last read or wrote it: this kernel no
    /// longer owns the service's state. Nothing was written.
    #[error("state {object} was written by another owner: {reason}")]
    Conflict {
        /// The object.
        object: Location,
        /// What the backend saw.
        reason: String,
    },
    /// The object is not a valid sealed state for this service and keyring.
    #[error("state {object} cannot be opened: {source}")]
    Seal {
        /// The object.
        object: Location,
        /// Why.
        source: SealError,
    },
    /// The object opened but its state does not decode into the service's state type.
    #[error("state {object} does not decode: {source}")]
    Decode {
        /// The object.
        object: Location,
        /// Why.
        source: StateError,
    },
    /// The service refused the state it was given (`import_state` failed or panicked).
    #[error("the service refused the state from {object}: {source}")]
    Import {
        /// The object.
        object: Location,
        /// What the service's code did.
        source: crate::boxed::ServiceFault,
    },
    /// A save would replace the object by an older state: its generation is not above the
    /// newest this store has written or loaded for the service. The object is left as it is (it
    /// holds the newer state).
    #[error("state {object} holds generation {newest}; refusing to replace it by the older generation {generation}")]
    Stale {
        /// The object.
        object: Location,
        /// The generation refused.
        generation: u64,
        /// The newest generation written or loaded.
        newest: u64,
    },
    /// The object holds an older generation than this store has already written or loaded for
    /// the service: an older copy was put back (a replay). The object is left untouched.
    #[error(
        "state {object} holds generation {found}, older than generation {newest} this store already wrote or loaded: refusing a replayed state"
    )]
    Replayed {
        /// The object.
        object: Location,
        /// The generation in the object.
        found: u64,
        /// The newest generation written or loaded.
        newest: u64,
    },
    /// The service name cannot name a stored object.
    #[error("service name `{0}` cannot name a state file (empty, or contains `/`, NUL, or starts with `.`)")]
    BadName(String),
    /// The service name is too long for the store.
    #[error(
        "service name of {len} bytes is too long for the state store: at most {max} bytes (its state file, and the name a rejected file is set aside under, must fit in a 255-byte file name)"
    )]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The longest name the store takes.
        max: usize,
    },
    /// The path is not a regular file (a link, a FIFO, a device, a directory), or was replaced
    /// while being opened. Nothing was read from it.
    #[error("`{}` is {kind}; the store reads and writes regular files only", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The object is larger than the store's limit; nothing was read or written.
    #[error("state {object} is {size} bytes, over the limit of {limit} bytes (StoreOptions::max_state_bytes)")]
    TooLarge {
        /// The object.
        object: Location,
        /// Its size (or the bytes read before giving up).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The directory could be written by someone else than this process's user.
    #[error("state directory `{}` is not private: {reason}", dir.display())]
    InsecureDirectory {
        /// The directory.
        dir: PathBuf,
        /// Why, and how to fix it.
        reason: String,
    },
}

impl StoreError {
    /// The stored object (or the file, or the store) the error names, if it names one.
    pub fn location(&self) -> Option<Location> {
        match self {
            StoreError::Io { path, .. } | StoreError::NotRegular { path, .. } => Some(Location::file(path.clone())),
            StoreError::InsecureDirectory { dir, .. } => Some(Location::file(dir.clone())),
            StoreError::Backend { object, .. }
            | StoreError::Conflict { object, .. }
            | StoreError::Seal { object, .. }
            | StoreError::Decode { object, .. }
            | StoreError::Import { object, .. }
            | StoreError::Stale { object, .. }
            | StoreError::Replayed { object, .. }
            | StoreError::TooLarge { object, .. } => Some(object.clone()),
            StoreError::Locked { store } => Some(store.clone()),
            StoreError::BadName(_) | StoreError::NameTooLong { .. } => None,
        }
    }
}
