use microkernel::{Migratable, PrecopyMap};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct V1 {
    #[precopy]
    counts: PrecopyMap<String, u64>,
    #[precopy]
    names: PrecopyMap<u64, String>,
}

fn main() {}
