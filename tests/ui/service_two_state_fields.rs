use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 1)]
struct Count {
    n: u32,
}

#[derive(microkernel::Service)]
#[service(name = "echo")]
struct Echo {
    #[state]
    first: Count,
    #[state]
    second: Count,
}

fn main() {}
