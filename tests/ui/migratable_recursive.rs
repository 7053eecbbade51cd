use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct Tree {
    value: u32,
    children: Vec<Tree>,
}

fn main() {}
