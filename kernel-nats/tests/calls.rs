//! Calls between two kernels through a real `nats-server`: a service served on one node is
//! called from another; a retried call id is answered once; a node not serving yet is waited
//! for ("no responders" retried until the deadline); a message of another shape is refused.

mod server;

use std::time::Duration;

use bytes::Bytes;
use kernel_core::{Context, Event, Handler, Kernel, Reply};
use kernel_nats::calls::{self, RemoteCallError};

#[derive(microkernel::Service, Default)]
#[service(name = "counter")]
struct Counter {
    n: u64,
}

impl Handler for Counter {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        self.n += 1;
        Reply::ok("counted", self.n.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_one_node_answers_calls_from_another() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let serving_node = Kernel::new();
    serving_node.register(Counter::default()).unwrap();
    serving_node.start_all_async().await.unwrap();
    let client_a = async_nats::connect(server.url()).await.unwrap();
    let client_b = async_nats::connect(server.url()).await.unwrap();

    // B calls before A serves: "no responders" is retried until A is there.
    let early = tokio::spawn({
        let client_b = client_b.clone();
        async move {
            calls::call(
                &client_b,
                Event::new("counter", "b", "count", ""),
                Duration::from_secs(5),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _serving = calls::serve(&serving_node, &client_a, &["counter"]).await.unwrap();
    assert_eq!(early.await.unwrap().unwrap().data, "1");

    for expected in 2..=4 {
        let reply = calls::call(
            &client_b,
            Event::new("counter", "b", "count", ""),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        assert_eq!(reply.data, expected.to_string());
    }

    // Nobody serves "nobody": the deadline ends the retries with a typed error.
    let err = calls::call(
        &client_b,
        Event::new("nobody", "b", "x", ""),
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RemoteCallError::NoResponders { .. }), "{err}");

    // A retried call (same call id) is answered from the record, not handled again.
    let event = Bytes::from(postcard::to_allocvec(&Event::new("counter", "b", "count", "")).unwrap());
    let send = |id: &'static str| {
        let (client, event) = (client_b.clone(), event.clone());
        async move {
            let mut headers = async_nats::HeaderMap::new();
            let shape = format!(
                "{:016x}",
                kernel_core::state::fingerprint(<Event as kernel_core::state::Schema>::SCHEMA, 1).0
            );
            headers.insert("Mk-Shape", shape.as_str());
            headers.insert("Mk-Call", id);
            let reply = client
                .request_with_headers(calls::subject("counter"), headers, event)
                .await
                .unwrap();
            postcard::from_bytes::<Reply>(&reply.payload).unwrap()
        }
    };
    let first = send("retried-call").await;
    let again = send("retried-call").await;
    assert_eq!(first, again, "a retry got a second handling");
    assert_eq!(first.data, "5");

    // A request of another shape is refused, not misread.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Mk-Shape", "0000000000000000");
    let refused = client_b
        .request_with_headers(calls::subject("counter"), headers, Bytes::from_static(b"junk"))
        .await
        .unwrap();
    let refused: Reply = postcard::from_bytes(&refused.payload).unwrap();
    assert_eq!(refused.code, kernel_core::code::UNSUPPORTED, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_given_remote_calls_reaches_services_on_other_nodes_by_name() {
    let Some(server) = server::NatsServer::start() else {
        return;
    };
    let client_a = async_nats::connect(server.url()).await.unwrap();
    let client_b = async_nats::connect(server.url()).await.unwrap();
    let node_a = Kernel::new();
    node_a.register(Counter::default()).unwrap();
    node_a.start_all_async().await.unwrap();
    let _serving = calls::serve(&node_a, &client_a, &["counter"]).await.unwrap();

    let node_b = Kernel::builder()
        .remote(calls::NatsCalls::new(client_b, Duration::from_secs(2)))
        .build()
        .unwrap();
    let reply = node_b
        .call_async("counter", Event::new("counter", "b", "count", ""))
        .await
        .unwrap();
    assert_eq!(reply.data, "1");
    // A synchronous call never waits on the network: a typed error says so.
    let err = node_b
        .call("counter", Event::new("counter", "b", "count", ""))
        .unwrap_err();
    assert!(matches!(err, kernel_core::CallError::Remote { .. }), "{err}");
    // Nobody serves it anywhere: the deadline ends the call with the same typed error.
    let err = node_b
        .call_async_timeout(
            "nowhere",
            Event::new("nowhere", "b", "x", ""),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kernel_core::CallError::Remote { .. }), "{err}");
}
