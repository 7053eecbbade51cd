//! The file operations of the directory store, each trusting nothing it did not create:
//! atomic writes, reads that refuse links, special files and oversized files, the directory's
//! ownership and permissions, and the removal of our own stale temporary files.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;
use super::platform;

/// Temporary files are `.mk-tmp-<pid>-<n>`: short whatever the service's name, and a pattern
/// nothing else in the directory can match.
const TEMP_PREFIX: &str = ".mk-tmp-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { op, path, source }
}

/// A temporary file in the store's directory, written and then renamed into place; removed if
/// dropped before.
pub(super) struct Temp {
    /// Empty once renamed into place.
    path: PathBuf,
    file: File,
}

impl Temp {
    /// Creates a new temporary file (`.mk-tmp-<pid>-<n>`, owner-only) in `dir`.
    pub(super) fn create(dir: &Path) -> Result<Self, StoreError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let file = platform::private_file(OpenOptions::new().write(true).create_new(true))
            .open(&path)
            .map_err(io("create", &path))?;
        Ok(Self { path, file })
    }

    /// Appends `bytes`.
    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(bytes).map_err(io("write", &self.path))
    }

    /// fsync: what was written is on disk before it is renamed into place.
    pub(super) fn sync(&mut self) -> Result<(), StoreError> {
        self.file.sync_all().map_err(io("fsync", &self.path))
    }

    /// Renames the (synced) file over `path`; the caller fsyncs the directory.
    pub(super) fn rename_into(mut self, path: &Path) -> Result<(), StoreError> {
        // `rename` replaces a symbolic link at `path` itself; it never writes through one.
        fs::rename(&self.path, path).map_err(io("rename into place", path))?;
        self.path = PathBuf::new(); // renamed: nothing to remove
        Ok(())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    platform::sync_dir(dir).map_err(io("fsync directory", dir))
}

/// What kind of file a path names, for errors.
fn kind(meta: &fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else {
        platform::special_kind(&kind)
    }
}

/// Opens `path` for reading if it is a regular file, not a link, of at most `limit` bytes; `None`
/// if it does not exist. The file opened is checked to be the one examined (same device and
/// inode), so a link swapped in meanwhile is refused too.
pub(super) fn open_regular(path: &Path, limit: u64) -> Result<Option<(File, u64)>, StoreError> {
    let before = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io("examine", path)(source)),
    };
    if !before.file_type().is_file() {
        return Err(StoreError::NotRegular {
            path: path.to_owned(),
            kind: kind(&before),
        });
    }
    if before.len() > limit {
        return Err(StoreError::TooLarge {
            object: path.to_owned().into(),
            size: before.len(),
            limit,
        });
    }
    let file = platform::nonblocking(OpenOptions::new().read(true))
        .open(path)
        .map_err(io("open", path))?;
    let opened = file.metadata().map_err(io("examine", path))?;
    if !platform::same_file(&opened, &before) {
        return Err(StoreError::NotRegular {
            path: path.to_owned(),
            kind: "replaced while being opened",
        });
    }
    Ok(Some((file, opened.len())))
}

/// Reads a file opened by [`open_regular`], never more than `limit` bytes (it may have grown).
pub(super) fn read_bounded(path: &Path, file: File, size: u64, limit: u64) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    if bytes.len() as u64 > limit {
        return Err(StoreError::TooLarge {
            object: path.to_owned().into(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// Opens (creating it `0600` if missing) a lock file that is not a link.
pub(super) fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    if let Ok(meta) = fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        return Err(StoreError::NotRegular {
            path: path.to_owned(),
            kind: kind(&meta),
        });
    }
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    let file = platform::nonblocking(platform::private_file(&mut options))
        .open(path)
        .map_err(io("open lock file", path))?;
    // Refuse a link swapped in between the check and the open.
    let after = fs::symlink_metadata(path).map_err(io("examine", path))?;
    let opened = file.metadata().map_err(io("examine", path))?;
    if !after.file_type().is_file() || !platform::same_file(&after, &opened) {
        return Err(StoreError::NotRegular {
            path: path.to_owned(),
            kind: "replaced while being opened",
        });
    }
    Ok(file)
}

/// The directory must be ours and writable by nobody else (as ssh's StrictModes asks of
/// `~/.ssh`): anyone else who can write it can put back old files or delete the lock.
pub(super) fn check_private(dir: &Path) -> Result<(), StoreError> {
    let meta = fs::metadata(dir).map_err(io("examine", dir))?;
    if !meta.is_dir() {
        return Err(StoreError::NotRegular {
            path: dir.to_owned(),
            kind: "not a directory",
        });
    }
    let own = own_metadata(dir)?;
    match platform::insecurity(dir, &meta, &own) {
        Some(reason) => Err(StoreError::InsecureDirectory {
            dir: dir.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The metadata of a file this process creates in `dir`: its owner is this process's effective
/// user (no `libc` in the core to ask).
fn own_metadata(dir: &Path) -> Result<fs::Metadata, StoreError> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let probe = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
    let file = platform::private_file(OpenOptions::new().write(true).create_new(true))
        .open(&probe)
        .map_err(io("create", &probe))?;
    let meta = file.metadata().map_err(io("examine", &probe));
    let _ = fs::remove_file(&probe);
    meta
}

/// Removes temporary files a killed process left (ours only: the `.mk-tmp-` pattern, regular
/// files). The directory lock is held, so no other kernel is writing one now.
pub(super) fn remove_stale_temps(dir: &Path) -> Result<usize, StoreError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name();
        let ours = name.to_str().is_some_and(|n| {
            n.strip_prefix(TEMP_PREFIX).is_some_and(|rest| {
                let mut parts = rest.split('-');
                let numeric =
                    |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none()
            })
        });
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            fs::remove_file(entry.path()).map_err(io("remove stale temporary file", &entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Renames `path` aside to `<path>.rejected-<seconds>-<n>`, never over an existing file: the
/// new name is made with a hard link, which fails if it exists, then the old one is removed.
pub(super) fn set_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for n in 0..u32::MAX {
        let aside = PathBuf::from(format!("{}.rejected-{secs}-{n}", path.display()));
        match fs::hard_link(path, &aside) {
            Ok(()) => {
                fs::remove_file(path).map_err(io("set aside", path))?;
                return Ok(aside);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(io("set aside", path)(source)),
        }
    }
    Err(io("set aside", path)(std::io::Error::other(
        "every `.rejected-<seconds>-<n>` name of this second is taken",
    )))
}

/// Creates `dir` (and its parents) `0700`.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    platform::private_dir(fs::DirBuilder::new().recursive(true))
        .create(dir)
        .map_err(io("create directory", dir))
}

/// Takes the lock, retrying for a moment: a process that forks (to run a command) holds a copy
/// of every descriptor, the lock's too, until it execs, so a lock just released may still be
/// held for a few milliseconds.
pub(super) fn lock_briefly(lock: &File) -> Result<(), fs::TryLockError> {
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
