//! A new process takes over a running one (feature `takeover`): the `binary_upgrade` example's
//! server, run as child processes of this test binary (each re-runs it with `server_child`
//! selected and its role in the environment), under load from this process.

#[path = "../examples/binary_upgrade/app.rs"]
#[allow(dead_code)]
mod app;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use app::{DIE_AT_VAR, KEY_VAR, Load, NEXT_VERSION_VAR, Options, Report, Server, VERSION_VAR, request};
use microkernel::takeover::{TakeOver, TakeoverError, request_upgrade};

const ROLE: &str = "BINARY_TAKEOVER_ROLE";
const DIR: &str = "BINARY_TAKEOVER_DIR";
const START: Duration = Duration::from_secs(60);

/// Not a test: the server process the other tests start.
#[test]
fn server_child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    // A successor started for an upgrade runs the version it was asked to.
    let version = std::env::var(app::VERSION_VAR).unwrap_or(role);
    if version == "stranger" {
        stranger();
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let options = Options {
        version,
        dir: std::env::var(DIR).expect("the handover directory").into(),
        addr: ([127, 0, 0, 1], 0).into(),
        entries: 10,
    };
    let code = match app::serve(&options) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            1
        }
    };
    std::process::exit(code);
}

/// A process of another user connecting to the handover socket: prints `closed` if the old
/// process hung up without a word.
fn stranger() -> ! {
    use std::io::Write;
    let socket = PathBuf::from(std::env::var(DIR).unwrap()).join("handover.sock");
    let mut stream = UnixStream::connect(socket).expect("the socket is open to all in this test");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.write_all(&[4, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    let mut answer = Vec::new();
    let said = stream.read_to_end(&mut answer);
    println!(
        "{}",
        if matches!(said, Ok(0)) || said.is_err() {
            "closed"
        } else {
            "answered"
        }
    );
    std::process::exit(0);
}

fn key(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mk-takeover-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn command(version: &str, dir: &Path, key: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "server_child", "--nocapture", "--test-threads=1"])
        .env(ROLE, version)
        .env(DIR, dir)
        .env(KEY_VAR, key)
        .env_remove(DIE_AT_VAR)
        .env_remove(NEXT_VERSION_VAR)
        .env_remove(VERSION_VAR);
    command
}

fn hits(server: &Server, n: usize) -> Vec<(String, u64)> {
    (0..n).map(|_| request(server.addr, true).unwrap()).collect()
}

#[test]
fn a_clean_takeover_under_load_loses_and_doubles_nothing() {
    let dir = dir("clean");
    let key = key(0x11);
    let mut v1 = Server::start(command("v1", &dir, &key), START).unwrap();
    let load = Load::start(v1.addr, 4);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut v2 = Server::start(command("v2", &dir, &key), START).unwrap();
    let serving = Instant::now();
    assert_eq!(v2.addr, v1.addr, "the new process serves on the inherited socket");
    assert!(v1.child.wait().unwrap().success());
    let said: Vec<String> = v1.lines.try_iter().collect();
    let handed = format!("handed over to process {}", v2.child.id());
    assert!(said.iter().any(|line| line.contains(&handed)), "{said:?}");
    std::thread::sleep(Duration::from_millis(300));
    let samples = load.finish();
    let report = Report::new(&samples, 1, (started, serving));
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(report.counts.is_ok(), "{:?}", report.counts);
    assert_eq!(report.versions, ["v1", "v2"]);
    // The count went on in v2's state type.
    let (version, count) = request(v2.addr, false).unwrap();
    assert_eq!((version.as_str(), count), ("v2", report.counts.unwrap()));
    v2.child.kill().unwrap();
    v2.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_process_with_another_key_is_refused_and_the_old_serves_on() {
    let dir = dir("key");
    let (good, wrong) = (key(0x22), key(0x33));
    let mut old = command("v1", &dir, &good);
    old.stderr(Stdio::piped());
    let mut v1 = Server::start(old, START).unwrap();
    assert_eq!(hits(&v1, 3).last().unwrap(), &("v1".to_owned(), 3));
    let load = Load::start(v1.addr, 2);
    let out = command("v2", &dir, &wrong).output().unwrap();
    let samples = load.finish();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot restore `table`"), "{stderr}");
    // The old process serves on, with its state: nothing was lost or doubled meanwhile.
    let report = Report::new(&samples, 4, (Instant::now(), Instant::now()));
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    let last = report.counts.unwrap();
    assert_eq!(request(v1.addr, true).unwrap(), ("v1".to_owned(), last + 1));
    v1.child.kill().unwrap();
    v1.child.wait().unwrap();
    let mut logs = String::new();
    v1.child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    // The old process was told why.
    assert!(logs.contains("aborted the takeover: cannot restore `table`"), "{logs}");
    for text in [&stderr.to_string(), &logs] {
        for key in [&good, &wrong] {
            assert!(!text.contains(key.as_str()), "a key leaked: {text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_new_process_killed_at_each_step_leaves_the_old_serving_with_its_state() {
    let dir = dir("killed");
    let key = key(0x44);
    let mut v1 = Server::start(command("v1", &dir, &key), START).unwrap();
    let load = Load::start(v1.addr, 2);
    // Connected, said nothing, gone.
    drop(UnixStream::connect(dir.join("handover.sock")).unwrap());
    // The old process notices at once, but takes a moment to be ready again.
    std::thread::sleep(Duration::from_millis(200));
    // Connected, received the listening socket, gone.
    drop(TakeOver::connect(&dir).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let mut between = Vec::new();
    for step in ["connected", "state", "started"] {
        let out = command("v2", &dir, &key).env(DIE_AT_VAR, step).output().unwrap();
        // Killed at the step (not refused or failed before it).
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
        // Failed there (a service that does not start): the TakeOver dropped, the process gone.
        let out = command("v2", &dir, &key)
            .env(DIE_AT_VAR, format!("fail:{step}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("as asked"), "{step}: {stderr}");
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        let outcome = request(v1.addr, true);
        assert_eq!(
            outcome.as_ref().unwrap().0,
            "v1",
            "after a new process was killed at `{step}`"
        );
        between.push(app::Sample {
            start,
            latency: start.elapsed(),
            outcome,
        });
    }
    // Still ready to be taken over, and the takeover carries the count so far.
    let mut v2 = Server::start(command("v2", &dir, &key), START).unwrap();
    assert!(v1.child.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(100));
    let mut samples = load.finish();
    // The requests made between the kills are in the sequence too.
    samples.extend(between);
    let report = Report::new(&samples, 1, (Instant::now(), Instant::now()));
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(report.versions, ["v1", "v2"]);
    assert_eq!(report.counts.unwrap(), samples.len() as u64);
    v2.child.kill().unwrap();
    v2.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_takeover_while_one_runs_is_refused() {
    let dir = dir("second");
    let key = key(0x55);
    let mut v1 = Server::start(command("v1", &dir, &key), START).unwrap();
    hits(&v1, 2);
    let first = TakeOver::connect(&dir).unwrap();
    assert_eq!(first.listener_names(), ["http"]);
    match TakeOver::connect(&dir) {
        Err(TakeoverError::Refused { reason }) => assert!(reason.contains("under way"), "{reason}"),
        other => panic!("a second takeover was not refused: {other:?}"),
    }
    let out = command("v2", &dir, &key).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the takeover"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    first.abort("test over");
    assert_eq!(request(v1.addr, true).unwrap(), ("v1".to_owned(), 3));
    v1.child.kill().unwrap();
    v1.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nothing_to_take_over_says_so() {
    let dir = dir("none");
    std::fs::create_dir_all(&dir).unwrap();
    let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700);
    std::fs::set_permissions(&dir, private).unwrap();
    assert!(matches!(
        TakeOver::connect(&dir),
        Err(TakeoverError::NoOldProcess { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_upgrade_asked_for_tells_whoever_asked_why_it_failed_or_who_serves_now() {
    let dir = dir("reload");
    let key = key(0x77);
    // v1's new binary cannot start its services (a version it does not know): it aborts.
    let mut old = command("v1", &dir, &key);
    old.env(NEXT_VERSION_VAR, "v3");
    let mut v1 = Server::start(old, START).unwrap();
    hits(&v1, 2);
    match request_upgrade(&dir) {
        Err(TakeoverError::UpgradeFailed { source }) => match *source {
            TakeoverError::Aborted { reason } => assert!(reason.contains("unknown version `v3`"), "{reason}"),
            other => panic!("not the new process's reason: {other:?}"),
        },
        other => panic!("a failed upgrade was not reported as one: {other:?}"),
    }
    // v1 serves on, with its state.
    assert_eq!(request(v1.addr, true).unwrap(), ("v1".to_owned(), 3));

    // A v2 taking over from v1, whose own new binary is a v2 too: the upgrade asked for of it
    // succeeds, and whoever asked learns which process serves now.
    let mut next = command("v2", &dir, &key);
    next.env(NEXT_VERSION_VAR, "v2");
    let mut v2 = Server::start(next, START).unwrap();
    assert!(v1.child.wait().unwrap().success());
    assert_eq!(request(v2.addr, true).unwrap(), ("v2".to_owned(), 4));
    let done = request_upgrade(&dir).expect("the upgrade succeeded");
    assert_ne!(done.successor_pid, v2.child.id());
    assert_eq!(done.services, ["counter", "table"]);
    // The old v2 exits; its successor serves on the same socket, with the count.
    assert!(v2.child.wait().unwrap().success());
    let said: Vec<String> = v2.lines.try_iter().collect();
    assert!(
        said.iter()
            .any(|l| l.contains(&format!("handed over to process {}", done.successor_pid))),
        "{said:?}"
    );
    assert_eq!(request(v2.addr, true).unwrap(), ("v2".to_owned(), 5));
    let _ = Command::new("kill")
        .args(["-9", &done.successor_pid.to_string()])
        .status();
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP (what `systemctl reload` may send) upgrades as `reload` does, sent the moment the
/// server says it listens: the new binary serves on with the state, the old one exits.
#[test]
fn a_hangup_upgrades_the_server_as_reload_does() {
    let dir = dir("hangup");
    let key = key(0x99);
    let mut first = command("v2", &dir, &key);
    first.env(NEXT_VERSION_VAR, "v2");
    let mut v2 = Server::start(first, START).unwrap();
    hang_up(v2.child.id());
    let status = v2.child.wait().unwrap();
    assert!(status.success(), "the old process did not exit cleanly: {status:?}");
    let successor = Successor(handed_over_to(&v2.lines));
    // The successor serves on the same socket.
    assert_eq!(request(v2.addr, true).unwrap(), ("v2".to_owned(), 1));
    assert_eq!(request(v2.addr, true).unwrap(), ("v2".to_owned(), 2));
    // Hung up in turn, it hands over the count it reached (its output goes to the same pipe).
    hang_up(successor.0);
    let next = Successor(handed_over_to(&v2.lines));
    assert_ne!(next.0, successor.0);
    assert_eq!(request(v2.addr, true).unwrap(), ("v2".to_owned(), 3));
    let _ = std::fs::remove_dir_all(&dir);
}

fn hang_up(pid: u32) {
    let sent = Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(sent.success(), "kill -HUP {pid} failed");
}

/// The pid of the process a server said it handed over to, from its output.
fn handed_over_to(lines: &std::sync::mpsc::Receiver<String>) -> u32 {
    const SAID: &str = "handed over to process ";
    let mut said = Vec::new();
    while let Ok(line) = lines.recv_timeout(START) {
        if let Some(pid) = line.split(SAID).nth(1) {
            return pid.trim().parse().expect("a pid");
        }
        said.push(line);
    }
    panic!("no handover said: {said:?}");
}

/// A successor process (not a child of this one), killed when the test ends however it ends:
/// it holds the test's output pipe.
struct Successor(u32);

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-9", &self.0.to_string()]).status();
    }
}

#[test]
fn sockets_passed_by_the_service_manager_serve_and_pass_to_the_successor() {
    use std::os::unix::fs::PermissionsExt;
    let dir = dir("activated");
    let key = key(0x88);
    // What systemd does for a socket unit: the socket at descriptor 3, `LISTEN_PID` this
    // process's id (the shell's, which `exec` keeps), `LISTEN_FDS=1` and its name.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let server = command("v1", &dir, &key);
    let mut activated = Command::new("sh");
    activated
        .arg("-c")
        .arg(r#"exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=http; exec "$0" "$@""#)
        .arg(server.get_program())
        .args(server.get_args())
        .envs(server.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove(DIE_AT_VAR)
        .stdin(std::os::fd::OwnedFd::from(socket));
    let mut v1 = Server::start(activated, START).unwrap();
    assert_eq!(v1.addr, addr, "serves on the socket passed");
    assert_eq!(request(addr, true).unwrap(), ("v1".to_owned(), 1));
    // Taken close-on-exec: not leaked into the processes it starts.
    let fdinfo = std::fs::read_to_string(format!("/proc/{}/fdinfo/3", v1.child.id())).unwrap();
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    assert_ne!(flags & 0o2000000, 0, "not close-on-exec: {fdinfo}");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    // A successor, not started by the service manager, takes the socket over.
    let mut v2 = Server::start(command("v2", &dir, &key), START).unwrap();
    assert_eq!(v2.addr, addr);
    assert!(v1.child.wait().unwrap().success());
    assert_eq!(request(addr, true).unwrap(), ("v2".to_owned(), 2));
    v2.child.kill().unwrap();
    v2.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Needs root, to start a process of another user; skipped (with a note) otherwise. The
/// directory and socket are opened to everyone here, so that only the peer check stands in the
/// way (the credential check itself is also unit-tested in the library).
#[test]
fn a_peer_of_another_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if rustix_free_euid() != 0 {
        eprintln!("skipped: not root, cannot start a process of another user");
        return;
    }
    let dir = dir("stranger");
    let key = key(0x66);
    let mut old = command("v1", &dir, &key);
    old.stderr(Stdio::piped());
    let mut v1 = Server::start(old, START).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("handover.sock"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = command("stranger", &dir, &key).uid(65534).gid(65534).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.lines().any(|l| l.ends_with("closed")),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(request(v1.addr, true).unwrap(), ("v1".to_owned(), 1));
    v1.child.kill().unwrap();
    v1.child.wait().unwrap();
    let mut logs = String::new();
    v1.child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    assert!(logs.contains("refused a peer running as uid 65534"), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// This process's effective user id, read from `/proc` (no unsafe code, no dependency).
fn rustix_free_euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .unwrap_or(u32::MAX)
}

/// In-process callers of the old process during a takeover, for a synchronous service and an
/// async one: a call admitted before the pause finishes there; calls arriving during the pause
/// wait (a call with a timeout gets `Timeout` at its bound), and are served by the old version
/// when the takeover fails, or get `NotRunning` once — and only once — the service was handed
/// over.
mod in_process {
    use std::sync::mpsc::{self, Receiver, TryRecvError};
    use std::time::{Duration, Instant};

    use microkernel::asynchronous::{AsyncContext, AsyncHandler};
    use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
    use microkernel::takeover::{Handover, TakeOver};
    use microkernel::{CallError, Context, Event, Handler, Kernel, Migratable, Reply, Status};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Default, Serialize, Deserialize, Migratable)]
    #[migratable(version = 1)]
    struct Count {
        count: u64,
    }

    /// Counts `hit`s; `slow` counts after a while (a call in flight when the pause begins).
    #[derive(microkernel::Service, Default)]
    #[service(name = "counter")]
    struct Counter {
        #[state]
        state: Count,
    }

    impl Handler for Counter {
        type Request = Event;
        type Response = Reply;
        fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
            if event.kind == "slow" {
                std::thread::sleep(Duration::from_millis(300));
            }
            if event.kind != "get" {
                self.state.count += 1;
            }
            Reply::ok("counter", self.state.count.to_string())
        }
    }

    /// The same, async.
    #[derive(microkernel::Service, Default)]
    #[service(name = "acounter")]
    struct AsyncCounter {
        #[state]
        state: Count,
    }

    impl AsyncHandler for AsyncCounter {
        type Request = Event;
        type Response = Reply;
        async fn handle(&mut self, event: Event, _: &AsyncContext) -> Reply {
            if event.kind != "get" {
                self.state.count += 1;
            }
            Reply::ok("acounter", self.state.count.to_string())
        }
    }

    fn hit(to: &'static str) -> Event {
        Event::new(to, "test", "hit", "")
    }

    type Answer = (Result<Reply, CallError>, Instant);

    /// The old process's kernel, paused by a new one (in this process) that has loaded the
    /// counter's state; callers waiting on both services.
    struct Paused {
        runtime: tokio::runtime::Runtime,
        old: Kernel,
        new: Kernel,
        take_over: TakeOver,
        _handover: Handover,
        sync_waiter: Receiver<Answer>,
        async_waiter: Receiver<Answer>,
        dir: std::path::PathBuf,
    }

    fn sealer() -> Sealer {
        Sealer::new(Keyring::new(
            1,
            Key::from_bytes(Algorithm::Aes256Gcm, &[7; 32]).unwrap(),
        ))
    }

    fn pause(test: &str) -> Paused {
        let dir = super::dir(test);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let old = Kernel::builder().sealer(sealer()).build().unwrap();
        old.register(Counter::default()).unwrap();
        runtime.block_on(old.register_async(AsyncCounter::default())).unwrap();
        old.start_all().unwrap();
        assert_eq!(old.call("counter", hit("counter")).unwrap().data, "1");
        assert_eq!(
            runtime
                .block_on(old.call_async("acounter", hit("acounter")))
                .unwrap()
                .data,
            "1"
        );
        let handover = Handover::builder(&old, &dir).listen().unwrap();

        // A call admitted before the pause: it finishes in the old process.
        let in_flight = {
            let old = old.clone();
            std::thread::spawn(move || old.call("counter", Event::new("counter", "test", "slow", "")))
        };
        std::thread::sleep(Duration::from_millis(50));
        let take_over = TakeOver::connect(&dir).unwrap();
        let new = Kernel::builder()
            .sealer(sealer())
            .store(take_over.store())
            .build()
            .unwrap();
        // Its state request pauses the old process, once the call in flight is over.
        new.register(Counter::default()).unwrap();
        assert_eq!(
            in_flight.join().unwrap().unwrap().data,
            "2",
            "served by the old process"
        );

        // Calls arriving now wait.
        let (tx, sync_waiter) = mpsc::channel();
        {
            let old = old.clone();
            std::thread::spawn(move || {
                let answer = old.call("counter", hit("counter"));
                let _ = tx.send((answer, Instant::now()));
            });
        }
        let (tx, async_waiter) = mpsc::channel();
        {
            let old = old.clone();
            runtime.spawn(async move {
                let answer = old.call_async("acounter", hit("acounter")).await;
                let _ = tx.send((answer, Instant::now()));
            });
        }
        // A call with a timeout waits at most that long.
        let started = Instant::now();
        let timed = old.call_timeout("counter", hit("counter"), Duration::from_millis(150));
        assert!(matches!(timed, Err(CallError::Timeout { .. })), "{timed:?}");
        assert!(started.elapsed() >= Duration::from_millis(150));
        let timed = runtime.block_on(old.call_async_timeout("acounter", hit("acounter"), Duration::from_millis(150)));
        assert!(matches!(timed, Err(CallError::Timeout { .. })), "{timed:?}");
        std::thread::sleep(Duration::from_millis(200));
        for waiter in [&sync_waiter, &async_waiter] {
            match waiter.try_recv() {
                Err(TryRecvError::Empty) => {}
                other => panic!("a call during the pause did not wait: {other:?}"),
            }
        }
        Paused {
            runtime,
            old,
            new,
            take_over,
            _handover: handover,
            sync_waiter,
            async_waiter,
            dir,
        }
    }

    fn answer(waiter: &Receiver<Answer>) -> Answer {
        waiter
            .recv_timeout(Duration::from_secs(30))
            .expect("the waiting call ended")
    }

    #[test]
    fn in_process_callers_wait_through_a_failed_takeover_and_the_old_version_serves_them() {
        let paused = pause("callers-rollback");
        paused.take_over.abort("test: giving up");
        let (sync, _) = answer(&paused.sync_waiter);
        assert_eq!(sync.unwrap().data, "3", "served by the old version, with its state");
        let (asynchronous, _) = answer(&paused.async_waiter);
        assert_eq!(asynchronous.unwrap().data, "2");
        assert_eq!(paused.old.status("counter"), Some(Status::Running));
        assert_eq!(paused.old.call("counter", hit("counter")).unwrap().data, "4");
        drop(paused.new);
        drop(paused.old);
        drop(paused.runtime);
        let _ = std::fs::remove_dir_all(&paused.dir);
    }

    #[test]
    fn in_process_callers_wait_through_a_takeover_and_are_told_only_once_handed_over() {
        let paused = pause("callers-commit");
        paused
            .runtime
            .block_on(paused.new.register_async(AsyncCounter::default()))
            .unwrap();
        paused.new.start_all().unwrap();
        // Still waiting after the new process started its services: the old has not let go.
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(paused.sync_waiter.try_recv(), Err(TryRecvError::Empty)));
        let committing = Instant::now();
        paused.take_over.commit().unwrap();
        for (waiter, service) in [(&paused.sync_waiter, "counter"), (&paused.async_waiter, "acounter")] {
            let (answer, at) = answer(waiter);
            assert!(
                matches!(&answer, Err(CallError::NotRunning { service: s, .. }) if s == service),
                "{service}: {answer:?}"
            );
            assert!(at >= committing, "{service}: told before the commit");
        }
        // Handed over: gone from the old process, served by the new with the state.
        assert!(matches!(
            paused.old.call("counter", hit("counter")),
            Err(CallError::NotFound { .. })
        ));
        assert_eq!(paused.new.call("counter", hit("counter")).unwrap().data, "3");
        let got = paused
            .runtime
            .block_on(paused.new.call_async("acounter", hit("acounter")))
            .unwrap();
        assert_eq!(got.data, "2");
        drop(paused.new);
        drop(paused.old);
        drop(paused.runtime);
        let _ = std::fs::remove_dir_all(&paused.dir);
    }

    /// An old process whose new binary never takes over tells whoever asked why, and serves
    /// on: one that exits at once, one that never connects (killed at the timeout), none.
    #[test]
    fn an_upgrade_whose_new_binary_does_not_take_over_is_reported_and_the_old_serves_on() {
        use microkernel::takeover::{TakeoverError, request_upgrade};
        use std::process::Command;

        let old = Kernel::builder().sealer(sealer()).build().unwrap();
        old.register(Counter::default()).unwrap();
        old.start_all().unwrap();

        let dir = super::dir("upgrade-exits");
        let handover = Handover::builder(&old, &dir)
            .successor(|| Command::new("false").spawn())
            .listen()
            .unwrap();
        let exited = handover.upgrade();
        assert!(
            matches!(exited, Err(TakeoverError::SuccessorExited { code: Some(1), .. })),
            "{exited:?}"
        );
        match request_upgrade(&dir) {
            Err(TakeoverError::UpgradeFailed { source }) => {
                assert!(matches!(*source, TakeoverError::SuccessorExited { code: Some(1), .. }));
                let said = TakeoverError::UpgradeFailed { source }.to_string();
                assert_eq!(
                    said,
                    "the upgrade failed: the new binary exited with code 1 before taking over"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(old.call("counter", hit("counter")).unwrap().data, "1");
        assert!(!handover.is_handed_over());
        drop(handover);

        let dir = super::dir("upgrade-silent");
        let handover = Handover::builder(&old, &dir)
            .successor(|| Command::new("sleep").arg("30").spawn())
            .timeout(Duration::from_millis(300))
            .listen()
            .unwrap();
        let started = Instant::now();
        let silent = handover.upgrade();
        assert!(matches!(silent, Err(TakeoverError::TimedOut)), "{silent:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(handover);

        let dir = super::dir("upgrade-none");
        let handover = Handover::builder(&old, &dir).listen().unwrap();
        match request_upgrade(&dir) {
            Err(TakeoverError::UpgradeFailed { source }) => {
                assert!(matches!(*source, TakeoverError::NoSuccessor), "{source:?}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(old.call("counter", hit("counter")).unwrap().data, "2");
        drop(handover);
        for test in ["upgrade-exits", "upgrade-silent", "upgrade-none"] {
            let _ = std::fs::remove_dir_all(super::dir(test));
        }
    }
}
