use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Plain {
    count: u32,
}

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = Plain)]
struct State {
    count: u64,
}

impl From<Plain> for State {
    fn from(p: Plain) -> Self {
        Self { count: p.count.into() }
    }
}

fn main() {}
