//! # microkernel
//!
//! Programs built from named services that a small kernel registers, starts in dependency order,
//! routes messages between, and **replaces by a new version while running**: the old version's
//! state is exported as a typed, versioned value, upgraded through declared conversions, sealed
//! while it crosses over and imported by the new version — no `Any`, no downcast, no request
//! lost.
//!
//! This page is a guided tour, one short example per main item:
//!
//! 1. [`Kernel`]: register, start, call, stop.
//! 2. [`Handler`]: what a service does, and how it calls another one.
//! 3. [`Migratable`]: state versions, and a replacement that carries the state over.
//! 4. [`Sealer`]: the key that seals a state while it crosses or is stored.
//! 5. [`DirStore`]: a state kept across a restart of the process.
//! 6. [`AsyncHandler`] (feature `tokio`): async services.
//! 7. [`Node`] (feature `nats`): several processes as one system through NATS.
//!
//! ## 1. The kernel
//!
//! A [`Kernel`] holds the services. [`register`](Kernel::register) returns a
//! [`Handle`], valid across replacements; [`start_all`](Kernel::start_all) starts every service
//! after its dependencies; a call goes through a handle, or by name with
//! [`call`](Kernel::call). [`Event`] and [`Reply`] are a small text protocol kept for the demo
//! and for calls by name; a service can speak types of its own (section 2).
//!
//! ```
//! use microkernel::{Context, Event, Handler, Kernel, Reply, Status};
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
//! let kernel = Kernel::new(); // cheap to clone, Send + Sync
//! let echo = kernel.register(Echo)?;
//! kernel.start_all()?;
//! let reply = echo.call(Event::new("echo", "microKernel", "greet", "Hello, Log!"))?;
//! assert_eq!(reply.to_string(), "{0 echo service handled from microKernel: Hello, Log!}");
//! assert_eq!(kernel.call("echo", Event::new("echo", "main", "greet", "hi"))?.code, 0);
//! kernel.stop_all()?;
//! assert_eq!(kernel.status("echo"), Some(Status::Stopped));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Kernel`]'s own page lists every operation with its synchronous and async spelling and the
//! error it fails with.
//!
//! ## 2. A handler
//!
//! [`Handler`] is the trait you implement: `handle`, and optionally `start` and `stop`.
//! `#[derive(Service)]` writes the rest ([`Service`]: the name, the dependencies, the state
//! plumbing). A handler reaches other services through its [`Context`]; a service declared
//! with `deps` starts after them. A service with request and response types of its own is
//! registered with [`register_typed`](Kernel::register_typed) and called through its handle or
//! with [`call_typed`](Kernel::call_typed).
//!
//! ```
//! use microkernel::{BoxError, Context, Handler, Kernel, Level};
//!
//! #[derive(microkernel::Service)]
//! #[service(name = "adder")]
//! struct Adder;
//! impl Handler for Adder {
//!     type Request = (u32, u32);
//!     type Response = u32;
//!     fn handle(&mut self, (a, b): (u32, u32), _: &Context<'_>) -> u32 { a + b }
//! }
//!
//! #[derive(microkernel::Service)]
//! #[service(name = "doubler", deps = ["adder"])] // starts after `adder`, stops before it
//! struct Doubler;
//! impl Handler for Doubler {
//!     type Request = u32;
//!     type Response = u32;
//!     fn start(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
//!         ctx.log(Level::Info, "doubling from now on"); // a tracing event
//!         Ok(())
//!     }
//!     fn handle(&mut self, n: u32, ctx: &Context<'_>) -> u32 {
//!         let adder = ctx.kernel().expect("the kernel is alive");
//!         adder.call_typed::<(u32, u32), u32>("adder", (n, n)).unwrap_or(0)
//!     }
//! }
//!
//! let kernel = Kernel::new();
//! let doubler = kernel.register_typed(Doubler)?; // dependencies may come later
//! kernel.register_typed(Adder)?;
//! kernel.start_all()?;
//! assert_eq!(doubler.call(21)?, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## 3. State versions and a live replacement
//!
//! A service's state is the one field marked `#[state]`; its type derives [`Migratable`], and
//! each new version names the one it upgrades from (`from = ...`, through `From` or
//! `TryFrom`). The chain is checked at compile time. [`Kernel::replace`] stops the old version
//! between two calls, upgrades its state along the chain and starts the new version with it;
//! calls made meanwhile wait. Only the `#[state]` field crosses: every other field of the new
//! version comes from the value passed to `replace`. Both versions are types compiled into this
//! binary; across a restart, see section 5.
//!
//! ```
//! use microkernel::{Context, Event, Handler, Kernel, Migratable, Replaced, Reply};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Migratable, Default)]
//! #[migratable(version = 1)]
//! struct CountV1 { count: u32 }
//!
//! #[derive(Serialize, Deserialize, Migratable, Default)]
//! #[migratable(version = 2, from = CountV1)]
//! struct CountV2 { count: u64, resets: u32 }
//! impl From<CountV1> for CountV2 {
//!     fn from(v1: CountV1) -> Self { CountV2 { count: v1.count.into(), resets: 0 } }
//! }
//!
//! #[derive(microkernel::Service, Default)]
//! #[service(name = "counter")]
//! struct CounterV1 { #[state] state: CountV1 }
//! impl Handler for CounterV1 {
//!     type Request = Event;
//!     type Response = Reply;
//!     fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
//!         self.state.count += 1;
//!         Reply::ok("v1", self.state.count.to_string())
//!     }
//! }
//!
//! #[derive(microkernel::Service, Default)]
//! #[service(name = "counter")]
//! struct CounterV2 { #[state] state: CountV2 }
//! impl Handler for CounterV2 {
//!     type Request = Event;
//!     type Response = Reply;
//!     fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
//!         self.state.count += 1;
//!         Reply::ok("v2", self.state.count.to_string())
//!     }
//! }
//!
//! let kernel = Kernel::new();
//! let counter = kernel.register(CounterV1::default())?;
//! kernel.start_all()?;
//! let add = || Event::new("counter", "main", "add", "");
//! counter.call(add())?;
//! counter.call(add())?;
//! let done = kernel.replace(CounterV2::default())?;
//! assert!(matches!(done, Replaced::Swapped { sealed: true, .. }));
//! let reply = counter.call(add())?; // the same handle now reaches v2
//! assert_eq!((reply.message.as_ref(), reply.data.as_ref()), ("v2", "3"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A replacement that fails leaves the old version serving with its state; the
//! [`ReplaceError`] names the [`Step`] and its [`cause`](ReplaceError::cause), an enum to match
//! on. [`state::encode`] and [`state::decode`] give the same chain without a kernel: bytes
//! written by `CountV1` decode as `CountV2`.
//!
//! ## 4. Sealing
//!
//! A state is sealed (encrypted and authenticated with an AEAD, bound to the service's name and
//! the state's version) while it crosses a replacement and whenever it is stored.
//! [`Kernel::new`] seals crossings with a key it makes for itself and never stores; a kernel
//! with a store needs a [`Sealer`] holding keys you keep. A [`Keyring`](seal::Keyring) seals
//! with its primary key and opens with all of them, so keys can be rotated; the key id is
//! written in each sealed state. The library reads no environment variable of its own:
//! [`Key::from_env`](seal::Key::from_env) reads the one you name.
//!
//! ```
//! use microkernel::Kernel;
//! use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
//!
//! // In production: Key::from_env(Algorithm::Aes256Gcm, "APP_STATE_KEY")?, from_file, ...
//! let key = Key::from_hex(Algorithm::Aes256Gcm, &"07".repeat(32))?;
//! let mut keyring = Keyring::new(1, key); // 1: the id of the primary key
//! keyring.add(2, Key::generate(Algorithm::Aes256Gcm)?)?; // a key to rotate to
//! let sealer = Sealer::new(keyring);
//! let kernel = Kernel::builder().sealer(sealer.clone()).build()?;
//! assert!(kernel.sealer().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## 5. Across a restart: a store
//!
//! With a store, a service's state is saved (sealed) when it stops and on
//! [`checkpoint`](Kernel::checkpoint), and a registering service whose state the store holds
//! starts from it, upgraded along its chain: a new binary with `CounterV2` continues the
//! count its predecessor with `CounterV1` saved. [`DirStore`] keeps one file per service in a
//! private directory; the kernel tells its observer whether it restored
//! ([`Notice::Restored`]) or found nothing ([`Notice::NoStoredState`]), and
//! [`LoadPolicy::RequireStored`] makes a missing state an error.
//!
//! ```
//! use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
//! use microkernel::{Context, DirStore, Event, Handler, Kernel, Migratable, Reply};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Migratable, Default)]
//! #[migratable(version = 1)]
//! struct Visits { count: u64 }
//!
//! #[derive(microkernel::Service, Default)]
//! #[service(name = "visits")]
//! struct VisitCounter { #[state] state: Visits }
//! impl Handler for VisitCounter {
//!     type Request = Event;
//!     type Response = Reply;
//!     fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
//!         self.state.count += 1;
//!         Reply::ok("visits", self.state.count.to_string())
//!     }
//! }
//!
//! let dir = std::env::temp_dir().join(format!("mk-doc-tour-{}", std::process::id()));
//! let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm)?));
//! let visit = || Event::new("visits", "main", "visit", "");
//! {
//!     // The first run: count to 2, saved when the kernel stops the service.
//!     let kernel = Kernel::builder().sealer(sealer.clone()).store(DirStore::open(&dir)?).build()?;
//!     let visits = kernel.register(VisitCounter::default())?;
//!     kernel.start_all()?;
//!     visits.call(visit())?;
//!     visits.call(visit())?;
//!     kernel.stop_all()?;
//! }
//! // The next run (the same key, the same directory) starts from the saved count.
//! let kernel = Kernel::builder().sealer(sealer).store(DirStore::open(&dir)?).build()?;
//! let visits = kernel.register(VisitCounter::default())?;
//! kernel.start_all()?;
//! assert_eq!(visits.call(visit())?.data, "3");
//! # kernel.stop_all()?;
//! # drop(kernel);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`StateStore`] is the trait a store implements (with a conformance suite,
//! [`store::conformance`]); the NATS store of section 7 is another.
//!
//! ## 6. Async services (feature `tokio`)
//!
//! With `features = ["tokio"]` and a tokio runtime, a service implements
//! [`AsyncHandler`] (its hooks and `handle` are `async fn`s) and is
//! registered with `register_async`; the kernel's operations have async spellings
//! (`call_async`, `replace_async`, `shutdown`, ...). Synchronous and async services call each
//! other. Dropping a call's future withdraws a request that has not reached its handler yet;
//! one the handler already has runs to its end.
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # {
//! use microkernel::asynchronous::{AsyncContext, AsyncHandler};
//! use microkernel::{Event, Kernel, Reply};
//!
//! #[derive(microkernel::Service)]
//! #[service(name = "greeter")]
//! struct Greeter;
//!
//! impl AsyncHandler for Greeter {
//!     type Request = Event;
//!     type Response = Reply;
//!     async fn handle(&mut self, ev: Event, _: &AsyncContext) -> Reply {
//!         tokio::task::yield_now().await; // any async work
//!         Reply::ok("greeted", format!("hello, {}", ev.content))
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let kernel = Kernel::new();
//! let greeter = kernel.register_async(Greeter).await?;
//! kernel.start_all_async().await?;
//! let reply = greeter.call(Event::new("greeter", "main", "greet", "Ada")).await?;
//! assert_eq!(reply.data, "hello, Ada");
//! kernel.shutdown().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # }
//! ```
//!
//! ## 7. Several nodes (feature `nats`)
//!
//! A [`Node`] is one kernel among several that share a NATS server with JetStream:
//! states live sealed in the server ([`NatsStore`]), each service runs on the
//! one node that holds its claim and is called from any node, and a node hands a service to
//! another (a rolling upgrade) without a failed, lost or doubled call. Needs a running
//! `nats-server -js`.
//!
//! ```no_run
//! # #[cfg(feature = "nats")]
//! # {
//! use std::time::Duration;
//! use microkernel::nats::{NatsStore, NatsStoreOptions, Node, NodeOptions, async_nats};
//! use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
//! use microkernel::Kernel;
//! # #[derive(microkernel::Service, Default)]
//! # #[service(name = "counter")]
//! # struct Counter;
//! # impl microkernel::asynchronous::AsyncHandler for Counter {
//! #     type Request = microkernel::Event;
//! #     type Response = microkernel::Reply;
//! #     async fn handle(&mut self, _: microkernel::Event, _: &microkernel::asynchronous::AsyncContext) -> microkernel::Reply {
//! #         microkernel::Reply::ok("counted", "")
//! #     }
//! # }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let store = NatsStore::open(client.clone(), "states", NatsStoreOptions::default()).await?;
//! let key = Key::from_env(Algorithm::XChaCha20Poly1305, "APP_STATE_KEY")?; // shared by the nodes
//! let kernel = Kernel::builder().sealer(Sealer::new(Keyring::new(1, key))).store(store).build()?;
//! let node = Node::open(&kernel, client, "node-a", NodeOptions::default()).await?;
//! // Claim "counter" (waiting up to a minute for its owner to let go), restore its state, serve it.
//! let owned = node
//!     .take_over("counter", Duration::from_secs(60), |kernel| async move {
//!         kernel.register_async(Counter).await.map(drop)
//!     })
//!     .await?;
//! // ... later, to upgrade: hand it to the node running the new version.
//! owned.hand_over().await?;
//! # Ok(()) }
//! # }
//! ```
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `tokio` | async services: [`asynchronous`], the kernel's `_async` operations |
//! | `tower` | `tower::Service` for [`AsyncHandle`] (implies `tokio`) |
//! | `nats` | [`nats`]: the NATS JetStream store, claims, nodes, calls between nodes (implies `tokio`) |
//! | `takeover` | [`takeover`]: a new process takes over a running one on the same machine (Linux) |
//!
//! Every crate of the library forbids `unsafe` code. The derive macros are re-exported here:
//! [`Service`](macro@Service), [`Migratable`](macro@Migratable), [`Schema`](macro@Schema).
//!

// Links to feature-gated items: to this build's item when it has the feature, else to docs.rs.
#![cfg_attr(
    feature = "tokio",
    doc = "[`asynchronous`]: asynchronous\n[`AsyncHandler`]: asynchronous::AsyncHandler\n[`AsyncHandle`]: asynchronous::AsyncHandle"
)]
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[`asynchronous`]: https://docs.rs/microkernel/latest/microkernel/asynchronous/index.html\n[`AsyncHandler`]: https://docs.rs/microkernel/latest/microkernel/asynchronous/trait.AsyncHandler.html\n[`AsyncHandle`]: https://docs.rs/microkernel/latest/microkernel/asynchronous/struct.AsyncHandle.html"
)]
#![cfg_attr(
    feature = "nats",
    doc = "[`nats`]: nats\n[`Node`]: nats::Node\n[`NatsStore`]: nats::NatsStore"
)]
#![cfg_attr(
    not(feature = "nats"),
    doc = "[`nats`]: https://docs.rs/microkernel/latest/microkernel/nats/index.html\n[`Node`]: https://docs.rs/kernel-nats/latest/kernel_nats/struct.Node.html\n[`NatsStore`]: https://docs.rs/kernel-nats/latest/kernel_nats/struct.NatsStore.html"
)]
#![cfg_attr(all(feature = "takeover", target_os = "linux"), doc = "[`takeover`]: takeover")]
#![cfg_attr(
    not(all(feature = "takeover", target_os = "linux")),
    doc = "[`takeover`]: https://docs.rs/microkernel/latest/microkernel/takeover/index.html"
)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use kernel_core::*;
pub use kernel_derive::{Migratable, Schema, Service};

/// Several kernels as one system through NATS JetStream (feature `nats`): see [`kernel_nats`].
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use kernel_nats as nats;

/// The README's examples are compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
