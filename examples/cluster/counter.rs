//! The service the cluster moves between nodes: a counter, in a v1 and a v2 whose state is
//! upgraded from v1's on the way.

use microkernel::asynchronous::{AsyncContext, AsyncHandler};
use microkernel::{Event, Kernel, LifecycleError, Migratable, Reply, Service};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 1)]
pub struct CountV1 {
    pub n: u64,
}

/// v2 also remembers how many calls it answered since the upgrade.
#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 2, from = CountV1)]
pub struct CountV2 {
    pub n: u64,
    pub since_upgrade: u64,
}

impl From<CountV1> for CountV2 {
    fn from(v1: CountV1) -> Self {
        Self {
            n: v1.n,
            since_upgrade: 0,
        }
    }
}

#[derive(Service, Default)]
#[service(name = "counter")]
pub struct CounterV1 {
    #[state]
    count: CountV1,
}

impl AsyncHandler for CounterV1 {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        self.count.n += 1;
        Reply::ok("v1", self.count.n.to_string())
    }
}

#[derive(Service, Default)]
#[service(name = "counter")]
pub struct CounterV2 {
    #[state]
    count: CountV2,
}

impl AsyncHandler for CounterV2 {
    type Request = Event;
    type Response = Reply;
    async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
        self.count.n += 1;
        self.count.since_upgrade += 1;
        Reply::ok("v2", self.count.n.to_string())
    }
}

/// Registers the counter of `version` (1 or 2); with the kernel's store, its state is restored.
pub async fn register(kernel: Kernel, version: u32) -> Result<(), LifecycleError> {
    match version {
        1 => kernel.register_async(CounterV1::default()).await.map(drop),
        _ => kernel.register_async(CounterV2::default()).await.map(drop),
    }
}
