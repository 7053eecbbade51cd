use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 3)]
struct StateV3 {
    count: u32,
}

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = StateV3)]
struct StateV2 {
    count: u64,
}

impl From<StateV3> for StateV2 {
    fn from(v: StateV3) -> Self {
        Self { count: v.count.into() }
    }
}

fn main() {}
