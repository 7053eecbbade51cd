//! What the fuzz targets run, shared with the regression test (tests/fuzz_regressions.rs) so
//! that every crasher found stays a test.
//!
//! - `envelope`: parse the header (format 1 or 2), then open with the fixtures' key (so inputs
//!   derived from the golden fixtures reach decryption), then decode the opened state.
//! - `state`: decode versioned state bytes into the newest echo state and into a state with
//!   nested collections and a bulk-decoded map.
#![allow(dead_code)]

use std::collections::BTreeMap;

use microkernel::seal::envelope::Header;
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::state;
use serde::{Deserialize, Serialize};

#[path = "../examples/echo/states.rs"]
mod states;

/// The fixtures' test key (tests/fixtures.rs).
const TEST_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A state with the shapes postcard decodes most intricately.
#[derive(Debug, Serialize, Deserialize, microkernel::Migratable)]
#[migratable(version = 1)]
pub struct Nested {
    pub name: String,
    pub items: Vec<(u64, Option<String>)>,
    #[serde(with = "microkernel::state::bulk_btree_map")]
    pub table: BTreeMap<String, u64>,
    pub mode: Mode,
}

#[derive(Debug, Serialize, Deserialize, microkernel::Migratable)]
#[migratable(version = 1)]
pub enum Mode {
    Off,
    On(u8),
    Custom { level: i16, tags: Vec<String> },
}

pub fn envelope(data: &[u8]) {
    let Ok((header, _)) = Header::parse(data) else { return };
    let key = Key::from_hex(header.algorithm, &TEST_KEY_HEX[..2 * header.algorithm.key_len()]).unwrap();
    let sealer = Sealer::new(Keyring::new(header.key_id.0, key));
    if let Ok((opened, _generation)) = sealer.open_generation(header.service, data.to_vec()) {
        let _ = state::decode::<states::EchoStateV2>(opened.as_bytes());
    }
    let _ = Algorithm::from_id(data.first().copied().unwrap_or(0));
}

pub fn state(data: &[u8]) {
    let _ = state::decode::<states::EchoStateV2>(data);
    let _ = state::decode::<Nested>(data);
    // The same bytes behind a valid tag, so postcard sees them as a body.
    let mut tagged = state::StateTag::of::<Nested>().to_bytes().to_vec();
    tagged.extend_from_slice(data);
    let _ = state::decode::<Nested>(&tagged);
}
