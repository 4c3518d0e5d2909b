//! The `sessiond` under test, as a child process: started with its file
//! limit raised, its listening addresses read from its stdout, its output
//! drained (and the warnings kept), and killed at the end whatever happens.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::client::lock;

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
    log: Arc<Mutex<ServerLog>>,
    /// Set once the server is known to be dead.
    stopped: bool,
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
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg(binary)
            .args([
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
            ])
            .args(args)
            .env("BENCH_NOFILE", nofile.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut wrapper = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdin = wrapper.stdin.take();
        let stdout = wrapper.stdout.take().ok_or("no stdout")?;
        let stderr = wrapper.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(ServerLog::default()));
        let mut lines = BufReader::new(stdout).lines();

        let startup = async {
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
        let (pid, tcp, ws, ws_path) = match tokio::time::timeout(Duration::from_secs(15), startup)
            .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                let mut err = String::new();
                let _ =
                    tokio::io::AsyncReadExt::read_to_string(&mut BufReader::new(stderr), &mut err)
                        .await;
                return Err(format!("{e}: {}", err.trim()));
            }
            Err(_) => return Err("sessiond did not print its listeners within 15 s".into()),
        };
        // Keep draining both streams: a server blocked on a full pipe would
        // measure nothing.
        tokio::spawn(drain(lines, log.clone()));
        tokio::spawn(drain(BufReader::new(stderr).lines(), log.clone()));
        Ok(Self {
            wrapper,
            stdin,
            pid,
            tcp,
            ws,
            ws_path,
            log,
            stopped: false,
        })
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
    mut lines: tokio::io::Lines<R>,
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
