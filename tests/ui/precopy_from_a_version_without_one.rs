use microkernel::{Migratable, PrecopyMap};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct V1 {
    counts: HashMap<String, u64>,
}

// V1 has no pre-copied map: this needs `#[precopy(start)]`.
#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = V1)]
struct V2 {
    #[precopy]
    counts: PrecopyMap<String, u64>,
}

impl From<V1> for V2 {
    fn from(v1: V1) -> Self {
        Self { counts: v1.counts.into() }
    }
}

fn main() {}
