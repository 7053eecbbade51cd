#[derive(microkernel::Service)]
#[service(name = "api", deps = ["db", "cache", "db"])]
struct Api;

fn main() {}
