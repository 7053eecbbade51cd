//! Sealed state on disk: one file per service, written atomically.
//!
//! A [`StateStore`] is a directory (created `0700`) holding `<service>.state` files (`0600`),
//! each a sealed envelope (docs/FORMAT.md). A kernel given a store saves a service's state when
//! it stops and on [`Kernel::checkpoint`](crate::Kernel::checkpoint), and a service registering
//! while its file exists starts from that state, upgraded through its chain: this is how a new
//! binary takes over the state of the old one across a restart.
//!
//! Writes go to a temporary file in the same directory, are fsynced, renamed over the old file,
//! and the directory is fsynced: a crash leaves either the old or the new file, never a torn one
//! (a temporary file a killed process left is removed when the store next opens). A file that
//! does not open or decode is an error naming the file, and the file is left as it was.
//!
//! The store trusts nothing it did not create: the directory must belong to this process's user
//! and be writable by nobody else ([`StoreOptions::allow_insecure_directory`] to allow it); a
//! state file that is a link, a FIFO, a device or a directory is refused, and so is one larger
//! than [`StoreOptions::max_state_bytes`] (default 256 MiB), before it is read. Two kernels
//! cannot share a directory: the store holds an exclusive lock on the directory itself (which
//! cannot be unlinked from under it) and on `<dir>/.lock` (released by the OS if the process
//! dies).

mod files;

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::seal::{SealError, Sealer};
use crate::state::{EncodedState, StateError, StateTag};

/// What to do when a service's state file exists but cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadPolicy {
    /// Refuse to register the service (the default): the error names the file and the reason.
    #[default]
    Fail,
    /// Rename the file to `<service>.state.rejected-<unix seconds>` and start the service with
    /// its default state. Only for services whose state may be rebuilt.
    StartFreshKeepAside,
}

/// A state file could not be used or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation failed.
    #[error("cannot {op} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another kernel (in this or another process) holds the directory.
    #[error("state directory `{}` is in use by another kernel (lock file `.lock` is held)", dir.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The file is not a valid sealed state for this service and keyring.
    #[error("state file `{}` cannot be opened: {source}", path.display())]
    Seal {
        /// The file.
        path: PathBuf,
        /// Why.
        source: SealError,
    },
    /// The file opened but its state does not decode into the service's state type.
    #[error("state file `{}` does not decode: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: StateError,
    },
    /// The service refused the state it was given (`import_state` failed).
    #[error("the service refused the state from `{}`: {source}", path.display())]
    Import {
        /// The file.
        path: PathBuf,
        /// The service's error.
        source: crate::service::BoxError,
    },
    /// A save would replace the file by an older state: its generation is not above the newest
    /// this store has written or loaded for the service. The file is left as it is (it holds the
    /// newer state).
    #[error("state file `{}` holds generation {newest}; refusing to replace it by the older generation {generation}", path.display())]
    Stale {
        /// The file.
        path: PathBuf,
        /// The generation refused.
        generation: u64,
        /// The newest generation written or loaded.
        newest: u64,
    },
    /// The file holds an older generation than this store has already written or loaded for
    /// the service: an older copy was put back (a replay). The file is left untouched.
    #[error("state file `{}` holds generation {found}, older than generation {newest} this store already wrote or loaded: refusing a replayed state", path.display())]
    Replayed {
        /// The file.
        path: PathBuf,
        /// The generation in the file.
        found: u64,
        /// The newest generation written or loaded.
        newest: u64,
    },
    /// The service name cannot be a file name.
    #[error("service name `{0}` cannot name a state file (empty, or contains `/`, NUL, or starts with `.`)")]
    BadName(String),
    /// The service name is too long for a state file: `<name>.state` must fit in 255 bytes.
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
    /// The file is larger than the store's limit; nothing was read.
    #[error("state file `{}` is {size} bytes, over the limit of {limit} bytes (StoreOptions::max_state_bytes)", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
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

/// The longest service name a store takes: `<name>.state.rejected-<seconds>-<n>` (the name a
/// file set aside gets, with up to 20 and 10 digits) fits in a 255-byte file name.
pub const MAX_NAME_LEN: usize = 255 - ".state".len() - ".rejected-".len() - 20 - 1 - 10;

/// The default of [`StoreOptions::max_state_bytes`]: 256 MiB.
pub const DEFAULT_MAX_STATE_BYTES: u64 = 256 << 20;

/// How a [`StateStore`] opens its directory and which files it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct StoreOptions {
    max_state_bytes: u64,
    allow_insecure_directory: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
            allow_insecure_directory: false,
        }
    }
}

impl StoreOptions {
    /// The largest state file read or written, in bytes (default [`DEFAULT_MAX_STATE_BYTES`]);
    /// raise it for large states (a 1 GB state needs `1 << 30` or more).
    pub fn max_state_bytes(mut self, limit: u64) -> Self {
        self.max_state_bytes = limit;
        self
    }

    /// Accepts a directory that another user owns, or that group or others may write. Anyone
    /// who can write the directory can delete or replace state files: only for directories
    /// protected otherwise.
    pub fn allow_insecure_directory(mut self) -> Self {
        self.allow_insecure_directory = true;
        self
    }
}

/// A directory of sealed state files, locked for one kernel.
pub struct StateStore {
    dir: PathBuf,
    sealer: Sealer,
    policy: LoadPolicy,
    /// Per service, the newest generation written or loaded while the store is open. Held
    /// while a file is compared and written (or read), so that no interleaving of saves can put
    /// an older state over a newer one.
    newest: Mutex<HashMap<String, u64>>,
    options: StoreOptions,
    /// Held open for their locks: the directory itself, and `.lock`.
    _locks: [File; 2],
}

/// A state read from the store.
#[derive(Debug)]
pub struct Loaded {
    /// The file it was read from.
    pub path: PathBuf,
    /// The state, opened (decode it with [`state::decode`](crate::state::decode)).
    pub state: EncodedState,
    /// Its generation (0 for a file written before generations).
    pub generation: u64,
}

impl StateStore {
    /// Opens (creating it `0700` if missing) and locks `dir`, with the default
    /// [`StoreOptions`]; files are sealed with `sealer`.
    pub fn open(dir: impl Into<PathBuf>, sealer: Sealer) -> Result<Self, StoreError> {
        Self::open_with(dir, sealer, StoreOptions::default())
    }

    /// [`open`](Self::open) with `options`.
    pub fn open_with(dir: impl Into<PathBuf>, sealer: Sealer, options: StoreOptions) -> Result<Self, StoreError> {
        let dir = dir.into();
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| StoreError::Io {
                    op: "create directory",
                    path: dir.clone(),
                    source,
                })?;
        }
        if !options.allow_insecure_directory {
            files::check_private(&dir)?;
        }
        let locked = |file: &File, path: &Path| {
            lock_briefly(file).map_err(|e| match e {
                fs::TryLockError::WouldBlock => StoreError::Locked { dir: dir.clone() },
                fs::TryLockError::Error(source) => StoreError::Io {
                    op: "lock",
                    path: path.to_owned(),
                    source,
                },
            })
        };
        // The directory itself cannot be unlinked from under its lock; `.lock` keeps kernels
        // of earlier versions (which lock only it) out too.
        let dir_lock = File::open(&dir).map_err(|source| StoreError::Io {
            op: "open directory",
            path: dir.clone(),
            source,
        })?;
        locked(&dir_lock, &dir)?;
        let lock_path = dir.join(".lock");
        let file_lock = files::open_lock_file(&lock_path)?;
        locked(&file_lock, &lock_path)?;
        let removed = files::remove_stale_temps(&dir)?;
        if removed > 0 {
            tracing::info!(dir = %dir.display(), removed, "removed temporary files a killed process left");
        }
        Ok(Self {
            dir,
            sealer,
            policy: LoadPolicy::Fail,
            newest: Mutex::new(HashMap::new()),
            options,
            _locks: [dir_lock, file_lock],
        })
    }

    /// Sets what happens when a state file exists but cannot be used (default: fail).
    pub fn with_policy(mut self, policy: LoadPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The policy for unusable files.
    pub fn policy(&self) -> LoadPolicy {
        self.policy
    }

    /// The sealer files are sealed with.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The newest generation this store has written or loaded for `service` (0 if none): a
    /// service registering goes on above it, whatever became of the file.
    pub fn known_generation(&self, service: &str) -> u64 {
        self.newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .copied()
            .unwrap_or(0)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// The file a service's state lives in. Refuses a name that cannot be a file name, or is
    /// longer than [`MAX_NAME_LEN`] bytes.
    pub fn path(&self, service: &str) -> Result<PathBuf, StoreError> {
        check_name(service)?;
        Ok(self.dir.join(format!("{service}.state")))
    }

    /// Seals `state` for `service` at `generation` and writes it atomically, unless the store
    /// has already written or loaded a generation at least as new for it
    /// ([`StoreError::Stale`]: the file keeps the newer state).
    pub fn save(&self, service: &str, state: &EncodedState, generation: u64) -> Result<PathBuf, StoreError> {
        let path = self.path(service)?;
        let blob = self
            .sealer
            .seal_at(service, state.tag(), generation, state.as_bytes())
            .map_err(|source| StoreError::Seal {
                path: path.clone(),
                source,
            })?;
        let limit = self.options.max_state_bytes;
        if blob.len() as u64 > limit {
            return Err(StoreError::TooLarge {
                path,
                size: blob.len() as u64,
                limit,
            });
        }
        let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&known) = newest.get(service)
            && generation <= known
        {
            return Err(StoreError::Stale {
                path,
                generation,
                newest: known,
            });
        }
        files::write_atomically(&self.dir, &path, &blob)?;
        newest.insert(service.to_owned(), generation);
        Ok(path)
    }

    /// Reads and opens a service's file; `None` if there is none. Refuses a file older than
    /// what this store has written or loaded for the service ([`StoreError::Replayed`]). The
    /// file is never modified.
    pub fn load(&self, service: &str) -> Result<Option<Loaded>, StoreError> {
        let path = self.path(service)?;
        let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = self.options.max_state_bytes;
        let Some((file, size)) = files::open_regular(&path, limit)? else {
            return Ok(None);
        };
        let blob = files::read_bounded(&path, file, size, limit)?;
        let (state, generation) = self
            .sealer
            .open_generation(service, blob)
            .map_err(|source| StoreError::Seal {
                path: path.clone(),
                source,
            })?;
        let known = newest.get(service).copied().unwrap_or(0);
        if generation < known {
            return Err(StoreError::Replayed {
                path,
                found: generation,
                newest: known,
            });
        }
        newest.insert(service.to_owned(), generation);
        Ok(Some(Loaded {
            path,
            state,
            generation,
        }))
    }

    /// Moves an unusable file aside (for [`LoadPolicy::StartFreshKeepAside`]); returns the new
    /// path.
    pub fn set_aside(&self, path: &Path) -> Result<PathBuf, StoreError> {
        let aside = files::set_aside(path)?;
        files::sync_dir(&self.dir)?;
        Ok(aside)
    }
}

/// Reads a state file the way the store does: a regular file (not a link, FIFO, device or
/// directory) of at most `limit` bytes, refused before it is read otherwise. For tools that
/// read state files.
pub fn read_state_file(path: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    let Some((file, size)) = files::open_regular(path, limit)? else {
        return Err(StoreError::Io {
            op: "read",
            path: path.to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    };
    files::read_bounded(path, file, size, limit)
}

/// A service name the store can keep a file for.
pub fn check_name(service: &str) -> Result<(), StoreError> {
    let bad = service.is_empty() || service.starts_with('.') || service.contains(['/', '\0']);
    if bad {
        return Err(StoreError::BadName(service.to_owned()));
    }
    if service.len() > MAX_NAME_LEN {
        return Err(StoreError::NameTooLong {
            len: service.len(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("dir", &self.dir)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Takes the lock, retrying for a moment: a process that forks (to run a command) holds a copy
/// of every descriptor, the lock's too, until it execs, so a lock just released may still be
/// held for a few milliseconds.
fn lock_briefly(lock: &File) -> Result<(), fs::TryLockError> {
    // 2 s from now cannot overflow an `Instant`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match lock.try_lock() {
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Reads the state tag of a stored file without a key (for tools): the envelope header is clear
/// (and not yet authenticated).
pub fn peek_tag(blob: &[u8]) -> Result<StateTag, SealError> {
    crate::seal::envelope::Header::parse(blob).map(|(h, _)| h.state)
}
