#[derive(microkernel::Service)]
struct Echo;

fn main() {}
