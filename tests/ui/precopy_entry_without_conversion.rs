use microkernel::{Migratable, PrecopyMap, Schema};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct V1 {
    #[precopy]
    counts: PrecopyMap<String, u64>,
}

#[derive(Serialize, Deserialize, Schema, Clone)]
struct Count {
    n: u64,
}

// No `From<u64> for Count`: the entries cannot upgrade one by one.
#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = V1)]
struct V2 {
    #[precopy]
    counts: PrecopyMap<String, Count>,
}

impl From<V1> for V2 {
    fn from(v1: V1) -> Self {
        Self { counts: v1.counts.iter().map(|(k, v)| (k.clone(), Count { n: *v })).collect() }
    }
}

fn main() {}
