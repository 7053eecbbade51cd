//! What the directory store does differently by platform. On Unix: files `0600`, directories
//! `0700`, the directory's owner and mode checked, files compared by device and inode, opens
//! that do not wait on a FIFO, and the directory fsynced after a rename. Elsewhere (checked by
//! review only: this project builds and tests on Linux) the fallbacks are documented on each
//! function and in docs/SECURITY.md: permissions are left to the platform's defaults and ACLs,
//! and the checks that need Unix metadata are skipped.

use std::fs::{self, DirBuilder, OpenOptions};
use std::path::Path;

/// How to protect the directory, as a reason for [`StoreError::InsecureDirectory`](super::StoreError::InsecureDirectory),
/// or `None` when it is private.
pub(super) type Insecurity = Option<String>;

#[cfg(unix)]
mod imp {
    use std::fs::File;
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};

    use super::*;

    /// Files the store creates are readable and writable by their owner only.
    pub(in super::super) fn private_file(options: &mut OpenOptions) -> &mut OpenOptions {
        options.mode(0o600)
    }

    /// Opens never wait on a FIFO: with `O_NONBLOCK` (its value for this target, from `libc`),
    /// opening a FIFO swapped in after the file was examined returns at once (and is then
    /// refused by the inode check) instead of waiting for a writer.
    pub(in super::super) fn nonblocking(options: &mut OpenOptions) -> &mut OpenOptions {
        options.custom_flags(libc::O_NONBLOCK)
    }

    /// Directories the store creates are its owner's only.
    pub(in super::super) fn private_dir(builder: &mut DirBuilder) -> &mut DirBuilder {
        builder.mode(0o700)
    }

    /// Whether two metadata describe the same file (device and inode).
    pub(in super::super) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    }

    /// A special file's kind, for errors.
    pub(in super::super) fn special_kind(kind: &fs::FileType) -> &'static str {
        if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        }
    }

    /// Why the directory is not private (owned by another user, or writable by group or
    /// others), given the uid of a file this process just created in it.
    pub(in super::super) fn insecurity(dir: &Path, meta: &fs::Metadata, own: &fs::Metadata) -> Insecurity {
        let me = own.uid();
        if meta.uid() != me {
            return Some(format!(
                "it is owned by uid {}, not by this process's uid {me}; `chown {me} {}` it, or open the store \
                 with `StoreOptions::allow_insecure_directory`",
                meta.uid(),
                dir.display()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Some(format!(
                "its mode {:o} lets group or others write it; `chmod go-w {}` it, or open the store with \
                 `StoreOptions::allow_insecure_directory`",
                meta.mode() & 0o7777,
                dir.display()
            ));
        }
        None
    }

    /// Makes a rename durable: fsync the directory.
    pub(in super::super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

#[cfg(not(unix))]
mod imp {
    use super::*;

    /// Fallback: the platform's default permissions (on Windows, the parent's ACLs).
    pub(in super::super) fn private_file(options: &mut OpenOptions) -> &mut OpenOptions {
        options
    }

    /// Fallback: no flag (a FIFO cannot appear as a file here).
    pub(in super::super) fn nonblocking(options: &mut OpenOptions) -> &mut OpenOptions {
        options
    }

    /// Fallback: the platform's default permissions.
    pub(in super::super) fn private_dir(builder: &mut DirBuilder) -> &mut DirBuilder {
        builder
    }

    /// Fallback: without inode numbers, compare what the metadata can tell (length, times).
    pub(in super::super) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
        a.len() == b.len() && a.modified().ok() == b.modified().ok()
    }

    /// Fallback: no finer kinds.
    pub(in super::super) fn special_kind(_: &fs::FileType) -> &'static str {
        "not a regular file"
    }

    /// Fallback: ownership and mode bits are Unix notions; the directory's ACLs are the
    /// platform's to check.
    pub(in super::super) fn insecurity(_: &Path, _: &fs::Metadata, _: &fs::Metadata) -> Insecurity {
        None
    }

    /// Fallback: directories cannot be opened to fsync here; the rename is as durable as the
    /// platform makes it.
    pub(in super::super) fn sync_dir(_: &Path) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) use imp::{insecurity, nonblocking, private_dir, private_file, same_file, special_kind, sync_dir};
