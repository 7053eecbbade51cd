//! Test services shared by the integration tests.
#![allow(dead_code)]

#[cfg(any(feature = "tokio", feature = "tower"))]
pub mod asynchronous;
pub mod captured;
pub mod counter;
pub mod flex;
pub mod stored;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use microkernel::{BoxError, Context, Event, Handler, Reply, Service, Stateless};

/// A shared, ordered record of what services did ("start a", "stop b", ...).
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    pub fn note(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// What a probe does when asked to start, stop or handle.
#[derive(Clone, Copy, Default, PartialEq)]
pub enum Fault {
    #[default]
    None,
    Error,
    Panic,
}

/// A service with a run-time name and dependencies that journals its hooks.
pub struct Probe {
    pub name: &'static str,
    pub deps: Vec<&'static str>,
    pub journal: Journal,
    pub on_start: Fault,
    pub on_stop: Fault,
    pub handled: u64,
}

impl Probe {
    pub fn new(name: &'static str, deps: &[&'static str], journal: &Journal) -> Self {
        Self {
            name,
            deps: deps.to_vec(),
            journal: journal.clone(),
            on_start: Fault::None,
            on_stop: Fault::None,
            handled: 0,
        }
    }

    pub fn failing_start(mut self, fault: Fault) -> Self {
        self.on_start = fault;
        self
    }

    pub fn failing_stop(mut self, fault: Fault) -> Self {
        self.on_stop = fault;
        self
    }
}

fn act(fault: Fault, what: &str) -> Result<(), BoxError> {
    match fault {
        Fault::None => Ok(()),
        Fault::Error => Err(format!("{what} refused").into()),
        Fault::Panic => panic!("{what} exploded"),
    }
}

impl Service for Probe {
    type State = Stateless;

    fn name(&self) -> &str {
        self.name
    }

    fn dependencies(&self) -> Vec<String> {
        self.deps.iter().map(|d| d.to_string()).collect()
    }

    fn export_state(&self) -> Result<&Stateless, BoxError> {
        Ok(&Stateless)
    }

    fn import_state(&mut self, _: Stateless) -> Result<(), BoxError> {
        Ok(())
    }
}

impl Handler for Probe {
    type Request = Event;
    type Response = Reply;

    fn start(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
        self.journal.note(format!("start {}", self.name));
        act(self.on_start, "start")
    }

    fn stop(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
        self.journal.note(format!("stop {}", self.name));
        act(self.on_stop, "stop")
    }

    fn handle(&mut self, event: Event, ctx: &Context<'_>) -> Reply {
        self.handled += 1;
        match &*event.kind {
            // Forward the event to the service named in `content`.
            "forward" => {
                let to = event.content.to_string();
                ctx.call(&to, Event::new(to.clone(), self.name, "echo", "forwarded"))
                    .unwrap_or_else(|e| e.to_reply())
            }
            "sleep" => {
                std::thread::sleep(Duration::from_millis(event.content.parse().unwrap()));
                Reply::ok("slept", "")
            }
            "panic" => panic!("handler exploded"),
            "count" => Reply::ok("count", self.handled.to_string()),
            _ => Reply::ok(format!("{} handled", self.name), event.content),
        }
    }
}

/// "echo": answers with the event's content; panics on an event of kind "panic".
#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
pub struct Echo;

impl Handler for Echo {
    type Request = Event;
    type Response = Reply;

    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        if event.kind == "panic" {
            panic!("boom");
        }
        Reply::ok("echo", event.content)
    }
}
