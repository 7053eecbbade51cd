//! Sealed state on disk: one file per service, written atomically.
//!
//! A [`StateStore`] is a directory (created `0700`) holding `<service>.state` files (`0600`),
//! each a sealed envelope (docs/FORMAT.md). A kernel given a store saves a service's state when
//! it stops and on [`Kernel::checkpoint`](crate::Kernel::checkpoint), and a service registering
//! while its file exists starts from that state, upgraded through its chain: this is how a new
//! binary takes over the state of the old one across a restart.
//!
//! Writes go to a temporary file in the same directory, are fsynced, renamed over the old file,
//! and the directory is fsynced: a crash leaves either the old or the new file, never a torn one.
//! A file that does not open or decode is an error naming the file, and the file is left as it
//! was. Two kernels cannot share a directory: the store holds an exclusive lock on
//! `<dir>/.lock` (released by the OS if the process dies).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::seal::{SealError, Sealer};
use crate::state::{EncodedState, StateError, StateTag};

/// What to do when a service's state file exists but cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// Held open for its lock.
    _lock: File,
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

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl StateStore {
    /// Opens (creating it `0700` if missing) and locks `dir`; files are sealed with `sealer`.
    pub fn open(dir: impl Into<PathBuf>, sealer: Sealer) -> Result<Self, StoreError> {
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
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                op: "open lock file",
                path: lock_path.clone(),
                source,
            })?;
        lock_briefly(&lock).map_err(|e| match e {
            fs::TryLockError::WouldBlock => StoreError::Locked { dir: dir.clone() },
            fs::TryLockError::Error(source) => StoreError::Io {
                op: "lock",
                path: lock_path,
                source,
            },
        })?;
        Ok(Self {
            dir,
            sealer,
            policy: LoadPolicy::Fail,
            newest: Mutex::new(HashMap::new()),
            _lock: lock,
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

    /// The file a service's state lives in.
    pub fn path(&self, service: &str) -> Result<PathBuf, StoreError> {
        let bad = service.is_empty() || service.starts_with('.') || service.contains(['/', '\0']);
        if bad {
            return Err(StoreError::BadName(service.to_owned()));
        }
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
        write_atomically(&self.dir, &path, &blob)?;
        newest.insert(service.to_owned(), generation);
        Ok(path)
    }

    /// Reads and opens a service's file; `None` if there is none. Refuses a file older than
    /// what this store has written or loaded for the service ([`StoreError::Replayed`]). The
    /// file is never modified.
    pub fn load(&self, service: &str) -> Result<Option<Loaded>, StoreError> {
        let path = self.path(service)?;
        let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
        let blob = match fs::read(&path) {
            Ok(blob) => blob,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
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
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = PathBuf::from(format!("{}.rejected-{secs}", path.display()));
        fs::rename(path, &aside).map_err(|source| StoreError::Io {
            op: "set aside",
            path: path.to_owned(),
            source,
        })?;
        sync_dir(&self.dir)?;
        Ok(aside)
    }
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(250);
    loop {
        match lock.try_lock() {
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// temp file in the same directory → write → fsync → rename over `path` → fsync the directory.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let temp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    let io = |op: &'static str, p: &Path| {
        let path = p.to_owned();
        move |source| StoreError::Io { op, path, source }
    };
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io("create", &temp))?;
        file.write_all(bytes).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        fs::rename(&temp, path).map_err(io("rename into place", path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            op: "fsync directory",
            path: dir.to_owned(),
            source,
        })
}

/// Reads the state tag of a stored file without a key (for tools): the envelope header is clear
/// (and not yet authenticated).
pub fn peek_tag(blob: &[u8]) -> Result<StateTag, SealError> {
    crate::seal::envelope::Header::parse(blob).map(|(h, _)| h.state)
}
