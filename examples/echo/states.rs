//! The echo service's state, every released version. Never edit a released version: add a new
//! one with `from = <the last one>`. (`tests/fixtures.rs` fails if a fingerprint changes.)

use microkernel::Migratable;
use serde::{Deserialize, Serialize};

/// Version 1: a request counter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 1)]
pub struct EchoStateV1 {
    /// Requests answered.
    pub count: u32,
}

/// Version 2: a wider counter and who sent the last request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Migratable)]
#[migratable(version = 2, from = EchoStateV1, down = downgrade_v2)]
pub struct EchoStateV2 {
    /// Requests answered (weighted: v2 counts 8 per request).
    pub count: u64,
    /// Sender of the last request, if any since the upgrade.
    pub last_from: String,
}

impl From<EchoStateV1> for EchoStateV2 {
    fn from(v1: EchoStateV1) -> Self {
        Self {
            count: v1.count.into(),
            last_from: String::new(),
        }
    }
}

/// Rolling back saturates the count at `u32::MAX` and forgets the sender.
fn downgrade_v2(v2: &EchoStateV2) -> EchoStateV1 {
    EchoStateV1 {
        count: u32::try_from(v2.count).unwrap_or(u32::MAX),
    }
}
