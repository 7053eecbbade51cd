use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1, down = make_nothing)]
struct State {
    count: u32,
}

fn main() {}
