//! The runtime of [microkernel](https://docs.rs/microkernel): a kernel that registers named
//! services, starts them in dependency order, routes messages between them, and replaces a
//! running service by a new version with its state moved across as a typed, versioned value.
//!
//! Use it through the `microkernel` facade, which also exports the derive macros.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod boxed;
mod logger;
mod messaging;
mod panic;
pub mod replace;
mod runtime;
pub mod seal;
pub mod state;
pub mod store;
pub mod supervise;
#[cfg(all(feature = "takeover", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "takeover", target_os = "linux"))))]
pub mod takeover;

pub use boxed::ServiceFault;
pub use logger::{LevelControl, LogLine, Logger};
pub use messaging::message::{Event, KERNEL, Reply, Text, code};
pub use replace::{ReplaceCause, ReplaceError, Replaced, Step};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use runtime::asynchronous;
pub use runtime::context::{Context, Level};
pub use runtime::error::{CallError, Cycle, Hook, LifecycleError, NameRefusal, Status, StopAllError};
pub use runtime::handle::Handle;
pub use runtime::kernel::{BuildError, Kernel, KernelBuilder};
pub use runtime::notice::Notice;
pub use runtime::persist::CheckpointError;
pub use runtime::service::{BoxError, Handler, Service};
pub use seal::Sealer;
pub use state::precopy::{Precopy, PrecopyMap};
pub use state::{Migratable, Schema, Stateless};
pub use store::{DirStore, LoadPolicy, StateStore, StoreError};
pub use supervise::RestartPolicy;
