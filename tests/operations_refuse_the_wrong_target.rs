//! An operation given the wrong target says so with a typed error that names it: a
//! synchronous replacement of an async service, a handle of the wrong kind, an empty name, a
//! supervision asked through a handle whose service was unregistered since; and a stop hook
//! run under a stop timeout still belongs to the chain of calls that asked for the stop.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Journal, Probe};
use microkernel::supervise::RestartPolicy;
use microkernel::{BoxError, CallError, Context, Event, Handler, Kernel, LifecycleError, Reply};

#[derive(microkernel::Service, Default)]
#[service(name = "plain")]
struct Plain;

impl Handler for Plain {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("plain", "")
    }
}

#[test]
fn an_empty_service_name_is_refused_at_registration() {
    let kernel = Kernel::new();
    let error = kernel.register(Probe::new("", &[], &Journal::default())).unwrap_err();
    assert!(
        matches!(
            error,
            LifecycleError::InvalidName {
                reason: microkernel::NameRefusal::Empty,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("empty"), "{error}");
}

#[test]
fn supervising_through_a_handle_whose_service_was_unregistered_is_refused() {
    let kernel = Kernel::new();
    let stale = kernel.register(Plain).unwrap();
    kernel.unregister("plain").unwrap();
    kernel.register(Plain).unwrap();
    let error = kernel.supervise(&stale, RestartPolicy::Never, || Plain).unwrap_err();
    assert!(matches!(error, LifecycleError::NotFound { .. }), "{error}");
    let fresh = kernel.handle("plain").unwrap();
    kernel.supervise(&fresh, RestartPolicy::Never, || Plain).unwrap();
}

/// `a` asks for `b` to stop; `b`'s stop hook calls `a`: a real cycle, refused at once.
#[derive(microkernel::Service, Default)]
#[service(name = "a")]
struct A;

impl Handler for A {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, ctx: &Context<'_>) -> Reply {
        match ctx.kernel().expect("kernel").stop("b") {
            Ok(()) => Reply::ok("stopped b", ""),
            Err(error) => Reply::new(500, "stop failed", error.to_string()),
        }
    }
}

#[derive(microkernel::Service)]
#[service(name = "b")]
struct B {
    refused: Arc<AtomicBool>,
}

impl Handler for B {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("b", "")
    }
    fn stop(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
        let called = ctx.call("a", Event::new("a", "b", "hi", ""));
        self.refused
            .store(matches!(called, Err(CallError::WouldDeadlock { .. })), Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_stop_hook_under_a_stop_timeout_calling_back_its_caller_is_refused_at_once() {
    let kernel = Kernel::builder().stop_timeout(Duration::from_secs(20)).build().unwrap();
    let refused = Arc::new(AtomicBool::new(false));
    kernel.register(A).unwrap();
    kernel
        .register(B {
            refused: Arc::clone(&refused),
        })
        .unwrap();
    kernel.start_all().unwrap();
    let started = Instant::now();
    let reply = kernel.call("a", Event::new("a", "t", "go", "")).unwrap();
    assert_eq!(reply.code, 0, "{reply}");
    assert!(
        refused.load(Ordering::SeqCst),
        "b's call back into a was refused as a cycle"
    );
    // Not a timing assertion of speed: the hang it guards against lasts the whole 20 s timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the cycle was not left to the timeout"
    );
    assert_eq!(kernel.status("b"), Some(microkernel::Status::Stopped));
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use microkernel::asynchronous::{AsyncContext, AsyncHandler};
    use microkernel::{ReplaceCause, Step};

    use super::*;

    #[derive(microkernel::Service, Default)]
    #[service(name = "plain")]
    struct AsyncPlain;

    impl AsyncHandler for AsyncPlain {
        type Request = Event;
        type Response = Reply;
        async fn handle(&mut self, _: Event, _: &AsyncContext) -> Reply {
            Reply::ok("async plain", "")
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_synchronous_spellings_refuse_an_async_service_as_the_wrong_kind() {
        let kernel = Kernel::new();
        kernel.register_async(AsyncPlain).await.unwrap();
        kernel.start_all_async().await.unwrap();
        let replaced = kernel.blocking(|k| k.replace(Plain)).await.unwrap_err();
        assert_eq!(replaced.step(), Step::Enter);
        assert!(
            matches!(replaced.cause(), ReplaceCause::WrongKind { service_is: "an async" }),
            "{replaced}"
        );
        let rolled = kernel.blocking(|k| k.rollback(Plain)).await.unwrap_err();
        assert!(matches!(rolled.cause(), ReplaceCause::WrongKind { .. }), "{rolled}");
        let handle = kernel.handle("plain").unwrap_err();
        assert!(
            matches!(
                handle,
                CallError::WrongKind {
                    service_is: "an async",
                    ..
                }
            ),
            "{handle}"
        );
        // And the other way round.
        let sync_kernel = Kernel::new();
        sync_kernel.register(Plain).unwrap();
        let other = sync_kernel.replace_async(AsyncPlain).await.unwrap_err();
        assert!(
            matches!(
                other.cause(),
                ReplaceCause::WrongKind {
                    service_is: "a synchronous"
                }
            ),
            "{other}"
        );
        kernel.shutdown().await.unwrap();
    }
}
