use microkernel::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
struct Account {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
    balance: u64,
}

fn main() {}
