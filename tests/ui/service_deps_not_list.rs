#[derive(microkernel::Service)]
#[service(name = "echo", deps = "logger")]
struct Echo;

fn main() {}
