//! The schema lock: every released version of a state chain, checked in beside the code, so
//! that a released schema cannot change unnoticed (what `buf breaking` is for protobuf).
//!
//! A lock file holds one entry per version — the type's name, the version, the fingerprint and
//! the schema as readable text:
//!
//! ```text
//! # microkernel schema lock ...
//!
//! EchoStateV1 v1 9c1e0a5a2f3d4b11
//!     EchoStateV1 { count: u32 }
//! ```
//!
//! [`assert_schema_lock`], called from a test, fails naming the type and version when a
//! released version's fingerprint differs from the lock's, when a version in the lock is no
//! longer in the chain, or when a version of the chain is not in the lock. With the environment
//! variable `MICROKERNEL_SCHEMA_LOCK=add` it records versions that are not in the lock yet
//! (creating the file if needed); it never rewrites an entry that is there.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Fingerprint, Migratable, VersionSchema, chain_of};

/// The environment variable that lets [`assert_schema_lock`] add new versions to the lock.
pub const LOCK_ENV: &str = "MICROKERNEL_SCHEMA_LOCK";

const HEADER: &str = "\
# microkernel schema lock: the released versions of one state chain.
# Checked by microkernel::state::assert_schema_lock. Never edit an entry: a released schema must
# not change; add a new version instead. Run the tests with MICROKERNEL_SCHEMA_LOCK=add to record
# versions that are not here yet.
";

/// Checks `T`'s chain against the lock file at `path` (relative paths are relative to the
/// current directory: the package's root under `cargo test`) and panics with every problem
/// found. With `MICROKERNEL_SCHEMA_LOCK=add` in the environment, versions missing from the lock
/// are recorded first.
///
/// ```no_run
/// # use microkernel::Migratable;
/// # #[derive(serde::Serialize, serde::Deserialize, Migratable)]
/// # #[migratable(version = 1)]
/// # struct EchoStateV1 { count: u32 }
/// #[test]
/// fn released_state_schemas_never_change() {
///     microkernel::state::assert_schema_lock::<EchoStateV1>("tests/echo-state.lock");
/// }
/// ```
#[track_caller]
pub fn assert_schema_lock<T: Migratable>(path: impl AsRef<Path>) {
    let add = std::env::var(LOCK_ENV).is_ok_and(|v| v == "add");
    if let Err(error) = check_schema_lock::<T>(path.as_ref(), add) {
        // An assertion, for tests (as `assert!`): failing loudly is its purpose.
        panic!("{error}");
    }
}

/// Checks `T`'s chain against the lock file at `path`; with `add_new`, first records the
/// versions the lock does not hold yet. Returns the versions added.
pub fn check_schema_lock<T: Migratable>(path: impl AsRef<Path>, add_new: bool) -> Result<Vec<u32>, SchemaLockError> {
    let path = path.as_ref();
    let chain = chain_of::<T>();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && add_new => String::new(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SchemaLockError::NoLock {
                path: path.to_owned(),
                newest: T::TYPE_NAME,
            });
        }
        Err(source) => {
            return Err(SchemaLockError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let locked = parse(&text).map_err(|(line, reason)| SchemaLockError::Malformed {
        path: path.to_owned(),
        line,
        reason,
    })?;
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for version in &chain {
        match locked.iter().find(|entry| entry.version == version.version) {
            Some(entry) if entry.fingerprint == version.fingerprint => {}
            Some(entry) => problems.push(Problem::Changed {
                type_name: version.type_name,
                version: version.version,
                locked: entry.fingerprint,
                locked_text: entry.text.clone(),
                now: version.fingerprint,
                now_text: version.text(),
            }),
            None => missing.push(*version),
        }
    }
    for entry in locked.iter().filter(|e| chain.iter().all(|v| v.version != e.version)) {
        problems.push(Problem::Removed {
            type_name: entry.type_name.clone(),
            version: entry.version,
        });
    }
    let added = if add_new && !missing.is_empty() {
        record(path, &text, &missing)?;
        missing.iter().map(|v| v.version).collect()
    } else {
        problems.extend(missing.iter().map(|v| Problem::Missing {
            type_name: v.type_name,
            version: v.version,
        }));
        Vec::new()
    };
    if problems.is_empty() {
        Ok(added)
    } else {
        Err(SchemaLockError::Violated {
            path: path.to_owned(),
            newest: T::TYPE_NAME,
            problems,
        })
    }
}

/// The schema lock does not hold, or cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaLockError {
    /// The lock file cannot be read or written.
    #[error("schema lock `{}`: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// There is no lock file yet.
    #[error("schema lock `{}` does not exist: run the tests once with {LOCK_ENV}=add to record the chain of {newest}, then commit the file", path.display())]
    NoLock {
        /// The lock file.
        path: PathBuf,
        /// The newest type of the chain checked.
        newest: &'static str,
    },
    /// The lock file is not in the lock format.
    #[error("schema lock `{}`, line {line}: {reason}", path.display())]
    Malformed {
        /// The lock file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The chain and the lock disagree.
    #[error("schema lock `{}` does not hold for the chain of {newest}:{}", path.display(), problems.iter().map(|p| format!("\n- {p}")).collect::<String>())]
    Violated {
        /// The lock file.
        path: PathBuf,
        /// The newest type of the chain checked.
        newest: &'static str,
        /// Every disagreement.
        problems: Vec<Problem>,
    },
}

/// One disagreement between a chain and its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A released version's schema changed.
    Changed {
        /// The type at that version now.
        type_name: &'static str,
        /// The version.
        version: u32,
        /// Fingerprint in the lock.
        locked: Fingerprint,
        /// Schema text in the lock.
        locked_text: String,
        /// Fingerprint now.
        now: Fingerprint,
        /// Schema text now.
        now_text: String,
    },
    /// A version of the chain is not in the lock.
    Missing {
        /// The type.
        type_name: &'static str,
        /// The version.
        version: u32,
    },
    /// A version in the lock is no longer in the chain.
    Removed {
        /// The type the lock names.
        type_name: String,
        /// The version.
        version: u32,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Changed {
                type_name,
                version,
                locked,
                locked_text,
                now,
                now_text,
            } => write!(
                f,
                "{type_name} v{version} changed after its release (fingerprint {locked} in the lock, {now} now): \
                 a released schema must not change; restore it and add a new version instead \
                 (#[migratable(version = {}, from = {type_name})])\n    locked: {locked_text}\n    now:    {now_text}\n            {}",
                version + 1,
                difference_marker(locked_text, now_text),
            ),
            Problem::Missing { type_name, version } => write!(
                f,
                "{type_name} v{version} is not in the lock: run the tests with {LOCK_ENV}=add to record it"
            ),
            Problem::Removed { type_name, version } => write!(
                f,
                "v{version} ({type_name} in the lock) is no longer in the chain: states saved as v{version} \
                 would no longer load; put the version back"
            ),
        }
    }
}

/// A caret under the first character where the two texts differ.
fn difference_marker(a: &str, b: &str) -> String {
    let same = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    format!("{}^ first difference", " ".repeat(same))
}

/// One entry of a lock file.
struct Locked {
    type_name: String,
    version: u32,
    fingerprint: Fingerprint,
    text: String,
}

/// Parses a lock file; on error, the 1-based line and what is wrong.
fn parse(text: &str) -> Result<Vec<Locked>, (usize, String)> {
    let mut entries: Vec<Locked> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(schema) = line.strip_prefix("    ") {
            let entry = entries
                .last_mut()
                .ok_or((number, "schema text before any entry".to_owned()))?;
            if !entry.text.is_empty() {
                entry.text.push('\n');
            }
            entry.text.push_str(schema);
            continue;
        }
        let entry = parse_entry(line).ok_or((
            number,
            format!("expected `<Type> v<version> <16 hex digits>` or an indented schema line, found `{line}`"),
        ))?;
        if entries.iter().any(|e| e.version == entry.version) {
            return Err((number, format!("version {} appears twice", entry.version)));
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn parse_entry(line: &str) -> Option<Locked> {
    let mut words = line.split_whitespace();
    let type_name = words.next()?.to_owned();
    let version = words.next()?.strip_prefix('v')?.parse().ok()?;
    let hex = words.next()?;
    if hex.len() != 16 || words.next().is_some() {
        return None;
    }
    let fingerprint = Fingerprint(u64::from_str_radix(hex, 16).ok()?);
    Some(Locked {
        type_name,
        version,
        fingerprint,
        text: String::new(),
    })
}

/// Appends entries for `versions` to the lock (with the header if the file is new).
fn record(path: &Path, existing: &str, versions: &[VersionSchema]) -> Result<(), SchemaLockError> {
    let mut text = if existing.is_empty() {
        HEADER.to_owned()
    } else {
        existing.to_owned()
    };
    for v in versions {
        if !text.ends_with("\n\n") {
            text.push('\n');
        }
        text.push_str(&format!(
            "{} v{} {}\n    {}\n",
            v.type_name,
            v.version,
            v.fingerprint,
            v.text()
        ));
    }
    // Written beside and renamed over: a reader (another test checking the same lock) sees the
    // old file or the new one, never half of it.
    let temp = path.with_extension(format!("lock-tmp-{}", std::process::id()));
    let io = |source| SchemaLockError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::write(&temp, text).map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)?;
    tracing::info!(path = %path.display(), versions = ?versions.iter().map(|v| v.version).collect::<Vec<_>>(), "schema lock: recorded new versions");
    Ok(())
}
