//! A handler that changes the lifecycle — starting another service while its own is being
//! replaced, or stopping its own service — is refused or goes through, never hangs. Hangs are
//! turned into failures by watchdogs, never by timed assertions.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::flex::{B, Flex, FlexV1, FlexV2, Knobs, ev, served, within};
use microkernel::{Kernel, Step};

#[test]
fn a_handler_changing_the_lifecycle_while_its_service_is_replaced_never_hangs() {
    for _ in 0..20 {
        let kernel = Kernel::new();
        let (inside_tx, inside) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let knobs = Knobs {
            inside: Some(inside_tx),
            go_gate: Some(Arc::new(Mutex::new(go_rx))),
            ..Knobs::default()
        };
        kernel.register(Flex::<FlexV1>::with("v1", knobs)).unwrap();
        kernel.register(B).unwrap();
        kernel.start("flex").unwrap();
        let caller = {
            let kernel = kernel.clone();
            thread::spawn(move || kernel.call("flex", ev("go")).unwrap())
        };
        inside.recv().unwrap();
        let replacer = {
            let kernel = kernel.clone();
            thread::spawn(move || kernel.replace(Flex::<FlexV2>::new("v2")))
        };
        // The replacement holds the lifecycle lock and waits for flex's slot; the handler,
        // inside flex, now asks for the lifecycle lock.
        thread::sleep(Duration::from_millis(2));
        go.send(()).unwrap();
        let reply = within("the handler", move || caller.join().unwrap());
        let replaced = within("the replacement", move || replacer.join().unwrap());
        match (&replaced, reply.code) {
            // The handler was refused, the replacement went through.
            (Ok(_), 508) => {
                assert!(reply.data.contains("would deadlock"), "{reply}");
                assert_eq!(served(&kernel), "{0 v2 0}");
            }
            // The replacement was refused at Enter, the handler started b.
            (Err(error), 0) => assert_eq!(error.step(), Step::Enter, "{error}"),
            // Or they did not overlap: both succeed.
            (Ok(_), 0) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
}

#[test]
fn a_handler_stopping_its_own_service_with_a_stop_timeout_is_refused_not_hung() {
    let kernel = Kernel::builder().stop_timeout(Duration::MAX).build().unwrap();
    kernel.register(Flex::<FlexV1>::new("v1")).unwrap();
    kernel.start_all().unwrap();
    let reply = within("a handler stopping its own service", {
        let kernel = kernel.clone();
        move || kernel.call("flex", ev("stop-self")).unwrap()
    });
    assert_eq!(reply.code, 508, "{reply}");
    assert!(reply.data.contains("already busy"), "{reply}");
    assert_eq!(served(&kernel), "{0 v1 0}");
}
