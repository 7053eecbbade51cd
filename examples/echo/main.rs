//! The Go design's demo, with the sealed swap: a logger greets the kernel and the echo service,
//! the kernel sends `Hello, Log!` to echo, then echo v1 is replaced by echo v2 with its count
//! moved across, and everything stops in reverse dependency order.
//!
//! Run it with `cargo run --example echo`. Set `RUST_LOG=debug` to see the kernel's tracing.
//! The state is sealed with AES-256-GCM under the key in `MICROKERNEL_STATE_KEY` (hex or
//! base64), or under a key generated for this run.

mod states;

use std::time::Duration;

use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::{Context, Event, Handler, KERNEL, Kernel, Notice, Reply};
use states::{EchoStateV1, EchoStateV2};

const KEY_VAR: &str = "MICROKERNEL_STATE_KEY";

/// Echo, first version: counts requests by one.
#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
struct EchoV1 {
    #[state]
    state: EchoStateV1,
}

impl Handler for EchoV1 {
    type Request = Event;
    type Response = Reply;

    fn start(&mut self, _: &Context<'_>) -> Result<(), microkernel::BoxError> {
        println!("[echo] starting...");
        Ok(())
    }

    fn stop(&mut self, _: &Context<'_>) -> Result<(), microkernel::BoxError> {
        println!("[echo] stopping...");
        Ok(())
    }

    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        self.state.count += 1;
        Reply::ok(
            "echo service handled",
            format!("from {}: {}", event.from, event.content),
        )
    }
}

/// Echo, second version: counts by eight and remembers the sender.
#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
struct EchoV2 {
    #[state]
    state: EchoStateV2,
}

impl Handler for EchoV2 {
    type Request = Event;
    type Response = Reply;

    fn start(&mut self, _: &Context<'_>) -> Result<(), microkernel::BoxError> {
        println!("[echov2] starting...");
        Ok(())
    }

    fn stop(&mut self, _: &Context<'_>) -> Result<(), microkernel::BoxError> {
        println!("[echov2] stopping...");
        Ok(())
    }

    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        self.state.count += 8;
        self.state.last_from = event.from.to_string();
        println!("[echo] count is {}", self.state.count);
        Reply::ok(
            "echo v2 service handled",
            format!("from {}: {}", event.from, event.content),
        )
    }
}

/// The demo's logger: greets the kernel and the echo service through pushed events.
#[derive(microkernel::Service)]
#[service(name = "logger", deps = ["echo"])]
struct GreetingLogger;

const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

impl GreetingLogger {
    fn greet(&self, ctx: &Context<'_>, to: &'static str, message: &'static str) {
        println!("[logger] LOG: {message}");
        let reply = ctx.push(Event::new(to, ctx.service().to_owned(), "log", message), PUSH_TIMEOUT);
        // Every push is answered through the kernel, whoever handled it.
        println!("[logger] got reply from kernel: {}", reply.message);
    }
}

impl Handler for GreetingLogger {
    type Request = Event;
    type Response = Reply;

    fn start(&mut self, _: &Context<'_>) -> Result<(), microkernel::BoxError> {
        println!("[logger] starting...");
        Ok(())
    }

    fn stop(&mut self, _: &Context<'_>) -> Result<(), microkernel::BoxError> {
        println!("[logger] stopping...");
        Ok(())
    }

    fn handle(&mut self, event: Event, ctx: &Context<'_>) -> Reply {
        match &*event.kind {
            "greet" => {
                self.greet(ctx, KERNEL, "Hello, Microkernel!");
                self.greet(ctx, "echo", "Hello, Echo!");
                Reply::ok("greeted", "")
            }
            other => Reply::new(400, "unknown kind", other.to_owned()),
        }
    }
}

/// Prints the kernel's notices the way the Go design's demo does.
fn print_notice(notice: &Notice<'_>) {
    match notice {
        Notice::Started { service } => println!("Started: {service}"),
        Notice::Stopped { service } => println!("Stopped: {service}"),
        Notice::Failed { service } => println!("Failed: {service}"),
        Notice::Pushed { event } => {
            println!("[MicroKernel] Event from {}: - {}", event.from, event.content)
        }
        Notice::StateMigrated {
            service, sealed: true, ..
        } => {
            println!("Encrypted state migrated for service {service}")
        }
        Notice::StateMigrated {
            service, sealed: false, ..
        } => {
            println!("State migrated for service {service}")
        }
        Notice::Replaced { service } => println!("Replaced: {service}"),
        _ => {}
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The kernel reports through `tracing`; show warnings (or RUST_LOG=debug…) on stderr.
    let level = std::env::var("RUST_LOG").ok().and_then(|l| l.parse().ok());
    tracing_subscriber::fmt()
        .with_max_level(level.unwrap_or(tracing::Level::WARN))
        .with_writer(std::io::stderr)
        .init();
    let kernel = Kernel::builder().observer(print_notice).sealer(sealer()?).build()?;

    kernel.register(GreetingLogger)?;
    println!("Registered: logger");
    kernel.register(EchoV1::default())?;
    println!("Registered: echo");

    println!("Starting all services...");
    println!("Services: [{}]", kernel.start_order()?.join(" "));
    kernel.start_all()?;

    kernel.call("logger", Event::new("logger", "main", "greet", ""))?;

    println!("[MicroKernel] Send Event to echo: Hello, Log!");
    println!(
        "{}",
        kernel.send(Event::new("echo", "microKernel", "unknown", "Hello, Log!"))
    );

    println!("[MicroKernel] Replacing echo v1 with v2...");
    kernel.replace(EchoV2::default())?;

    println!("[MicroKernel] Send Event to echo: Hello, Log!");
    println!(
        "{}",
        kernel.send(Event::new("echo", "microKernel", "unknown", "Hello, Log!"))
    );

    let reply = kernel.push(Event::new(KERNEL, "main", "status", "v2 is serving"), PUSH_TIMEOUT);
    println!("v2 reply: {reply}");

    println!("Stopping all services...");
    kernel.stop_all()?;
    Ok(())
}

/// AES-256-GCM under the key from the environment, or a fresh one; says which, never the key.
fn sealer() -> Result<Sealer, microkernel::seal::KeyError> {
    let key = if std::env::var_os(KEY_VAR).is_some() {
        println!("Sealing state with AES-256-GCM, key from {KEY_VAR}");
        Key::from_env(Algorithm::Aes256Gcm, KEY_VAR)?
    } else {
        println!("Sealing state with AES-256-GCM, key generated for this run");
        Key::generate(Algorithm::Aes256Gcm)?
    };
    Ok(Sealer::new(Keyring::new(1, key)))
}
