#[derive(microkernel::Service)]
#[service(name = "api", deps = ["api"])]
struct Api;

fn main() {}
