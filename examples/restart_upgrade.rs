//! A new binary takes over the state of the old one across a process restart.
//!
//! Run it as v1, then as v2, against the same state directory and key:
//!
//! ```text
//! export MICROKERNEL_STATE_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
//! cargo run --example restart_upgrade -- v1 /tmp/echo-state   # counts 1, 2, 3; saves on exit
//! cargo run --example restart_upgrade -- v2 /tmp/echo-state   # restores 3 as v2, counts on: 11
//! ```
//!
//! v1 serves three requests (one each), checkpoints, and saves again when it stops. v2 finds
//! `echo.state`, upgrades the v1 state through the chain (`EchoStateV1` → `EchoStateV2`) and
//! continues the count (eight per request). A file that does not open — tampered, truncated,
//! another key — makes the run fail with an error naming the file; the file is left as it was.

#[path = "echo/states.rs"]
mod states;

use std::process::ExitCode;

use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::{Context, DirStore, Event, Handler, Kernel, Reply};
use states::{EchoStateV1, EchoStateV2};

const KEY_VAR: &str = "MICROKERNEL_STATE_KEY";

#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
struct EchoV1 {
    #[state]
    state: EchoStateV1,
}

impl Handler for EchoV1 {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        self.state.count += 1;
        println!("[echo v1] count is {}", self.state.count);
        Reply::ok(
            "echo service handled",
            format!("from {}: {}", event.from, event.content),
        )
    }
}

#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
struct EchoV2 {
    #[state]
    state: EchoStateV2,
}

impl Handler for EchoV2 {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        self.state.count += 8;
        self.state.last_from = event.from.to_string();
        println!("[echo v2] count is {}", self.state.count);
        Reply::ok(
            "echo v2 service handled",
            format!("from {}: {}", event.from, event.content),
        )
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [version, dir] = args.as_slice() else {
        eprintln!("usage: restart_upgrade v1|v2 STATE_DIR   (with {KEY_VAR} set to a 32-byte hex key)");
        return ExitCode::from(2);
    };
    match run(version, dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(version: &str, dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let key = Key::from_env(Algorithm::Aes256Gcm, KEY_VAR)?;
    let sealer = Sealer::new(Keyring::new(1, key));
    let kernel = Kernel::builder().sealer(sealer).store(DirStore::open(dir)?).build()?;
    let requests = match version {
        "v1" => {
            kernel.register(EchoV1::default())?;
            3
        }
        "v2" => {
            kernel.register(EchoV2::default())?;
            1
        }
        other => return Err(format!("unknown version `{other}`; expected v1 or v2").into()),
    };
    kernel.start_all()?;
    for _ in 0..requests {
        kernel.call("echo", Event::new("echo", "main", "greet", "Hello, Log!"))?;
    }
    for location in kernel.checkpoint()? {
        println!("checkpoint: {location}");
    }
    kernel.stop_all()?;
    Ok(())
}
