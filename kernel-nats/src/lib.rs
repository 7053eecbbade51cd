//! Several [microkernel](https://docs.rs/microkernel) kernels — processes on several hosts — as
//! one system through NATS with JetStream: sealed states in the server, one owner per service,
//! calls that reach a service wherever it runs, and services handed between nodes (a rolling
//! upgrade) without a failed, lost or doubled call.
//!
//! [`NatsStore`]: each service's sealed state is one key of a JetStream key-value bucket (a state
//! larger than [`NatsStoreOptions::inline_bytes`] lives in the bucket's object store, the key
//! pointing at it), and every write is a compare-and-set on the revision this store last saw, so
//! that two stores (two nodes) can never both write a service's state. The server's revisions
//! are what a directory cannot offer: an older state cannot be written back without the server
//! noticing (see docs/SECURITY.md).
//!
//! [`NatsStore`] implements [`StateStore`](kernel_core::store::StateStore) and passes its
//! conformance suite against a real `nats-server` (`tests/conformance.rs`). Its futures run on
//! the tokio runtime it was opened on, so the synchronous kernel drives them with
//! `store::block_on` and async code awaits them.
//!
//! Works with `nats-server` 2.9 (Debian's) and later: the bucket's stream is created explicitly,
//! as a key-value bucket's stream is configured, because the client's own bucket creation asks
//! for account information a 2.9 server does not give.
//!
//! [`Claims`] say which node runs a service: expiring claims, refreshed by compare-and-set,
//! given up before they could expire when a refresh fails.
//!
//! A [`Node`] runs a service while it holds the claim ([`Node::take_over`]: claim, restore
//! from the store, fencing write, start, serve to the other nodes — and stop the moment the
//! claim is lost), and hands it to another node ([`Owned::hand_over`]: stop taking requests,
//! finish the ones taken, save, leave the record of answered calls, release) without a failed,
//! lost or doubled call.
//!
//! [`calls`] reaches a service on whichever node serves it (`calls::call`, or
//! [`calls::NatsCalls`] behind `Kernel::call_async`): typed, shape-checked, deadline-bound,
//! retried with the same call id, answered once per call id.
//!
//! Nodes sharing one sealing key should use XChaCha20-Poly1305 (each node counts only its own
//! seals against a key's random-nonce limit; 192-bit nonces make that limit moot), or each have
//! a key of their own: docs/SECURITY.md, "Several nodes". Connect with [`async_nats`] (TLS and
//! credentials are its `ConnectOptions`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod answers;
mod buckets;
pub mod calls;
mod names;
mod node;
mod objects;
mod ownership;
mod serve;
mod store;
mod wire;

/// The NATS client this crate speaks through: connect with it (TLS and credentials are its
/// `ConnectOptions`) and hand the client to [`NatsStore::open`] and [`Node::open`].
pub use async_nats;
pub use names::{MAX_KEY_LEN, check_key};
pub use node::{HandOverError, Node, NodeOptions, Owned, TakeOverError};
pub use ownership::{Claim, ClaimError, Claims};
pub use store::{NatsStore, NatsStoreOptions};
