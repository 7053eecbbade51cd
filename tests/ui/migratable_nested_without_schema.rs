use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Limits {
    soft: u16,
    hard: u16,
}

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct Account {
    balance: u64,
    limits: Vec<Limits>,
}

fn main() {}
