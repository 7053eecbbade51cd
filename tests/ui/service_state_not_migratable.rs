#[derive(Default)]
struct Count {
    n: u32,
}

#[derive(microkernel::Service)]
#[service(name = "echo")]
struct Echo {
    #[state]
    count: Count,
}

fn main() {}
