//! The `sessiond` under test, as a child process: started with its file
//! limit raised, its listening addresses read from its stdout, its output
//! drained (and the warnings kept), and killed at the end whatever happens.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use crate::client::lock;
use crate::control::Protocol;

/// The wrapper: raises the file limit, starts sessiond in the background,
/// prints its pid, and kills it when its own stdin closes (the coordinator
/// exited, even by a crash) or when it is signalled.
const WRAPPER: &str = r#"ulimit -n "$BENCH_NOFILE" || exit 97
"$0" "$@" &
p=$!
trap 'kill -9 $p 2>/dev/null' EXIT INT TERM HUP
echo "sessiond-pid $p"
read _ignored
"#;

/// Lines of server output kept for the report.
const KEEP_LINES: usize = 20;

/// A running `sessiond`.
#[derive(Debug)]
pub struct ServerProcess {
    wrapper: Child,
    /// Closing it makes the wrapper kill the server.
    stdin: Option<ChildStdin>,
    /// The server's own pid (not the wrapper's).
    pub pid: u32,
    /// Its TCP listener.
    pub tcp: SocketAddr,
    /// Its WebSocket listener.
    pub ws: SocketAddr,
    /// Its WebSocket path.
    pub ws_path: String,
    /// What its clients speak.
    pub protocol: Protocol,
    log: Arc<Mutex<ServerLog>>,
    /// Set once the server is known to be dead.
    stopped: bool,
}

/// The wrapper started, the server's output not yet drained.
struct Started {
    wrapper: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: ChildStderr,
}

impl Started {
    fn spawn(binary: &Path, nofile: u64, args: &[String]) -> Result<Self, String> {
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(binary)
            .args(args)
            .env("BENCH_NOFILE", nofile.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdin = wrapper.stdin.take();
        let stdout = wrapper.stdout.take().ok_or("no stdout")?;
        let stderr = wrapper.stderr.take().ok_or("no stderr")?;
        Ok(Self {
            wrapper,
            stdin,
            lines: BufReader::new(stdout).lines(),
            stderr,
        })
    }

    /// `e`, with what the server wrote to stderr.
    async fn failed(mut self, e: String) -> String {
        let mut err = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut self.stderr, &mut err).await;
        format!("{e}: {}", err.trim())
    }

    /// Keeps draining both streams (a server blocked on a full pipe would
    /// measure nothing) and returns the running server.
    fn running(
        self,
        pid: u32,
        tcp: SocketAddr,
        ws: SocketAddr,
        ws_path: String,
        protocol: Protocol,
    ) -> ServerProcess {
        let log = Arc::new(Mutex::new(ServerLog::default()));
        tokio::spawn(drain(self.lines, log.clone()));
        tokio::spawn(drain(BufReader::new(self.stderr).lines(), log.clone()));
        ServerProcess {
            wrapper: self.wrapper,
            stdin: self.stdin,
            pid,
            tcp,
            ws,
            ws_path,
            protocol,
            log,
            stopped: false,
        }
    }
}

/// What the server printed after starting.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ServerLog {
    /// Lines printed (stdout and stderr).
    pub lines: u64,
    /// Lines containing `WARN` or `ERROR`.
    pub warnings: u64,
    /// The first few of those lines.
    pub first: Vec<String>,
}

impl ServerProcess {
    /// Starts `sessiond` at `binary` on ephemeral loopback ports with `args`
    /// added, at most `nofile` file descriptors.
    pub async fn start(binary: &Path, nofile: u64, args: &[String]) -> Result<Self, String> {
        let mut all: Vec<String> = [
            "--log",
            "warn",
            "--tcp",
            "127.0.0.1:0",
            "--ws",
            "127.0.0.1:0",
            "--connection-rate",
            "1000000",
            "--connection-burst",
            "1000000",
            "--max-connections-per-ip",
            "100000",
        ]
        .map(String::from)
        .into();
        // As many connections as its descriptors allow (its listeners and
        // log take a few), so that it need not warn of a limit it cannot
        // reach.
        all.push("--max-connections".into());
        all.push(nofile.saturating_sub(100).max(1).to_string());
        all.extend_from_slice(args);
        let mut started = Started::spawn(binary, nofile, &all)?;
        let lines = &mut started.lines;
        let listening = async {
            let (mut pid, mut tcp, mut ws, mut ws_path) = (None, None, None, None);
            while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
                if let Some(p) = line.strip_prefix("sessiond-pid ") {
                    pid = p.trim().parse::<u32>().ok();
                } else if let Some(addr) = line.trim().strip_prefix("listening on tcp://") {
                    tcp = addr.parse::<SocketAddr>().ok();
                } else if let Some(rest) = line.trim().strip_prefix("listening on ws://") {
                    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    ws = addr.parse::<SocketAddr>().ok();
                    ws_path = Some(if path.is_empty() { "/session" } else { path }.to_owned());
                }
                if let (Some(pid), Some(tcp), Some(ws), Some(path)) = (pid, tcp, ws, &ws_path) {
                    return Ok((pid, tcp, ws, path.clone()));
                }
            }
            Err("sessiond exited before listening".to_owned())
        };
        let (pid, tcp, ws, ws_path) =
            match tokio::time::timeout(Duration::from_secs(15), listening).await {
                Ok(Ok(found)) => found,
                Ok(Err(e)) => return Err(started.failed(e).await),
                Err(_) => return Err("sessiond did not print its listeners within 15 s".into()),
            };
        Ok(started.running(pid, tcp, ws, ws_path, Protocol::Session))
    }

    /// Starts an MQTT broker, `mosquitto` at `binary`, on a free loopback
    /// port with its configuration written under `dir`: no persistence,
    /// anonymous clients, no limit on connections, and `TCP_NODELAY` (as
    /// `sessiond` sets it; mosquitto's default is off). Its sessions then
    /// speak MQTT at `qos` ([`crate::client::mqtt`]).
    pub async fn start_mosquitto(
        binary: &Path,
        qos: u8,
        nofile: u64,
        dir: &Path,
    ) -> Result<Self, String> {
        let protocol = if qos == 0 {
            Protocol::Mqtt0
        } else {
            Protocol::Mqtt1
        };
        Self::start_broker(binary, nofile, dir, protocol, |port| {
            let conf = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n\
                 persistence false\nset_tcp_nodelay true\nmax_keepalive 65535\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n"
            );
            ("mosquitto.conf", conf, "-c")
        })
        .await
    }

    /// Starts `nats-server` at `binary` on a free loopback port with its
    /// configuration written under `dir`: no limit on connections below
    /// the descriptors', its own defaults otherwise (it sets `TCP_NODELAY`
    /// itself). Its sessions then speak NATS ([`crate::client::nats`]).
    pub async fn start_nats(binary: &Path, nofile: u64, dir: &Path) -> Result<Self, String> {
        Self::start_broker(binary, nofile, dir, Protocol::Nats, |port| {
            let conf = format!("listen: \"127.0.0.1:{port}\"\nmax_connections: 100000\n");
            ("nats-server.conf", conf, "-c")
        })
        .await
    }

    /// Starts a broker on a free loopback port: `conf(port)` gives its
    /// configuration file's name and text, written under `dir`, and the
    /// flag that passes it. Ready once the port takes a connection.
    async fn start_broker(
        binary: &Path,
        nofile: u64,
        dir: &Path,
        protocol: Protocol,
        conf: impl FnOnce(u16) -> (&'static str, String, &'static str),
    ) -> Result<Self, String> {
        let name = binary.file_name().map_or_else(
            || binary.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if !binary.is_file() {
            return Err(format!("no {}", binary.display()));
        }
        let (file, text, flag) = conf(port);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        let args = [flag.to_owned(), path.display().to_string()];
        let mut started = Started::spawn(binary, nofile, &args)?;
        let lines = &mut started.lines;
        let ready = async {
            let mut pid = None;
            while pid.is_none() {
                let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? else {
                    return Err(format!("{name} exited at once"));
                };
                pid = line
                    .strip_prefix("sessiond-pid ")
                    .and_then(|p| p.trim().parse::<u32>().ok());
            }
            let pid = pid.unwrap_or(0);
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(format!("{name} exited before listening"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(pid)
        };
        let pid = match tokio::time::timeout(Duration::from_secs(15), ready).await {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => return Err(started.failed(e).await),
            Err(_) => return Err(format!("{name} did not listen on {addr} within 15 s")),
        };
        Ok(started.running(pid, addr, addr, "/".into(), protocol))
    }

    /// What the server printed since it started.
    pub fn log(&self) -> ServerLog {
        lock(&self.log).clone()
    }

    /// Kills the server and waits for the wrapper to exit.
    pub async fn stop(mut self) {
        self.stdin = None;
        if tokio::time::timeout(Duration::from_secs(5), self.wrapper.wait())
            .await
            .is_err()
        {
            kill_hard(self.pid);
        }
        self.stopped = true;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin makes the wrapper kill the server; the explicit kill
        // covers a wrapper that is already gone. The pid cannot have been
        // reused while our wrapper (its parent) has not been waited for.
        self.stdin = None;
        if !self.stopped && Path::new(&format!("/proc/{}", self.pid)).exists() {
            kill_hard(self.pid);
        }
    }
}

/// `kill -9 pid`, through the `kill` program (no unsafe code here).
pub fn kill_hard(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

async fn drain<R: tokio::io::AsyncBufRead + Unpin>(
    mut lines: Lines<R>,
    log: Arc<Mutex<ServerLog>>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        let mut log = lock(&log);
        log.lines += 1;
        if line.contains("WARN") || line.contains("ERROR") {
            log.warnings += 1;
            if log.first.len() < KEEP_LINES {
                log.first.push(line);
            }
        }
    }
}
