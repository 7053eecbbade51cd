use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
#[serde(untagged)]
enum Amount {
    Whole(u64),
    Text(String),
}

fn main() {}
