//! The runtime: the kernel's registry of named services, their slots (one lock per service,
//! through which calls, hooks and exports pass), handles and contexts, the dependency graph and
//! the lifecycle in its order, the waits that detect deadlocks, and the saving and restoring of
//! states through a [`StateStore`](crate::store::StateStore).
//!
//! Replacement and supervision are built on it, in `replace/` and `supervise/`.

#[cfg(feature = "tokio")]
pub mod asynchronous;
pub(crate) mod caller;
pub(crate) mod context;
pub(crate) mod error;
pub(crate) mod graph;
pub(crate) mod handle;
pub(crate) mod kernel;
pub(crate) mod lifecycle;
pub(crate) mod loom;
pub(crate) mod notice;
pub(crate) mod persist;
pub(crate) mod reap;
pub(crate) mod restart;
pub(crate) mod route;
pub(crate) mod saving;
pub(crate) mod service;
pub(crate) mod slot;
pub(crate) mod sync;
pub(crate) mod wait;
