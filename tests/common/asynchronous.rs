//! Async test services (features `tokio` or `tower`).

use microkernel::asynchronous::{AsyncContext, AsyncHandler};
use microkernel::{Event, Reply};

/// "echo", async: answers with the event's content and how many events it has seen
/// ("hi #3").
#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
pub struct AsyncEcho {
    pub seen: u64,
}

impl AsyncHandler for AsyncEcho {
    type Request = Event;
    type Response = Reply;

    async fn handle(&mut self, ev: Event, _: &AsyncContext) -> Reply {
        self.seen += 1;
        Reply::ok("echo", format!("{} #{}", ev.content, self.seen))
    }
}
