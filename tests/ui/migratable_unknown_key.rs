use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(verison = 1)]
struct State {
    count: u32,
}

fn main() {}
