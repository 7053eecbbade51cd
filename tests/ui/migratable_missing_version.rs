use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(from = Other)]
struct State {
    count: u32,
}

fn main() {}
