use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct StateV1 {
    count: u32,
}

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = StateV1)]
struct StateV2 {
    count: u64,
}

fn main() {}
