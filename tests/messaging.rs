//! call, send, push, handles, loops and concurrency.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Journal, Probe};
use microkernel::{BoxError, CallError, Context, Event, Handler, KERNEL, Kernel, Reply, Status, code};

fn running(probes: Vec<Probe>) -> Kernel {
    let kernel = Kernel::new();
    for probe in probes {
        kernel.register(probe).unwrap();
    }
    kernel.start_all().unwrap();
    kernel
}

fn ev(to: &'static str, kind: &'static str, content: impl Into<microkernel::Text>) -> Event {
    Event::new(to, "test", kind, content)
}

#[test]
fn reply_display_matches_the_go_design() {
    let reply = Reply::new(0, "echo service handled", "from microKernel: Hello, Log!");
    assert_eq!(
        reply.to_string(),
        "{0 echo service handled from microKernel: Hello, Log!}"
    );
}

#[test]
fn call_reaches_the_service_and_send_turns_errors_into_404() {
    let j = Journal::default();
    let kernel = running(vec![Probe::new("a", &[], &j)]);
    let reply = kernel.call("a", ev("a", "hi", "there")).unwrap();
    assert_eq!(reply.to_string(), "{0 a handled there}");

    let missing = kernel.send(ev("ghost", "hi", ""));
    assert_eq!(missing.code, code::NOT_FOUND);
    assert_eq!(
        kernel.call("ghost", ev("ghost", "hi", "")).unwrap_err(),
        CallError::NotFound {
            service: "ghost".into()
        }
    );

    kernel.stop("a").unwrap();
    let stopped = kernel.send(ev("a", "hi", ""));
    assert_eq!(stopped.code, code::NOT_FOUND);
    assert_eq!(stopped.data, "service `a` is not running (it is stopped)");
}

#[test]
fn a_handle_skips_the_lookup_and_follows_the_service_through_restarts() {
    let j = Journal::default();
    let kernel = running(vec![Probe::new("a", &[], &j)]);
    let handle = kernel.handle("a").unwrap();
    assert_eq!(handle.name(), "a");
    assert!(handle.call(ev("a", "hi", "")).unwrap().is_ok());
    kernel.stop("a").unwrap();
    assert_eq!(handle.status(), Status::Stopped);
    assert!(matches!(
        handle.call(ev("a", "hi", "")),
        Err(CallError::NotRunning { .. })
    ));
    kernel.start("a").unwrap();
    assert_eq!(handle.send(ev("a", "count", "")).data, "2");
}

#[test]
fn push_to_the_kernel_is_answered_by_the_kernel() {
    let kernel = Kernel::new();
    let reply = kernel.push(Event::new(KERNEL, "test", "log", "hello"), Duration::from_secs(1));
    assert_eq!(reply.to_string(), "{0 Handled by kernel ok}");
}

#[test]
fn push_to_a_service_is_routed_and_unknown_targets_get_404() {
    let j = Journal::default();
    let kernel = running(vec![Probe::new("a", &[], &j)]);
    let reply = kernel.push(ev("a", "hi", "pushed"), Duration::from_secs(5));
    assert_eq!(reply.to_string(), "{0 a handled pushed}");
    let reply = kernel.push(ev("ghost", "hi", ""), Duration::from_secs(5));
    assert_eq!(reply.code, code::NOT_FOUND);
    kernel.stop("a").unwrap();
    assert_eq!(
        kernel.push(ev("a", "hi", ""), Duration::from_secs(5)).code,
        code::NOT_FOUND
    );
}

#[test]
fn push_timeout_bounds_the_wait_even_when_the_handler_blocks() {
    let j = Journal::default();
    let kernel = running(vec![Probe::new("slow", &[], &j), Probe::new("fast", &[], &j)]);
    let started = Instant::now();
    let reply = kernel.push(ev("slow", "sleep", "1500"), Duration::from_millis(100));
    let waited = started.elapsed();
    assert_eq!(reply.code, code::TIMEOUT);
    assert!(
        waited < Duration::from_millis(1000),
        "waited {waited:?} for a 100 ms timeout"
    );
    // Another service is not held up by the blocked handler.
    let reply = kernel.push(ev("fast", "hi", ""), Duration::from_secs(2));
    assert!(reply.is_ok(), "{reply}");
}

#[test]
fn calls_from_eight_threads_are_each_answered_and_counted_exactly() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 2_000;
    let j = Journal::default();
    let kernel = running(vec![Probe::new("a", &[], &j)]);
    let answered = Arc::new(AtomicU64::new(0));
    thread::scope(|s| {
        for t in 0..THREADS {
            let kernel = kernel.clone();
            let answered = Arc::clone(&answered);
            s.spawn(move || {
                let handle = kernel.handle("a").unwrap();
                for i in 0..CALLS {
                    // Half through the handle, half through the name.
                    let reply = if (t + i) % 2 == 0 {
                        handle.call(ev("a", "hi", "")).unwrap()
                    } else {
                        kernel.call("a", ev("a", "hi", "")).unwrap()
                    };
                    assert!(reply.is_ok());
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(answered.load(Ordering::Relaxed), THREADS * CALLS);
    let count = kernel.call("a", ev("a", "count", "")).unwrap();
    assert_eq!(count.data, (THREADS * CALLS + 1).to_string());
}

#[test]
fn a_service_calling_itself_gets_an_error_not_a_deadlock() {
    let j = Journal::default();
    let kernel = running(vec![Probe::new("a", &[], &j)]);
    let reply = kernel.call("a", ev("a", "forward", "a")).unwrap();
    assert_eq!(reply.code, code::LOOP);
    assert_eq!(
        reply.data,
        "call to `a` would deadlock: `a` is busy with a call that waits, directly or through other services, on this chain of calls"
    );
    // The service is fine afterwards.
    assert!(kernel.call("a", ev("a", "hi", "")).unwrap().is_ok());
}

#[test]
fn a_to_b_to_a_on_one_thread_gets_an_error_not_a_deadlock() {
    #[derive(microkernel::Service)]
    #[service(name = "b")]
    struct B;
    impl Handler for B {
        type Request = Event;
        type Response = Reply;
        fn handle(&mut self, _: Event, ctx: &Context<'_>) -> Reply {
            ctx.call("a", Event::new("a", "b", "hi", ""))
                .unwrap_or_else(|e| e.to_reply())
        }
    }
    let j = Journal::default();
    let kernel = Kernel::new();
    kernel.register(Probe::new("a", &[], &j)).unwrap();
    kernel.register(B).unwrap();
    kernel.start_all().unwrap();
    // a forwards to b, b calls back into a.
    let reply = kernel.call("a", ev("a", "forward", "b")).unwrap();
    assert_eq!(reply.code, code::LOOP, "{reply}");
}

#[test]
fn a_panicking_handler_fails_its_service_only() {
    let j = Journal::default();
    let kernel = running(vec![Probe::new("a", &[], &j), Probe::new("b", &[], &j)]);
    let err = kernel.call("a", ev("a", "panic", "")).unwrap_err();
    assert_eq!(
        err,
        CallError::Panicked {
            service: "a".into(),
            message: "handler exploded".into()
        }
    );
    assert_eq!(kernel.status("a"), Some(Status::Failed));
    assert!(kernel.call("b", ev("b", "hi", "")).unwrap().is_ok());
    // It can be started again.
    kernel.start("a").unwrap();
    assert!(kernel.call("a", ev("a", "hi", "")).unwrap().is_ok());
}

#[test]
fn services_call_push_and_log_from_start_handle_and_stop() {
    #[derive(microkernel::Service)]
    #[service(name = "chatty", deps = ["a"])]
    struct Chatty(Journal);
    impl Handler for Chatty {
        type Request = Event;
        type Response = Reply;
        fn start(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
            ctx.log(microkernel::Level::Info, "starting");
            let r = ctx.call("a", Event::new("a", "chatty", "hi", "from start"))?;
            self.0.note(format!("start got {}", r.data));
            Ok(())
        }
        fn stop(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
            let r = ctx.push(Event::new("a", "chatty", "hi", "from stop"), Duration::from_secs(5));
            self.0.note(format!("stop got {}", r.data));
            Ok(())
        }
        fn handle(&mut self, _: Event, ctx: &Context<'_>) -> Reply {
            ctx.push(Event::new(KERNEL, "chatty", "hi", ""), Duration::from_secs(5))
        }
    }
    let j = Journal::default();
    let kernel = Kernel::new();
    kernel.register(Probe::new("a", &[], &j)).unwrap();
    kernel.register(Chatty(j.clone())).unwrap();
    kernel.start_all().unwrap();
    assert_eq!(
        kernel.call("chatty", ev("chatty", "x", "")).unwrap().to_string(),
        "{0 Handled by kernel ok}"
    );
    kernel.stop_all().unwrap();
    assert_eq!(
        j.lines(),
        ["start a", "start got from start", "stop got from stop", "stop a"]
    );
}

#[test]
fn services_with_their_own_types_are_reached_through_their_handle() {
    #[derive(microkernel::Service, Default)]
    #[service(name = "adder")]
    struct Adder {
        total: i64,
    }
    impl Handler for Adder {
        type Request = i64;
        type Response = i64;
        fn handle(&mut self, n: i64, _: &Context<'_>) -> i64 {
            self.total += n;
            self.total
        }
    }
    let kernel = Kernel::new();
    let adder = kernel.register_typed(Adder::default()).unwrap();
    kernel.start_all().unwrap();
    assert_eq!(adder.call(5).unwrap(), 5);
    assert_eq!(adder.call(-2).unwrap(), 3);
    let by_name = kernel.send(ev("adder", "add", "1"));
    assert_eq!(by_name.code, code::UNSUPPORTED);
    // An `Event`/`Reply` handle to it is refused, naming both protocols.
    assert!(matches!(kernel.handle("adder"), Err(CallError::WrongTypes { .. })));
}

#[test]
fn the_kernel_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Kernel>();
    assert_send_sync::<microkernel::Handle>();
}

/// Calls by name find their slot in a per-thread cache: it must never route to the wrong
/// kernel, miss a service registered later, or keep a dropped kernel's services alive.
#[test]
fn calls_by_name_route_per_kernel_and_keep_nothing_alive() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Named(&'static str, Arc<AtomicUsize>);
    impl Drop for Named {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl microkernel::Service for Named {
        type State = microkernel::Stateless;
        fn name(&self) -> &str {
            "svc"
        }
        fn dependencies(&self) -> Vec<String> {
            Vec::new()
        }
        fn export_state(&self) -> Result<&microkernel::Stateless, microkernel::BoxError> {
            Ok(&microkernel::Stateless)
        }
        fn import_state(&mut self, _: microkernel::Stateless) -> Result<(), microkernel::BoxError> {
            Ok(())
        }
    }
    impl microkernel::Handler for Named {
        type Request = Event;
        type Response = microkernel::Reply;
        fn handle(&mut self, _: Event, _: &microkernel::Context<'_>) -> microkernel::Reply {
            microkernel::Reply::ok(self.0, "")
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let call = |kernel: &Kernel| {
        kernel
            .call("svc", Event::new("svc", "t", "k", ""))
            .map(|r| r.message.to_string())
    };
    let first = Kernel::new();
    assert!(call(&first).is_err(), "not registered yet");
    first.register(Named("first", Arc::clone(&dropped))).unwrap();
    first.start_all().unwrap();
    assert_eq!(call(&first).unwrap(), "first", "registered after a miss");
    let second = Kernel::new();
    second.register(Named("second", Arc::clone(&dropped))).unwrap();
    second.start_all().unwrap();
    for _ in 0..3 {
        assert_eq!(call(&first).unwrap(), "first");
        assert_eq!(call(&second).unwrap(), "second");
    }
    drop(first);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the dropped kernel's service is gone"
    );
    assert_eq!(call(&second).unwrap(), "second");
}

#[test]
fn a_name_unregistered_and_registered_again_routes_to_the_new_service() {
    use microkernel::LifecycleError;

    #[derive(microkernel::Service)]
    #[service(name = "svc")]
    struct Version(&'static str);
    impl Handler for Version {
        type Request = Event;
        type Response = Reply;
        fn handle(&mut self, _: Event, _: &Context) -> Reply {
            Reply::ok(self.0, "")
        }
    }
    let kernel = Kernel::new();
    let old = kernel.register(Version("old")).unwrap();
    kernel.start_all().unwrap();
    // Called by name first: this thread's route cache now holds the old slot.
    assert_eq!(kernel.call("svc", ev("svc", "k", "")).unwrap().message, "old");
    let refused = kernel.unregister("svc").unwrap_err();
    assert!(matches!(refused, LifecycleError::NotStopped { .. }), "{refused}");
    assert!(refused.to_string().contains("stop it first"), "{refused}");
    kernel.stop("svc").unwrap();
    kernel.unregister("svc").unwrap();
    assert_eq!(kernel.status("svc"), None);
    assert!(matches!(
        kernel.call("svc", ev("svc", "k", "")),
        Err(CallError::NotFound { .. })
    ));
    kernel.register(Version("new")).unwrap();
    kernel.start("svc").unwrap();
    // Not the cached old slot (still alive: `old` holds it), but the new one.
    assert_eq!(kernel.call("svc", ev("svc", "k", "")).unwrap().message, "new");
    assert!(matches!(
        old.call(ev("svc", "k", "")),
        Err(CallError::NotRunning { .. })
    ));
    assert!(matches!(
        kernel.unregister("ghost"),
        Err(LifecycleError::NotFound { .. })
    ));
}
