#[derive(microkernel::Service)]
#[service(name = echo)]
struct Echo;

fn main() {}
