#[derive(microkernel::Service)]
#[service(name = "echo")]
enum Echo {
    A,
}

fn main() {}
