use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, microkernel::Schema)]
struct Holder {
    #[serde(skip_serializing)]
    cache: u32,
    value: u32,
}

fn main() {}
