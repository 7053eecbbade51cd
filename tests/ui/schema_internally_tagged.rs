use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, microkernel::Schema)]
#[serde(tag = "type")]
enum Event {
    Opened { at: u64 },
    Closed { at: u64 },
}

fn main() {}
