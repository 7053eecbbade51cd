//! The embedded default store: a directory of sealed state files, locked for one kernel.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::files;
use super::{Location, ObjectWriter, StateStore, StoreError, StoreFuture, Stored};
use crate::seal::SealedObject;

/// The longest service name a [`DirStore`] takes: `<name>.state.rejected-<seconds>-<n>` (the
/// name a file set aside gets, with up to 20 and 10 digits) fits in a 255-byte file name.
pub const MAX_NAME_LEN: usize = 255 - ".state".len() - ".rejected-".len() - 20 - 1 - 10;

/// The default of [`StoreOptions::max_state_bytes`]: 256 MiB.
pub const DEFAULT_MAX_STATE_BYTES: u64 = 256 << 20;

/// How a [`DirStore`] opens its directory and which files it accepts.
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

    /// The largest state file read or written, in bytes.
    pub fn state_bytes_limit(&self) -> u64 {
        self.max_state_bytes
    }
}

/// A directory of sealed state files (`<service>.state`, `0600`, in a `0700` directory), locked
/// for one kernel: the embedded default [`StateStore`].
///
/// Writes go to a temporary file in the same directory, are fsynced, renamed over the old file,
/// and the directory is fsynced: a crash leaves either the old or the new file, never a torn one
/// (a temporary file a killed process left is removed when the store next opens). A file that
/// does not open or decode is an error naming the file, and the file is left as it was.
///
/// The store trusts nothing it did not create: the directory must belong to this process's user
/// and be writable by nobody else ([`StoreOptions::allow_insecure_directory`] to allow it); a
/// state file that is a link, a FIFO, a device or a directory is refused, and so is one larger
/// than [`StoreOptions::max_state_bytes`] (default 256 MiB), before it is read. Two kernels
/// cannot share a directory: the store holds an exclusive lock on the directory itself (which
/// cannot be unlinked from under it) and on `<dir>/.lock` (released by the OS if the process
/// dies).
///
/// Its futures are ready when first polled: the work is done on the calling thread.
///
/// ```
/// use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
/// use microkernel::store::DirStore;
/// use microkernel::Kernel;
///
/// let dir = std::env::temp_dir().join(format!("mk-doc-dirstore-{}", std::process::id()));
/// let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm)?));
/// let kernel = Kernel::builder().sealer(sealer).store(DirStore::open(&dir)?).build()?;
/// # drop(kernel);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DirStore {
    dir: PathBuf,
    /// Per service, the newest generation written or loaded while the store is open. Held
    /// while a file is compared and written (or read), so that no interleaving of saves can put
    /// an older state over a newer one.
    newest: Mutex<HashMap<String, u64>>,
    options: StoreOptions,
    /// Held open for their locks: the directory itself, and `.lock`.
    _locks: [File; 2],
}

impl DirStore {
    /// Opens (creating it `0700` if missing) and locks `dir`, with the default
    /// [`StoreOptions`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// [`open`](Self::open) with `options`.
    pub fn open_with(dir: impl Into<PathBuf>, options: StoreOptions) -> Result<Self, StoreError> {
        let dir = dir.into();
        if !dir.exists() {
            files::create_private_dir(&dir)?;
        }
        if !options.allow_insecure_directory {
            files::check_private(&dir)?;
        }
        let locked = |file: &File, path: &Path| {
            files::lock_briefly(file).map_err(|e| match e {
                fs::TryLockError::WouldBlock => StoreError::Locked {
                    store: Location::file(dir.clone()),
                },
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
            newest: Mutex::new(HashMap::new()),
            options,
            _locks: [dir_lock, file_lock],
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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

    fn newest(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.newest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn save_now(&self, service: &str, object: &SealedObject) -> Result<Location, StoreError> {
        let path = self.path(service)?;
        let limit = self.options.max_state_bytes;
        let size = object.len() as u64;
        if size > limit {
            return Err(StoreError::TooLarge {
                object: Location::file(path),
                size,
                limit,
            });
        }
        let generation = object.generation();
        check_fresh(&self.newest(), service, &path, generation)?;
        let mut temp = files::Temp::create(&self.dir)?;
        temp.write(object.as_bytes())?;
        temp.sync()?;
        self.replace_with(service, &path, generation, temp)
    }

    /// Renames a written and synced temporary file over the service's file, unless a newer
    /// generation was written or loaded meanwhile (checked and renamed under the lock, so the
    /// newest wins whatever the interleaving); then fsyncs the directory.
    fn replace_with(
        &self,
        service: &str,
        path: &Path,
        generation: u64,
        temp: files::Temp,
    ) -> Result<Location, StoreError> {
        {
            let mut newest = self.newest();
            check_fresh(&newest, service, path, generation)?;
            temp.rename_into(path)?;
            // In place from here on, whatever the directory's fsync says.
            newest.insert(service.to_owned(), generation);
        }
        files::sync_dir(&self.dir)?;
        Ok(Location::file(path.to_owned()))
    }

    fn load_now(&self, service: &str) -> Result<Option<Stored>, StoreError> {
        let path = self.path(service)?;
        let mut newest = self.newest();
        let limit = self.options.max_state_bytes;
        let Some((file, size)) = files::open_regular(&path, limit)? else {
            return Ok(None);
        };
        let blob = files::read_bounded(&path, file, size, limit)?;
        let location = Location::file(path);
        let object = SealedObject::from_bytes(blob).map_err(|source| StoreError::Seal {
            object: location.clone(),
            source,
        })?;
        let known = newest.get(service).copied().unwrap_or(0);
        if object.generation() < known {
            return Err(StoreError::Replayed {
                object: location,
                found: object.generation(),
                newest: known,
            });
        }
        newest.insert(service.to_owned(), object.generation());
        Ok(Some(Stored { location, object }))
    }

    fn set_aside_now(&self, service: &str) -> Result<Option<Location>, StoreError> {
        let path = self.path(service)?;
        if fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let aside = files::set_aside(&path)?;
        files::sync_dir(&self.dir)?;
        Ok(Some(Location::file(aside)))
    }
}

/// Refuses to write `generation` of `service` unless it is above the newest written or loaded.
fn check_fresh(newest: &HashMap<String, u64>, service: &str, path: &Path, generation: u64) -> Result<(), StoreError> {
    match newest.get(service) {
        Some(&known) if generation <= known => Err(StoreError::Stale {
            object: Location::file(path.to_owned()),
            generation,
            newest: known,
        }),
        _ => Ok(()),
    }
}

/// A state file being written part by part: into a temporary file (made at the first part),
/// renamed into place at commit with the checks of a whole save.
struct DirObject<'a> {
    store: &'a DirStore,
    service: &'a str,
    generation: u64,
    temp: Option<files::Temp>,
    written: u64,
}

impl DirObject<'_> {
    fn write_now(&mut self, part: &[u8]) -> Result<(), StoreError> {
        let path = self.store.path(self.service)?;
        self.written += part.len() as u64;
        let limit = self.store.options.max_state_bytes;
        if self.written > limit {
            self.temp = None; // removes what was written
            return Err(StoreError::TooLarge {
                object: Location::file(path),
                size: self.written,
                limit,
            });
        }
        let temp = match &mut self.temp {
            Some(temp) => temp,
            None => self.temp.insert(files::Temp::create(&self.store.dir)?),
        };
        temp.write(part)
    }

    fn commit_now(mut self) -> Result<Location, StoreError> {
        let path = self.store.path(self.service)?;
        let Some(temp) = self.temp.take() else {
            return Err(StoreError::Backend {
                object: Location::file(path),
                source: "nothing was written before the commit".into(),
            });
        };
        let mut temp = temp;
        temp.sync()?; // the long part, before the store's lock
        self.store.replace_with(self.service, &path, self.generation, temp)
    }
}

impl<'a> ObjectWriter<'a> for DirObject<'a> {
    fn write(&mut self, part: &[u8]) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(self.write_now(part)))
    }

    fn commit(self: Box<Self>) -> StoreFuture<'a, Location> {
        Box::pin(std::future::ready(self.commit_now()))
    }
}

impl StateStore for DirStore {
    fn check_name(&self, service: &str) -> Result<(), StoreError> {
        check_name(service)
    }

    fn location(&self, service: &str) -> Location {
        Location::file(self.dir.join(format!("{service}.state")))
    }

    fn save<'a>(&'a self, service: &'a str, object: SealedObject) -> StoreFuture<'a, Location> {
        Box::pin(std::future::ready(self.save_now(service, &object)))
    }

    fn load<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Stored>> {
        Box::pin(std::future::ready(self.load_now(service)))
    }

    fn set_aside<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Location>> {
        Box::pin(std::future::ready(self.set_aside_now(service)))
    }

    fn known_generation(&self, service: &str) -> u64 {
        self.newest().get(service).copied().unwrap_or(0)
    }

    fn begin_save<'a>(&'a self, service: &'a str, generation: u64) -> Option<Box<dyn ObjectWriter<'a> + 'a>> {
        Some(Box::new(DirObject {
            store: self,
            service,
            generation,
            temp: None,
            written: 0,
        }))
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

/// A service name the directory store can keep a file for.
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

impl std::fmt::Debug for DirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirStore").field("dir", &self.dir).finish()
    }
}
