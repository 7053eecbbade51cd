//! Three node processes on one machine share a counter service through NATS; a client calls it
//! without pause while the nodes are upgraded one by one from v1 to v2 (a rolling upgrade): the
//! standby nodes restart as v2, then the owner hands the counter over — its state upgraded on
//! the way — and restarts as v2 too. No call fails, none is lost or answered twice.
//!
//! ```sh
//! cargo run --features nats --example cluster                              # starts its own nats-server
//! cargo run --features nats --example cluster -- --url nats://127.0.0.1:4222  # or uses yours (JetStream on)
//! ```

mod counter;
mod node;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use microkernel::nats::async_nats;
use microkernel::nats::calls::NatsCalls;
use microkernel::{Event, Kernel};
use tokio::sync::mpsc;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    if let [role, name, version, url] = args.as_slice()
        && role == "node"
    {
        return runtime.block_on(node::run(name, version.parse()?, url));
    }
    let url = args
        .iter()
        .position(|a| a == "--url")
        .and_then(|i| args.get(i + 1))
        .cloned();
    runtime.block_on(orchestrate(url))
}

/// A node process and the lines it prints.
struct NodeProcess {
    name: String,
    child: Child,
}

/// What the node processes print, prefixed with their names.
type Lines = mpsc::UnboundedReceiver<(String, String)>;

async fn orchestrate(url: Option<String>) -> Result<(), Error> {
    let (_server, url) = match url {
        Some(url) => (None, url),
        None => {
            let server = LocalServer::start()?;
            let url = server.url.clone();
            println!("Started nats-server (JetStream) on {url}");
            (Some(server), url)
        }
    };
    // A fresh key for this run, handed to the nodes in their environment.
    let key = random_hex()?;
    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut nodes = Vec::new();
    for (i, name) in ["node-1", "node-2", "node-3"].into_iter().enumerate() {
        nodes.push(spawn_node(name, 1, &url, &key, tx.clone())?);
        expect(&mut lines, name, "up").await?;
        if i == 0 {
            expect(&mut lines, name, "serving counter").await?;
        }
    }

    // The client: a kernel whose async calls reach services on other nodes.
    let client = async_nats::connect(&url).await?;
    let kernel = Kernel::builder()
        .remote(NatsCalls::new(client, Duration::from_secs(10)))
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let calling = tokio::spawn(call_until(kernel.clone(), Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The rolling upgrade: standbys first, then the owner hands over to an upgraded node.
    for i in [1, 2, 0] {
        let name = nodes[i].name.clone();
        println!("Upgrading {name} to v2");
        quit(&url, &name).await?;
        if i == 0 {
            expect(&mut lines, &name, "handed counter over").await?;
            next_line(&mut lines, "serving counter").await?;
        }
        nodes[i].child.wait()?;
        nodes[i] = spawn_node(&name, 2, &url, &key, tx.clone())?;
        expect(&mut lines, &name, "up").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let (calls, failed, versions, counts_ok) = calling.await?;
    println!("Client: {calls} calls during the upgrade, {failed} failed, versions seen in order: {versions}");
    println!(
        "Every call answered once: {}",
        if counts_ok {
            "yes (counts 1..=N, each once)"
        } else {
            "NO"
        }
    );
    for node in &nodes {
        quit(&url, &node.name).await?;
    }
    for mut node in nodes {
        node.child.wait()?;
    }
    if failed > 0 || !counts_ok {
        return Err("the rolling upgrade lost or doubled calls".into());
    }
    Ok(())
}

/// Calls the counter until told to stop; returns (calls, failures, versions seen, whether the
/// counts were exactly 1..=calls).
async fn call_until(kernel: Kernel, stop: Arc<AtomicBool>) -> (usize, usize, String, bool) {
    let (mut counts, mut failed, mut versions) = (Vec::new(), 0, Vec::<String>::new());
    while !stop.load(Ordering::Relaxed) {
        match kernel
            .call_async("counter", Event::new("counter", "client", "count", ""))
            .await
        {
            Ok(reply) if reply.code == 0 => {
                counts.push(reply.data.parse::<usize>().unwrap_or(0));
                if counts.len() % 50 == 0 {
                    println!("  [client] counter -> {} {}", reply.message, reply.data);
                }
                if versions.last().map(String::as_str) != Some(&*reply.message) {
                    versions.push(reply.message.to_string());
                }
            }
            Ok(reply) => {
                eprintln!("client: {reply}");
                failed += 1;
            }
            Err(error) => {
                eprintln!("client: {error}");
                failed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let calls = counts.len() + failed;
    counts.sort_unstable();
    let ok = counts.iter().copied().eq(1..=counts.len());
    (calls, failed, versions.join(" -> "), ok)
}

fn spawn_node(
    name: &str,
    version: u32,
    url: &str,
    key: &str,
    lines: mpsc::UnboundedSender<(String, String)>,
) -> Result<NodeProcess, Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["node", name, &version.to_string(), url])
        .env(node::KEY_ENV, key)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let owned = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send((owned.clone(), line)).is_err() {
                break;
            }
        }
    });
    Ok(NodeProcess {
        name: name.to_owned(),
        child,
    })
}

/// Waits for `name` to print a line starting with `prefix`, printing what it says.
async fn expect(lines: &mut Lines, name: &str, prefix: &str) -> Result<(), Error> {
    loop {
        let (from, line) = next_line(lines, "").await?;
        if from == name && line.starts_with(prefix) {
            return Ok(());
        }
    }
}

/// The next line (from any node) starting with `prefix`; every line is printed.
async fn next_line(lines: &mut Lines, prefix: &str) -> Result<(String, String), Error> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), lines.recv()).await;
        let (from, line) = next
            .map_err(|_| "a node said nothing for 30 s")?
            .ok_or("the nodes are gone")?;
        println!("  [{from}] {line}");
        if line.starts_with(prefix) {
            return Ok((from, line));
        }
    }
}

async fn quit(url: &str, name: &str) -> Result<(), Error> {
    let client = async_nats::connect(url).await?;
    let request = client.request(format!("cluster.{name}.quit"), "".into());
    tokio::time::timeout(Duration::from_secs(30), request).await??;
    Ok(())
}

fn random_hex() -> Result<String, Error> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A `nats-server` with JetStream, from PATH (or /usr/sbin, where Debian puts it), on a free
/// loopback port with a temporary store; killed when dropped.
struct LocalServer {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl LocalServer {
    fn start() -> Result<Self, Error> {
        let binary = ["nats-server", "/usr/sbin/nats-server"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .ok_or("no nats-server on PATH: apt-get install -y nats-server, or pass --url")?;
        // A probed port can be taken before the server binds it: then it exits, and another
        // port is tried.
        for _ in 0..5 {
            if let Some(server) = Self::try_port(binary)? {
                return Ok(server);
            }
        }
        Err("nats-server exited at start on 5 free ports in a row".into())
    }

    /// A server on a fresh free port, once it answers as itself; `None` if it exited.
    fn try_port(binary: &str) -> Result<Option<Self>, Error> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let name = format!("mk-cluster-{}-{port}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-n", &name, "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let url = format!("nats://127.0.0.1:{port}");
        let mut server = Self { child, url, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if server.child.try_wait()?.is_some() {
                return Ok(None); // dropping it removes its directory
            }
            if answers_as(port, &name) {
                return Ok(Some(server));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("nats-server did not answer on port {port} within 10 s").into())
    }
}

/// Whether the server on loopback `port` greets a connection as `name`. A bare TCP connect
/// proves less: another process may hold the port, or the connect may meet itself (a loopback
/// connect can be given the port it dials as its own source).
fn answers_as(port: u16, name: &str) -> bool {
    use std::io::Read;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut info = String::new();
    BufReader::new(stream.take(64 * 1024))
        .read_line(&mut info)
        .is_ok_and(|_| info.starts_with("INFO ") && info.contains(&format!("\"server_name\":\"{name}\"")))
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
