//! What the fuzz targets run, shared with the regression test (tests/fuzz_regressions.rs) so
//! that every crasher found stays a test.
//!
//! - `envelope`: parse the header (format 1 or 2), then open with the fixtures' key (so inputs
//!   derived from the golden fixtures reach decryption), then decode the opened state.
//! - `state`: decode versioned state bytes into the newest echo state and into a state with
//!   nested collections and a bulk-decoded map.
//! - `store_load`: the bytes as a state file in a store's directory, loaded as the store does
//!   (file checks, size limit, opening, generation check) and decoded.
//! - `describe`: what `microkernel-state inspect` prints for the bytes; no field may carry a
//!   raw control character (escaping holds).
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

/// A store over a directory of its own per fuzzing process, reused across inputs.
fn fuzz_store() -> &'static (std::path::PathBuf, microkernel::DirStore, Sealer) {
    static STORE: std::sync::OnceLock<(std::path::PathBuf, microkernel::DirStore, Sealer)> = std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("microkernel-fuzz-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = Key::from_hex(Algorithm::Aes256Gcm, TEST_KEY_HEX).unwrap();
        let options = microkernel::store::StoreOptions::default().max_state_bytes(1 << 20);
        let store = microkernel::DirStore::open_with(&dir, options).unwrap();
        (dir, store, Sealer::new(Keyring::new(7, key)))
    })
}

pub fn store_load(data: &[u8]) {
    use microkernel::store::{StateStore, block_on};
    let (dir, store, sealer) = fuzz_store();
    std::fs::write(dir.join("echo.state"), data).unwrap();
    if let Ok(Some(stored)) = block_on(store.load("echo"))
        && let Ok(opened) = sealer.open_owned("echo", stored.object.into_bytes())
    {
        let _ = state::decode::<states::EchoStateV2>(opened.as_bytes());
    }
}

pub fn describe(data: &[u8]) {
    if let Ok(text) = microkernel::seal::envelope::describe(data) {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "a control character from the file reached the output: {text:?}"
        );
        // A segmented envelope (format 3) has one more field: its segments.
        let fields = if data.get(4) == Some(&3) { 12 } else { 11 };
        assert_eq!(text.lines().count(), fields, "a field spans lines: {text:?}");
    }
}
