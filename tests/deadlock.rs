//! Calls never deadlock across threads: N threads each inside service `s<i>` call `s<i+1>` at
//! the same moment, closing a cycle of waits. At least one caller gets `WouldDeadlock`, none
//! hangs, every call is answered. A watchdog turns a hang into a failure (no timed assertion).

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::captured::Captured;
use microkernel::{BoxError, Context, Event, Handler, Kernel, Reply, Service, Stateless, code};

/// One service of the ring: on "ring" it waits until every thread is inside its own service,
/// then calls the next one ("leaf", answered at once).
struct Link {
    name: &'static str,
    next: &'static str,
    barrier: Arc<Barrier>,
}

impl Service for Link {
    type State = Stateless;
    fn name(&self) -> &str {
        self.name
    }
    fn dependencies(&self) -> Vec<String> {
        Vec::new()
    }
    fn export_state(&self) -> Result<&Stateless, BoxError> {
        Ok(&Stateless)
    }
    fn import_state(&mut self, _: Stateless) -> Result<(), BoxError> {
        Ok(())
    }
}

impl Handler for Link {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, ctx: &Context<'_>) -> Reply {
        if event.kind != "ring" {
            return Reply::ok("leaf", self.name);
        }
        self.barrier.wait();
        match ctx.call(self.next, Event::new(self.next, self.name, "leaf", "")) {
            Ok(reply) => reply,
            Err(error) => error.to_reply(),
        }
    }
}

fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// Runs one round of an `n`-service cycle across `n` threads; returns how many callers were
/// refused with `WouldDeadlock`.
fn ring_round(n: usize) -> usize {
    let barrier = Arc::new(Barrier::new(n));
    let kernel = Kernel::new();
    let names: Vec<&'static str> = (0..n).map(|i| leak(format!("s{i}"))).collect();
    for i in 0..n {
        kernel
            .register(Link {
                name: names[i],
                next: names[(i + 1) % n],
                barrier: Arc::clone(&barrier),
            })
            .unwrap();
    }
    kernel.start_all().unwrap();
    let replies: Vec<Reply> = thread::scope(|s| {
        let callers: Vec<_> = names
            .iter()
            .map(|name| {
                let kernel = kernel.clone();
                s.spawn(move || kernel.call(name, Event::new(*name, "test", "ring", "")).unwrap())
            })
            .collect();
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(replies.len(), n, "every call is answered once");
    let refused = replies.iter().filter(|r| r.code == code::LOOP).count();
    for reply in &replies {
        assert!(
            reply.code == code::LOOP || (reply.is_ok() && reply.message == "leaf"),
            "unexpected reply {reply}"
        );
    }
    kernel.stop_all().unwrap();
    refused
}

/// Runs `rounds` rounds of an `n`-cycle under a watchdog.
fn rings(n: usize, rounds: usize) {
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        for _ in 0..rounds {
            let refused = ring_round(n);
            assert!(refused >= 1, "a cycle of {n} closed and nobody was refused");
            assert!(
                refused < n,
                "all {n} callers were refused: at least one could have waited"
            );
        }
        done.send(()).unwrap();
    });
    if finished.recv_timeout(Duration::from_secs(120)).is_err() {
        panic!("deadlock: a {n}-service cycle across {n} threads hung (watchdog)");
    }
    worker.join().unwrap();
}

#[test]
fn a_two_service_cycle_across_two_threads_never_hangs() {
    rings(2, 100);
}

#[test]
fn a_three_service_cycle_across_three_threads_never_hangs() {
    rings(3, 60);
}

#[test]
fn an_eight_service_cycle_across_eight_threads_never_hangs() {
    rings(8, 30);
}

/// A service whose handler holds the slot until the test lets it go.
#[derive(microkernel::Service)]
#[service(name = "busy")]
struct Busy {
    entered: mpsc::Sender<()>,
    release: Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
    served: u32,
}

impl Handler for Busy {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        self.served += 1;
        if event.kind == "hold" {
            self.entered.send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
        Reply::ok("served", self.served.to_string())
    }
}

#[test]
fn call_timeout_bounds_the_wait_to_enter_and_delivers_nothing_past_it() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let kernel = Kernel::new();
    let busy = kernel
        .register(Busy {
            entered: entered_tx,
            release: Arc::new(std::sync::Mutex::new(release_rx)),
            served: 0,
        })
        .unwrap();
    kernel.start_all().unwrap();
    let holder = {
        let busy = busy.clone();
        thread::spawn(move || busy.call(Event::new("busy", "t", "hold", "")).unwrap())
    };
    entered.recv().unwrap();
    // The handler is running: a bounded call gives up instead of waiting for it.
    let err = busy
        .call_timeout(Event::new("busy", "t", "hi", ""), Duration::from_millis(20))
        .unwrap_err();
    assert!(
        matches!(err, microkernel::CallError::Timeout { ref service, .. } if service == "busy"),
        "{err}"
    );
    assert_eq!(err.to_reply().code, code::TIMEOUT);
    let err = kernel
        .call_timeout("busy", Event::new("busy", "t", "hi", ""), Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(err, microkernel::CallError::Timeout { .. }), "{err}");
    // The running handler was not interrupted, and the refused requests were never delivered.
    release.send(()).unwrap();
    assert_eq!(holder.join().unwrap().data, "1");
    let reply = busy
        .call_timeout(Event::new("busy", "t", "hi", ""), Duration::from_millis(20))
        .unwrap();
    assert_eq!(reply.data, "2");
}

/// A service that, asked "again", calls itself by name from inside its handler.
#[derive(microkernel::Service)]
#[service(name = "selfish")]
struct Selfish {
    served: u64,
}

impl Handler for Selfish {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, event: Event, ctx: &Context<'_>) -> Reply {
        if event.kind == "count" {
            return Reply::ok("count", self.served.to_string());
        }
        self.served += 1;
        if event.kind != "again" {
            return Reply::ok("served", "");
        }
        match ctx.call("selfish", Event::new("selfish", "selfish", "plain", "")) {
            Ok(_) => Reply::ok("re-entered", ""),
            Err(error) => error.to_reply(),
        }
    }
}

/// Re-entry is detected when the slot is found taken, so it must hold while other threads keep
/// the slot busy: the handler calling itself is refused every time (never let in, never hung),
/// and every other call is served once.
#[test]
fn a_handler_calling_itself_is_refused_while_other_threads_contend_for_it() {
    const CALLERS: usize = 3;
    const PLAIN: u64 = 20_000;
    const AGAIN: u64 = 2_000;
    let kernel = Kernel::new();
    let selfish = kernel.register(Selfish { served: 0 }).unwrap();
    kernel.start_all().unwrap();
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        let refused = thread::scope(|s| {
            for _ in 0..CALLERS {
                let selfish = selfish.clone();
                s.spawn(move || {
                    for _ in 0..PLAIN {
                        assert!(selfish.call(Event::new("selfish", "t", "plain", "")).unwrap().is_ok());
                    }
                });
            }
            let again = s.spawn(|| {
                // A self-call must be refused as re-entry, at once: one that waited and was
                // refused later by the wait-for table (also `LOOP`) logs a cycle, seen here.
                let log = Captured::default();
                let subscriber = tracing_subscriber::fmt().with_writer(log.clone()).finish();
                let refused = tracing::subscriber::with_default(subscriber, || {
                    (0..AGAIN)
                        .filter(|_| {
                            let reply = kernel.call("selfish", Event::new("selfish", "t", "again", "")).unwrap();
                            reply.code == code::LOOP
                        })
                        .count() as u64
                });
                let log = log.text();
                assert!(!log.contains("call refused"), "a self-call waited for itself: {log}");
                refused
            });
            again.join().unwrap()
        });
        let count: u64 = kernel
            .call("selfish", Event::new("selfish", "t", "count", ""))
            .unwrap()
            .data
            .parse()
            .unwrap();
        done.send((refused, count)).unwrap();
    });
    let (refused, served) = match finished.recv_timeout(Duration::from_secs(120)) {
        Ok(counts) => counts,
        // The worker failed an assertion: its own panic is the failure to report.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            worker.join().unwrap();
            unreachable!("the worker ended without its counts")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("a handler calling itself under contention hung (watchdog)"),
    };
    worker.join().unwrap();
    assert_eq!(refused, AGAIN, "every self-call is refused as a loop");
    assert_eq!(
        served,
        CALLERS as u64 * PLAIN + AGAIN,
        "every call was served exactly once"
    );
}

mod lifecycle_cycle {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
    use microkernel::{DirStore, LifecycleError, Migratable};
    use serde::{Deserialize, Serialize};

    use super::*;

    static A_INSIDE: AtomicBool = AtomicBool::new(false);
    static B_INSIDE: AtomicBool = AtomicBool::new(false);
    static SAVE: Mutex<Option<Result<(), LifecycleError>>> = Mutex::new(None);

    #[derive(Serialize, Deserialize, Migratable, Default)]
    #[migratable(version = 1)]
    struct Tally {
        n: u64,
    }

    /// Inside, it calls `cyc-b`.
    #[derive(microkernel::Service, Default)]
    #[service(name = "cyc-a")]
    struct A {
        #[state]
        tally: Tally,
    }

    impl Handler for A {
        type Request = Event;
        type Response = Reply;
        fn handle(&mut self, _: Event, ctx: &Context<'_>) -> Reply {
            A_INSIDE.store(true, Ordering::SeqCst);
            ctx.call("cyc-b", Event::new("cyc-b", "cyc-a", "plain", ""))
                .unwrap_or_else(|e| e.to_reply())
        }
    }

    /// On "save-a", once `cyc-a` is inside and waiting for it, checkpoints `cyc-a`.
    #[derive(microkernel::Service, Default)]
    #[service(name = "cyc-b")]
    struct B;

    impl Handler for B {
        type Request = Event;
        type Response = Reply;
        fn handle(&mut self, event: Event, ctx: &Context<'_>) -> Reply {
            if event.kind == "save-a" {
                B_INSIDE.store(true, Ordering::SeqCst);
                while !A_INSIDE.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(1));
                }
                // Long past the unregistered grace of a waiting caller: `cyc-a`'s call to us
                // is in the wait-for table when we ask for `cyc-a`.
                thread::sleep(Duration::from_millis(100));
                let saved = ctx.kernel().expect("kernel").checkpoint_service("cyc-a").map(drop);
                *SAVE.lock().unwrap() = Some(saved);
            }
            Reply::ok("b", "")
        }
    }

    /// A save made inside `cyc-b` of `cyc-a`, whose handler waits for `cyc-b` on another
    /// thread: refused as the cycle it is, naming the services, not as a re-entry.
    #[test]
    fn a_save_that_would_close_a_cycle_across_threads_is_reported_as_a_cycle() {
        let dir = std::env::temp_dir().join(format!("mk-deadlock-save-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kernel = Kernel::builder()
            .sealer(Sealer::new(Keyring::new(
                1,
                Key::generate(Algorithm::ChaCha20Poly1305).unwrap(),
            )))
            .store(DirStore::open(&dir).unwrap())
            .build()
            .unwrap();
        kernel.register(A::default()).unwrap();
        kernel.register(B).unwrap();
        kernel.start_all().unwrap();
        let (done, finished) = mpsc::channel();
        let saver = {
            let (kernel, done) = (kernel.clone(), done.clone());
            thread::spawn(move || {
                let reply = kernel.call("cyc-b", Event::new("cyc-b", "test", "save-a", ""));
                done.send(()).unwrap();
                reply
            })
        };
        let caller = {
            let kernel = kernel.clone();
            thread::spawn(move || {
                while !B_INSIDE.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(1));
                }
                let reply = kernel.call("cyc-a", Event::new("cyc-a", "test", "go", ""));
                done.send(()).unwrap();
                reply
            })
        };
        for _ in 0..2 {
            finished
                .recv_timeout(Duration::from_secs(30))
                .expect("a cycle of waits hung");
        }
        assert_eq!(saver.join().unwrap().unwrap().code, 0);
        assert_eq!(
            caller.join().unwrap().unwrap().code,
            0,
            "cyc-a's call to cyc-b was served"
        );
        let saved = SAVE.lock().unwrap().take().expect("the save ran");
        match saved {
            Err(LifecycleError::WouldDeadlock { cycle, .. }) => {
                assert!(cycle.contains(&"cyc-a".to_owned()), "{cycle:?}");
                assert!(cycle.contains(&"cyc-b".to_owned()), "{cycle:?}");
            }
            other => panic!("expected the cycle to be reported as one, got {other:?}"),
        }
        drop(kernel);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
