use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct State<T> {
    value: T,
}

fn main() {}
