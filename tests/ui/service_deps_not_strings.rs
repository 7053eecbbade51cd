#[derive(microkernel::Service)]
#[service(name = "echo", deps = ["logger", db])]
struct Echo;

fn main() {}
