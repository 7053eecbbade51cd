//! The kernel's `tracing` spans: a user's own events inside a handler, a hook or a replacement
//! carry the service's name.

mod common;

use common::captured::Captured;
use microkernel::{Context, Event, Handler, Kernel, Level, Reply};

#[derive(microkernel::Service, Default)]
#[service(name = "echo")]
struct Traced;

impl Handler for Traced {
    type Request = Event;
    type Response = Reply;
    fn start(&mut self, _: &Context<'_>) -> Result<(), microkernel::BoxError> {
        tracing::info!("user event in start");
        Ok(())
    }
    fn handle(&mut self, _: Event, ctx: &Context<'_>) -> Reply {
        tracing::info!("user event in handle");
        ctx.log(Level::Warn, "through the context");
        Reply::ok("ok", "")
    }
}

fn capture(level: tracing::Level, run: impl FnOnce()) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, run);
    let bytes = out.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn line_with<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
}

#[test]
fn events_in_hooks_handlers_and_replacements_carry_the_service() {
    let log = capture(tracing::Level::DEBUG, || {
        let kernel = Kernel::new();
        kernel.register(Traced).unwrap();
        kernel.start_all().unwrap();
        kernel.call("echo", Event::new("echo", "t", "k", "c")).unwrap();
        kernel.replace(Traced).unwrap();
    });
    assert!(
        line_with(&log, "user event in start").contains("hook{service=echo hook=start}"),
        "{log}"
    );
    assert!(
        line_with(&log, "user event in handle").contains("handle{service=echo}"),
        "{log}"
    );
    let logged = line_with(&log, "through the context");
    assert!(
        logged.contains("service=\"echo\""),
        "Context::log names its service as a field: {logged}"
    );
    // The new version's start runs inside the replacement's span.
    let during = log
        .lines()
        .filter(|l| l.contains("user event in start"))
        .nth(1)
        .unwrap_or_else(|| panic!("the new version did not start:\n{log}"));
    assert!(during.contains("replace{service=\"echo\""), "{during}");
}

#[test]
fn the_handler_span_is_debug_so_an_info_subscriber_does_not_see_it() {
    let log = capture(tracing::Level::INFO, || {
        let kernel = Kernel::new();
        kernel.register(Traced).unwrap();
        kernel.start_all().unwrap();
        kernel.call("echo", Event::new("echo", "t", "k", "c")).unwrap();
    });
    let handled = line_with(&log, "user event in handle");
    assert!(!handled.contains("handle{"), "{handled}");
    assert!(
        line_with(&log, "user event in start").contains("hook{service=echo"),
        "{log}"
    );
}
