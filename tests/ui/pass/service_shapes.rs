//! Services: stateless, with a named state field, with a tuple state field, generic.
use microkernel::{Context, Event, Migratable, Reply, Handler, Service};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Migratable, Default)]
#[migratable(version = 1)]
struct Count {
    n: u32,
}

#[derive(microkernel::Service)]
#[service(name = "stateless", deps = ["a", "b"])]
struct Stateless;

#[derive(microkernel::Service, Default)]
#[service(name = "named")]
struct Named {
    #[state]
    count: Count,
    other: String,
}

#[derive(microkernel::Service, Default)]
#[service(name = "tuple")]
struct Tuple(String, #[state] Count);

#[derive(microkernel::Service, Default)]
#[service(name = "generic")]
struct Generic<T: Send + 'static> {
    #[state]
    count: Count,
    value: T,
}

macro_rules! behave {
    ($($t:ty),*) => {$(
        impl Handler for $t {
            type Request = Event;
            type Response = Reply;
            fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply { Reply::default() }
        }
    )*};
}
behave!(Stateless, Named, Tuple, Generic<u8>);

fn main() {
    assert_eq!(Stateless.name(), "stateless");
    assert_eq!(Stateless.dependencies(), ["a", "b"]);
    let named = Named::default();
    assert_eq!(named.export_state().unwrap().n, 0);
    let mut tuple = Tuple::default();
    tuple.import_state(Count { n: 7 }).unwrap();
    assert_eq!(tuple.1.n, 7);
    let generic = Generic::<u8>::default();
    assert_eq!(generic.name(), "generic");
    let _ = (named.other, generic.value, tuple.0);
}
