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

use app::{DIE_AT_VAR, KEY_VAR, Load, Options, Report, Server, request};
use microkernel::takeover::{TakeOver, TakeoverError};

const ROLE: &str = "BINARY_TAKEOVER_ROLE";
const DIR: &str = "BINARY_TAKEOVER_DIR";
const START: Duration = Duration::from_secs(60);

/// Not a test: the server process the other tests start.
#[test]
fn server_child() {
    let Ok(version) = std::env::var(ROLE) else { return };
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
        .env_remove(DIE_AT_VAR);
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
