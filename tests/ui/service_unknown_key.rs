#[derive(microkernel::Service)]
#[service(nmae = "echo")]
struct Echo;

fn main() {}
