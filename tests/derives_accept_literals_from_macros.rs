//! The derives read literals that a `macro_rules!` macro passes through as `$x:literal` (which
//! reach the derive inside an invisible group): services and states can be stamped out by a
//! user's own macro.
use microkernel::{Context, Event, Handler, Kernel, Reply};

macro_rules! counter_service {
    ($service:ident, $state:ident, $name:literal, $version:literal, [$($dep:literal),*]) => {
        #[derive(serde::Serialize, serde::Deserialize, microkernel::Migratable, Default)]
        #[migratable(version = $version)]
        struct $state {
            n: u64,
        }

        #[derive(microkernel::Service, Default)]
        #[service(name = $name, deps = [$($dep),*])]
        struct $service {
            #[state]
            count: $state,
        }

        impl Handler for $service {
            type Request = Event;
            type Response = Reply;
            fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
                self.count.n += 1;
                Reply::ok($name, self.count.n.to_string())
            }
        }
    };
}

counter_service!(Base, BaseCount, "base", 1, []);
counter_service!(Stamped, StampedCount, "stamped", 3, ["base"]);

#[test]
fn a_service_stamped_out_by_a_macro_has_the_name_version_and_dependencies_it_was_given() {
    use microkernel::{Migratable, Service};
    assert_eq!(Stamped::default().name(), "stamped");
    assert_eq!(Stamped::default().dependencies(), ["base"]);
    assert_eq!(<StampedCount as Migratable>::VERSION, 3);
    assert_eq!(<BaseCount as Migratable>::VERSION, 1);

    let kernel = Kernel::new();
    kernel.register(Stamped::default()).unwrap();
    let refused = kernel.start_all().unwrap_err();
    assert!(refused.to_string().contains("base"), "{refused}");
    kernel.register(Base::default()).unwrap();
    kernel.start_all().unwrap();
    let reply = kernel.call("stamped", Event::new("stamped", "t", "count", "")).unwrap();
    assert_eq!((&*reply.message, &*reply.data), ("stamped", "1"));
}
