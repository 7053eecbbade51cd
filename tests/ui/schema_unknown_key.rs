use serde::Serialize;

#[derive(Serialize, microkernel::Schema)]
struct Holder {
    #[schema(ass = u32)]
    value: u32,
}

fn main() {}
