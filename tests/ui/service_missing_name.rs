#[derive(microkernel::Service)]
#[service(deps = ["logger"])]
struct Echo;

fn main() {}
