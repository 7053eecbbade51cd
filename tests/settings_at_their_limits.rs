//! Hostile or careless configuration and input: typed errors, never a panic or a hang.

use std::time::Duration;

use microkernel::{Context, Event, Handler, Kernel, Reply};

#[derive(microkernel::Service)]
#[service(name = "echo")]
struct Echo;

impl Handler for Echo {
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
    let kernel = Kernel::builder().stop_timeout(Duration::MAX).build().unwrap();
    kernel.register(Echo).unwrap();
    kernel.start_all().unwrap();
    let reply = kernel.push(Event::new("echo", "t", "say", "hi"), Duration::MAX);
    assert_eq!(reply.data, "hi");
    kernel.stop_all().unwrap();
}

#[test]
fn builder_settings_that_mean_nothing_are_refused_with_a_typed_error() {
    use microkernel::BuildError;
    assert_eq!(
        Kernel::builder().max_push_workers(0).build().unwrap_err(),
        BuildError::NoPushWorkers
    );
    assert_eq!(
        Kernel::builder()
            .checkpoint_every(Duration::from_secs(1))
            .build()
            .unwrap_err(),
        BuildError::CheckpointsWithoutStore
    );
    let err = Kernel::builder().stop_timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(
        err,
        BuildError::ZeroDuration {
            setting: "stop_timeout"
        }
    );
    assert!(err.to_string().contains("stop_timeout"), "{err}");
}

/// A supervisor's backoff of `Duration::MAX` once overflowed an `Instant`.
#[test]
fn the_longest_restart_backoff_does_not_overflow() {
    use microkernel::RestartPolicy;
    #[derive(microkernel::Service, Default)]
    #[service(name = "fragile")]
    struct Fragile;
    impl Handler for Fragile {
        type Request = Event;
        type Response = Reply;
        fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
            panic!("fragile exploded")
        }
    }
    let kernel = Kernel::new();
    let handle = kernel.register(Fragile).unwrap();
    kernel.start_all().unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: 3,
        within: Duration::MAX,
        backoff: Duration::MAX,
    };
    kernel.supervise(&handle, policy, || Fragile).unwrap();
    assert!(kernel.call("fragile", Event::new("fragile", "t", "x", "")).is_err());
    // The supervisor waits "for ever"; stop_all ends it at once.
    kernel.stop_all().unwrap();
}
