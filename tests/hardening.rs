//! Hostile or careless configuration and input: typed errors, never a panic or a hang.

use std::time::Duration;

use microkernel::{Context, Event, Kernel, Reply, Service};

#[derive(microkernel::Service)]
#[service(name = "echo")]
struct Echo;

impl Service for Echo {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        Reply::ok("echo", event.content)
    }
}

/// `stop_timeout(Duration::MAX)` once overflowed an `Instant` in `stop_all` as soon as push
/// workers existed.
#[test]
fn the_longest_stop_timeout_does_not_overflow() {
    let kernel = Kernel::builder().stop_timeout(Duration::MAX).build();
    kernel.register(Echo).unwrap();
    kernel.start_all().unwrap();
    let reply = kernel.push(Event::new("echo", "t", "say", "hi")).wait(Duration::MAX);
    assert_eq!(reply.data, "hi");
    kernel.stop_all().unwrap();
}
