//! Settings at their limits: a builder setting that means nothing (no push workers, checkpoints
//! without a store, a zero duration) is a typed `BuildError`; the longest stop timeout and the
//! longest restart backoff overflow nothing, and `stop_all` still ends the wait.

mod common;

use std::time::Duration;

use common::Echo;
use common::counter::{Counter, CounterV1, explode};
use microkernel::{Event, Kernel};

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
    let kernel = Kernel::new();
    let handle = kernel.register(Counter::<CounterV1>::new()).unwrap();
    kernel.start_all().unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: 3,
        within: Duration::MAX,
        backoff: Duration::MAX,
    };
    kernel.supervise(&handle, policy, Counter::<CounterV1>::new).unwrap();
    assert!(kernel.call("counter", explode()).is_err());
    // The supervisor waits "for ever"; stop_all ends it at once.
    kernel.stop_all().unwrap();
}
