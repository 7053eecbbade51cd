use microkernel::Migratable;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct V1 {
    #[precopy]
    counts: HashMap<String, u64>,
}

fn main() {}
