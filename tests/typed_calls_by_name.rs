//! A service with its own request and response types is reachable by name: the types a call
//! asks for are checked against the ones the service was registered with, and a mismatch is a
//! typed error (`CallError::WrongTypes`), never a string reply.
use microkernel::{CallError, Context, Event, Handler, Kernel, Reply};

#[derive(microkernel::Service)]
#[service(name = "adder")]
struct Adder;

impl Handler for Adder {
    type Request = (u32, u32);
    type Response = u32;
    fn handle(&mut self, (a, b): (u32, u32), _: &Context<'_>) -> u32 {
        a + b
    }
}

#[derive(microkernel::Service)]
#[service(name = "echo")]
struct Echo;

impl Handler for Echo {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        Reply::ok("echo", event.content.to_string())
    }
}

/// An `Event`/`Reply` service, registered with `register_typed` all the same.
#[derive(microkernel::Service)]
#[service(name = "typed-echo")]
struct TypedEcho;

impl Handler for TypedEcho {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        Reply::ok("typed-echo", event.content.to_string())
    }
}

fn kernel() -> Kernel {
    let kernel = Kernel::new();
    kernel.register_typed(Adder).unwrap();
    kernel.register(Echo).unwrap();
    kernel.start_all().unwrap();
    kernel
}

#[test]
fn a_typed_service_is_called_by_name_with_its_own_types() {
    let kernel = kernel();
    assert_eq!(kernel.call_typed::<(u32, u32), u32>("adder", (2, 3)).unwrap(), 5);
    let handle = kernel.handle_typed::<(u32, u32), u32>("adder").unwrap();
    assert_eq!(handle.call((40, 2)).unwrap(), 42);
}

#[test]
fn other_types_than_the_registered_ones_are_a_typed_error_naming_both() {
    let kernel = kernel();
    let error = kernel.call_typed::<String, u32>("adder", "2 + 3".into()).unwrap_err();
    match &error {
        CallError::WrongTypes {
            service,
            registered,
            requested,
        } => {
            assert_eq!(service, "adder");
            assert_eq!(registered, "(u32, u32) -> u32");
            assert_eq!(requested, "alloc::string::String -> u32");
        }
        other => panic!("expected WrongTypes, got {other:?}"),
    }
    assert_eq!(error.to_reply().code, microkernel::code::UNSUPPORTED);
    assert!(matches!(
        kernel.handle_typed::<(u32, u32), u64>("adder"),
        Err(CallError::WrongTypes { .. })
    ));
}

#[test]
fn the_event_reply_pair_is_one_typed_protocol_among_others() {
    let kernel = kernel();
    let reply = kernel
        .call_typed::<Event, Reply>("echo", Event::new("echo", "t", "say", "hi"))
        .unwrap();
    assert_eq!(&*reply.data, "hi");
    assert!(matches!(
        kernel.call_typed::<(u32, u32), u32>("echo", (1, 2)),
        Err(CallError::WrongTypes { .. })
    ));
    // A by-name `Event` call to a typed service is refused as the wrong types, naming both
    // protocols (415 as a reply), not misrouted.
    let refused = kernel.call("adder", Event::new("adder", "t", "say", "hi")).unwrap_err();
    assert_eq!(refused, wrong_types_for_events());
    let reply = kernel.send(Event::new("adder", "t", "say", "hi"));
    assert_eq!(reply.code, microkernel::code::UNSUPPORTED);
    let pushed = kernel.push(Event::new("adder", "t", "say", "hi"), std::time::Duration::from_secs(5));
    assert_eq!(pushed.code, microkernel::code::UNSUPPORTED);
}

/// What an `Event` call to `adder` fails with, in every spelling.
fn wrong_types_for_events() -> CallError {
    CallError::WrongTypes {
        service: "adder".into(),
        registered: format!(
            "{} -> {}",
            std::any::type_name::<(u32, u32)>(),
            std::any::type_name::<u32>()
        ),
        requested: format!(
            "{} -> {}",
            std::any::type_name::<Event>(),
            std::any::type_name::<Reply>()
        ),
    }
}

#[test]
fn an_event_service_registered_as_typed_is_reached_as_one_registered_plainly() {
    let kernel = kernel();
    kernel.register_typed(TypedEcho).unwrap();
    kernel.start("typed-echo").unwrap();
    let hi = || Event::new("typed-echo", "t", "say", "hi");
    assert_eq!(&*kernel.call("typed-echo", hi()).unwrap().data, "hi");
    assert_eq!(&*kernel.send(hi()).data, "hi");
    assert_eq!(&*kernel.push(hi(), std::time::Duration::from_secs(5)).data, "hi");
    assert_eq!(&*kernel.handle("typed-echo").unwrap().call(hi()).unwrap().data, "hi");
    let typed = kernel.call_typed::<Event, Reply>("typed-echo", hi()).unwrap();
    assert_eq!(&*typed.data, "hi");
}

#[test]
fn an_unknown_name_is_not_found() {
    let kernel = kernel();
    assert!(matches!(
        kernel.call_typed::<(u32, u32), u32>("nobody", (1, 2)),
        Err(CallError::NotFound { .. })
    ));
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use microkernel::asynchronous::{AsyncContext, AsyncHandler};

    use super::*;

    #[derive(microkernel::Service)]
    #[service(name = "doubler")]
    struct Doubler;

    impl AsyncHandler for Doubler {
        type Request = u64;
        type Response = u64;
        async fn handle(&mut self, n: u64, _: &AsyncContext) -> u64 {
            tokio::task::yield_now().await;
            2 * n
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_typed_async_service_is_called_by_name_from_async_and_sync_code() {
        let kernel = kernel();
        kernel.register_async_typed(Doubler).await.unwrap();
        kernel.start_all_async().await.unwrap();
        assert_eq!(kernel.call_typed_async::<u64, u64>("doubler", 21).await.unwrap(), 42);
        // The synchronous typed service from async code, by name.
        assert_eq!(
            kernel
                .call_typed_async::<(u32, u32), u32>("adder", (1, 1))
                .await
                .unwrap(),
            2
        );
        let from_sync = {
            let kernel = kernel.clone();
            tokio::task::spawn_blocking(move || kernel.call_typed::<u64, u64>("doubler", 4)).await
        };
        assert_eq!(from_sync.unwrap().unwrap(), 8);
        assert!(matches!(
            kernel.call_typed_async::<u32, u64>("doubler", 1).await,
            Err(CallError::WrongTypes { .. })
        ));
        let handle = kernel.async_handle_typed::<u64, u64>("doubler").unwrap();
        assert_eq!(handle.call(5).await.unwrap(), 10);
        kernel.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_service_registered_as_typed_is_reached_from_async_code_too() {
        let kernel = kernel();
        kernel.register_typed(TypedEcho).unwrap();
        kernel.start_async("typed-echo").await.unwrap();
        let hi = || Event::new("typed-echo", "t", "say", "hi");
        assert_eq!(&*kernel.call_async("typed-echo", hi()).await.unwrap().data, "hi");
        assert_eq!(&*kernel.send_async(hi()).await.data, "hi");
        let handle = kernel.async_handle("typed-echo").unwrap();
        assert_eq!(&*handle.call(hi()).await.unwrap().data, "hi");
    }

    /// `handle` and `async_handle` agree: an `Event`/`Reply` handle to a service with its own
    /// protocol is refused as `WrongTypes`, naming both protocols, whichever kind it is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_handle_to_a_typed_service_is_wrong_types_in_both_spellings() {
        let kernel = kernel();
        kernel.register_async_typed(Doubler).await.unwrap();
        // By name, from async code: the same error as the synchronous call's.
        let refused = kernel
            .call_async("adder", Event::new("adder", "t", "say", "hi"))
            .await
            .unwrap_err();
        assert_eq!(refused, wrong_types_for_events());
        let reply = kernel.send_async(Event::new("adder", "t", "say", "hi")).await;
        assert_eq!(reply.code, microkernel::code::UNSUPPORTED);
        for name in ["adder", "doubler"] {
            let sync = kernel.handle(name).map(drop);
            let asynchronous = kernel.async_handle(name).map(drop);
            for refused in [sync, asynchronous] {
                match refused {
                    Err(CallError::WrongTypes {
                        service, registered, ..
                    }) => {
                        assert_eq!(service, name);
                        assert!(!registered.contains("Event"), "{registered}");
                    }
                    other => panic!("{name}: expected WrongTypes, got {other:?}"),
                }
            }
        }
    }
}
