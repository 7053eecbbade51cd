use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = "2")]
struct State {
    count: u32,
}

fn main() {}
