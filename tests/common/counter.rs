//! A three-version state chain and a counter service generic over it, with switches to make
//! each step of a replacement fail.
#![allow(dead_code)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use microkernel::{BoxError, Context, Event, Handler, Migratable, Reply, Service};
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
pub struct CounterV1 {
    pub count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = CounterV1, down = down_v2)]
pub struct CounterV2 {
    pub count: u64,
    #[serde(serialize_with = "refuse_unencodable")]
    #[schema(as = String)]
    pub label: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 3, from = CounterV2, try_from, down = down_v3)]
pub struct CounterV3 {
    pub count: u64,
    pub label: String,
    pub history: Vec<u64>,
}

/// Same version number as CounterV1, different schema: shares no chain with the counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
pub struct Unrelated {
    pub name: String,
}

/// A second version of CounterV1 that declares no downgrade.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = CounterV1)]
pub struct OneWayV2 {
    pub count: u64,
}

impl From<CounterV1> for CounterV2 {
    fn from(v1: CounterV1) -> Self {
        Self {
            count: v1.count.into(),
            label: "upgraded".into(),
        }
    }
}

impl From<CounterV1> for OneWayV2 {
    fn from(v1: CounterV1) -> Self {
        Self { count: v1.count.into() }
    }
}

impl TryFrom<CounterV2> for CounterV3 {
    type Error = String;
    fn try_from(v2: CounterV2) -> Result<Self, String> {
        if v2.label == "poison" {
            return Err("label `poison` cannot be upgraded".into());
        }
        if v2.label == "panic" {
            panic!("the conversion of label `panic` panics");
        }
        Ok(Self {
            count: v2.count,
            label: v2.label,
            history: vec![v2.count],
        })
    }
}

fn down_v2(v2: &CounterV2) -> CounterV1 {
    CounterV1 { count: v2.count as u32 }
}

fn down_v3(v3: &CounterV3) -> CounterV2 {
    CounterV2 {
        count: v3.count,
        label: v3.label.clone(),
    }
}

fn refuse_unencodable<S: Serializer>(label: &String, s: S) -> Result<S::Ok, S::Error> {
    if label == "unencodable" {
        return Err(serde::ser::Error::custom("this label cannot be encoded"));
    }
    s.serialize_str(label)
}

/// What every counter version can do with its state.
pub trait Count: Migratable + Default {
    fn bump(&mut self);
    fn get(&self) -> u64;
    fn label(&mut self) -> Option<&mut String> {
        None
    }
}

impl Count for CounterV1 {
    fn bump(&mut self) {
        self.count += 1;
    }
    fn get(&self) -> u64 {
        self.count.into()
    }
}

impl Count for CounterV2 {
    fn bump(&mut self) {
        self.count += 1;
    }
    fn get(&self) -> u64 {
        self.count
    }
    fn label(&mut self) -> Option<&mut String> {
        Some(&mut self.label)
    }
}

impl Count for CounterV3 {
    fn bump(&mut self) {
        self.count += 1;
    }
    fn get(&self) -> u64 {
        self.count
    }
    fn label(&mut self) -> Option<&mut String> {
        Some(&mut self.label)
    }
}

impl Count for OneWayV2 {
    fn bump(&mut self) {
        self.count += 1;
    }
    fn get(&self) -> u64 {
        self.count
    }
}

impl Count for Unrelated {
    fn bump(&mut self) {}
    fn get(&self) -> u64 {
        0
    }
}

/// Where a counter instance should fail.
#[derive(Clone, Copy, Default, PartialEq, Debug)]
pub enum Fail {
    #[default]
    Nowhere,
    Export,
    Import,
    Start,
    StartPanic,
    Stop,
    ImportPanic,
}

/// Reports "entered start" on the sender, then waits for a message on the receiver.
pub type Gate = (mpsc::Sender<()>, Arc<Mutex<mpsc::Receiver<()>>>);

/// The counter service, "counter", over any state version.
pub struct Counter<S> {
    pub state: S,
    pub fail: Fail,
    pub deps: Vec<&'static str>,
    /// When set, `start` reports on the first channel and waits on the second.
    pub gate: Option<Gate>,
}

impl<S: Count> Counter<S> {
    pub fn new() -> Self {
        Self {
            state: S::default(),
            fail: Fail::Nowhere,
            deps: Vec::new(),
            gate: None,
        }
    }

    pub fn failing(fail: Fail) -> Self {
        Self { fail, ..Self::new() }
    }

    pub fn with_deps(deps: &[&'static str]) -> Self {
        Self {
            deps: deps.to_vec(),
            ..Self::new()
        }
    }
}

impl<S: Count> Service for Counter<S> {
    type State = S;

    fn name(&self) -> &str {
        "counter"
    }

    fn dependencies(&self) -> Vec<String> {
        self.deps.iter().map(|d| d.to_string()).collect()
    }

    fn export_state(&self) -> Result<&S, BoxError> {
        if self.fail == Fail::Export {
            return Err("export refused".into());
        }
        Ok(&self.state)
    }

    fn import_state(&mut self, state: S) -> Result<(), BoxError> {
        match self.fail {
            Fail::Import => Err("import refused".into()),
            Fail::ImportPanic => panic!("import exploded"),
            _ => {
                self.state = state;
                Ok(())
            }
        }
    }
}

impl<S: Count> Handler for Counter<S> {
    type Request = Event;
    type Response = Reply;

    fn start(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
        if let Some((entered, release)) = &self.gate {
            entered.send(()).unwrap();
            release.lock().unwrap().recv().unwrap();
        }
        match self.fail {
            Fail::Start => Err("start refused".into()),
            Fail::StartPanic => panic!("start exploded"),
            _ => Ok(()),
        }
    }

    fn stop(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
        if self.fail == Fail::Stop {
            return Err("stop refused".into());
        }
        Ok(())
    }

    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        match &*event.kind {
            "bump" => self.state.bump(),
            "panic" => panic!("the counter exploded on request"),
            "label" => {
                if let Some(label) = self.state.label() {
                    *label = event.content.to_string();
                }
            }
            _ => {}
        }
        Reply::ok(format!("v{}", S::VERSION), self.state.get().to_string())
    }
}

pub fn bump() -> Event {
    Event::new("counter", "test", "bump", "")
}

pub fn explode() -> Event {
    Event::new("counter", "test", "panic", "")
}

pub fn get() -> Event {
    Event::new("counter", "test", "get", "")
}

pub fn set_label(label: &'static str) -> Event {
    Event::new("counter", "test", "label", label)
}
