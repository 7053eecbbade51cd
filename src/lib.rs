//! # microkernel
//!
//! Programs built from named services that a small kernel registers, starts in dependency order,
//! routes messages between, and **replaces by a new version while running**: the old version's
//! state is exported as a typed, versioned value, upgraded through declared conversions and
//! imported by the new version — no `Any`, no downcast, no request lost.
//!
//! ```
//! use microkernel::{Context, Event, Kernel, Reply, Handler};
//!
//! #[derive(microkernel::Service, Default)]
//! #[service(name = "echo")]
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Request = Event;
//!     type Response = Reply;
//!     fn handle(&mut self, ev: Event, _: &Context<'_>) -> Reply {
//!         Reply::ok("echo service handled", format!("from {}: {}", ev.from, ev.content))
//!     }
//! }
//!
//! let kernel = Kernel::new();
//! kernel.register(Echo)?;
//! kernel.start_all()?;
//! let reply = kernel.send(Event::new("echo", "microKernel", "unknown", "Hello, Log!"));
//! assert_eq!(reply.to_string(), "{0 echo service handled from microKernel: Hello, Log!}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See the README for a tour and `docs/` for the formats.

#![forbid(unsafe_code)]

pub use kernel_core::*;
pub use kernel_derive::{Migratable, Schema, Service};

/// The NATS JetStream state store (feature `nats`): see [`kernel_nats`].
#[cfg(feature = "nats")]
pub use kernel_nats as nats;

/// The README's examples are compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
