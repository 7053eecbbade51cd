//! The runtime of [microkernel](https://docs.rs/microkernel): a kernel that registers named
//! services, starts them in dependency order, routes messages between them, and replaces a
//! running service by a new version with its state moved across as a typed, versioned value.
//!
//! Use it through the `microkernel` facade, which also exports the derive macros.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod boxed;
mod context;
mod error;
mod graph;
mod handle;
mod kernel;
mod logger;
mod message;
mod notice;
mod panic;
mod persist;
mod push;
mod reap;
pub mod replace;
pub mod seal;
mod service;
mod slot;
pub mod state;
pub mod store;
pub mod supervise;
mod sync;
mod wait;

pub use context::{Context, Level};
pub use error::{CallError, Cycle, Hook, LifecycleError, StopAllError};
pub use handle::Handle;
pub use kernel::{BuildError, Kernel, KernelBuilder};
pub use logger::{LevelControl, LogLine, Logger};
pub use message::{Event, KERNEL, Reply, Text, code};
pub use notice::Notice;
pub use persist::CheckpointError;
pub use push::PendingReply;
pub use replace::{ReplaceError, Replaced, Step};
pub use seal::Sealer;
pub use service::{BoxError, Service, ServiceMeta, Status};
pub use state::{Migratable, Schema, Stateless};
pub use store::{DirStore, LoadPolicy, StateStore, StoreError};
pub use supervise::RestartPolicy;
