//! Every supported shape of state type, and a chain using each conversion kind.
use microkernel::{Migratable, state};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable, Debug, PartialEq)]
#[migratable(version = 1)]
struct Named {
    count: u32,
}

#[derive(Serialize, Deserialize, Migratable, Debug, PartialEq)]
#[migratable(version = 1)]
struct Tuple(u32, String);

#[derive(Serialize, Deserialize, Migratable, Debug, PartialEq)]
#[migratable(version = 1)]
struct Unit;

#[derive(Serialize, Deserialize, Migratable, Debug, PartialEq)]
#[migratable(version = 1)]
enum Mode {
    Off,
    On(u8),
    Custom { level: u16 },
}

#[derive(Serialize, Deserialize, Migratable, Debug, PartialEq)]
#[migratable(version = 3, from = Named, try_from, down = back_to_named)]
struct NamedV3 {
    count: u64,
}

impl TryFrom<Named> for NamedV3 {
    type Error = std::num::TryFromIntError;
    fn try_from(v: Named) -> Result<Self, Self::Error> {
        Ok(Self { count: u64::from(v.count) })
    }
}

fn back_to_named(v: &NamedV3) -> Named {
    Named { count: v.count as u32 }
}

fn main() {
    let bytes = state::encode(&Named { count: 4 }).unwrap();
    let v3: NamedV3 = state::decode(bytes.as_bytes()).unwrap();
    assert_eq!(v3, NamedV3 { count: 4 });
    assert_eq!(<NamedV3 as Migratable>::downgrade(&v3).unwrap(), Named { count: 4 });
    for b in [state::encode(&Tuple(1, "x".into())).unwrap(), state::encode(&Unit).unwrap(), state::encode(&Mode::Custom { level: 3 }).unwrap()] {
        assert!(!b.as_bytes().is_empty());
    }
    assert_eq!(
        state::schema_text(<Mode as state::Schema>::SCHEMA),
        "enum Mode { Off, On(u8), Custom { level: u16 } }"
    );
    assert_eq!(state::schema_text(<Tuple as state::Schema>::SCHEMA), "Tuple(u32, String)");
    assert_eq!(state::schema_text(<Unit as state::Schema>::SCHEMA), "Unit");
}
