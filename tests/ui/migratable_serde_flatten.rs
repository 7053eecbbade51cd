use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, microkernel::Schema)]
struct Meta {
    owner: String,
}

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct Account {
    balance: u64,
    #[serde(flatten)]
    meta: Meta,
}

fn main() {}
