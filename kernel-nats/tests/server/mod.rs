//! A real `nats-server` for the tests: started on 127.0.0.1 with a free port, JetStream on, a
//! temporary store directory and a config file raising `max_payload`; stopped when dropped.
//! Without `nats-server` on PATH the tests skip with one line naming the install command, unless
//! `MICROKERNEL_REQUIRE_NATS=1` (set by `.ci/run`) turns the skip into a failure.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
    config: PathBuf,
    /// The `server_name` in its config: how the tests know the listener on `addr` is this
    /// server and not another process's (or a socket connected to itself).
    name: String,
    /// Inside `restart`, between killing the old server and the new one answering.
    restarting: bool,
}

impl NatsServer {
    /// A running server, or `None` (after saying why) when `nats-server` is not installed and
    /// not required.
    pub fn start() -> Option<Self> {
        if Command::new("nats-server").arg("--version").output().is_err() {
            let required = std::env::var("MICROKERNEL_REQUIRE_NATS").is_ok_and(|v| v == "1");
            assert!(!required, "MICROKERNEL_REQUIRE_NATS=1 but `nats-server` is not on PATH");
            eprintln!("skipped: `nats-server` is not on PATH (apt-get install -y nats-server)");
            return None;
        }
        // Tests run in parallel: a port the OS hands out twice would put two servers on one
        // port, and one test would talk to the other's server. Each start gets a port of its
        // own, and the server is checked to be the one listening.
        for _ in 0..5 {
            if let Some(server) = Self::try_start() {
                return Some(server);
            }
        }
        panic!("nats-server did not start on a free port in 5 tries");
    }

    fn try_start() -> Option<Self> {
        static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
        let port = loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut taken = TAKEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !taken.contains(&port) {
                taken.push(port);
                break port;
            }
        };
        let dir = std::env::temp_dir().join(format!("mk-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a store directory");
        let config = dir.join("nats.conf");
        let name = format!("mk-test-{}-{port}", std::process::id());
        std::fs::write(
            &config,
            format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{\n  store_dir: \"{}\"\n}}\n",
                dir.join("js").display()
            ),
        )
        .expect("a config file");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let Some(child) = spawn_and_wait(&config, addr, &name) else {
            // It exited: the port was taken after all (its log says so), or something else
            // went wrong, which the log names before it goes with the directory.
            eprintln!("nats-server {name} exited at start; its log:\n{}", read_log(&config));
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        };
        Some(Self {
            child,
            addr,
            dir,
            config,
            name,
            restarting: false,
        })
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and starts it again on the same
    /// port with the same store directory, after `down`.
    pub fn restart(&mut self, down: Duration) {
        self.restarting = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        let restarted = spawn_and_wait(&self.config, self.addr, &self.name);
        let Some(child) = restarted else {
            panic!(
                "nats-server {} did not restart on {}; its log:\n{}",
                self.name,
                self.addr,
                read_log(&self.config)
            );
        };
        self.child = child;
        self.restarting = false;
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}

/// Starts `nats-server -c config` and waits until it answers on `addr` as `name`; `None` if it
/// exited (its port was taken).
///
/// A TCP connect alone does not prove the server is up: another process may hold the port, and
/// a connect to a loopback port nobody listens on can be handed that same port as its source and
/// connect to itself. Only the server's own `INFO` line, naming it, does.
fn spawn_and_wait(config: &std::path::Path, addr: SocketAddr, name: &str) -> Option<Child> {
    let mut child = Command::new("nats-server")
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log_file(config))
        .spawn()
        .expect("nats-server starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        if answers_as(addr, name) {
            return Some(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nats-server {name} did not answer on {addr} within 10 s; its log:\n{}",
                read_log(config)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the server beside `config` logged so far (empty if nothing could be read).
fn read_log(config: &std::path::Path) -> String {
    std::fs::read_to_string(config.with_file_name("nats.log")).unwrap_or_default()
}

/// The server's log (appended across restarts), beside its config: shown if it dies early.
fn log_file(config: &std::path::Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("nats.log"))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// Whether the NATS server listening on `addr` greets a new connection as `name`.
fn answers_as(addr: SocketAddr, name: &str) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    if stream.set_read_timeout(Some(Duration::from_millis(500))).is_err() {
        return false;
    }
    let mut info = String::new();
    let greeted = BufReader::new(stream.take(64 * 1024)).read_line(&mut info);
    greeted.is_ok() && info.starts_with("INFO ") && info.contains(&format!("\"server_name\":\"{name}\""))
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // A server that died under a test explains that test's connection errors. (A failed
        // restart has panicked with the log already; `child` is still the one it killed.)
        if let (false, Ok(Some(status))) = (self.restarting, self.child.try_wait()) {
            eprintln!(
                "nats-server {} had exited ({status}) before the test ended; its log:\n{}",
                self.name,
                read_log(&self.config)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
