//! The coordinator's side of a worker process: spawning it, sending
//! commands, routing replies by id, and keeping its latest progress.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::ValueEnum as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::oneshot;

use crate::client::lock;
use crate::control::{Command, Counters, Reply, Request, Response};
use crate::server::ServerProcess;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// A running worker process.
#[derive(Debug)]
pub struct WorkerProc {
    child: Child,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    pending: Pending,
    progress: Arc<Mutex<Counters>>,
    next_id: AtomicU64,
    /// The worker's pid.
    pub pid: u32,
    /// Its source address.
    pub source: IpAddr,
}

impl WorkerProc {
    /// Starts `exe worker ...` against `server`, binding to `source`.
    pub fn spawn(
        exe: &Path,
        index: usize,
        source: IpAddr,
        server: &ServerProcess,
        max_seconds: u64,
    ) -> Result<Self, String> {
        let mut child = Process::new(exe)
            .args([
                "worker".to_owned(),
                "--index".into(),
                index.to_string(),
                "--source".into(),
                source.to_string(),
                "--tcp".into(),
                server.tcp.to_string(),
                "--ws".into(),
                server.ws.to_string(),
                "--ws-path".into(),
                server.ws_path.clone(),
                "--max-seconds".into(),
                max_seconds.to_string(),
            ])
            .arg("--protocol")
            .arg(
                server
                    .protocol
                    .to_possible_value()
                    .map_or("session".into(), |v| v.get_name().to_owned()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start worker {}: {e}", exe.display()))?;
        let pid = child.id().ok_or("worker exited at once")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no worker stdout")?;
        let pending: Pending = Arc::default();
        let progress: Arc<Mutex<Counters>> = Arc::default();
        {
            let pending = pending.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(response) = serde_json::from_str::<Response>(&line) else {
                        eprintln!("worker {pid}: unreadable line {line:?}");
                        continue;
                    };
                    match (response.id, response.reply) {
                        (None, Reply::Progress(counters)) => *lock(&progress) = counters,
                        (Some(id), reply) => {
                            if let Some(tx) = lock(&pending).remove(&id) {
                                let _ = tx.send(reply);
                            }
                        }
                        (None, _) => {}
                    }
                }
                // The worker is gone: fail whatever still waits.
                lock(&pending).clear();
            });
        }
        Ok(Self {
            child,
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            progress,
            next_id: AtomicU64::new(1),
            pid,
            source,
        })
    }

    /// Sends `command`; the receiver gets the reply.
    pub async fn send(&self, command: Command) -> Result<oneshot::Receiver<Reply>, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let mut line =
            serde_json::to_string(&Request { id, command }).map_err(|e| e.to_string())?;
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        let pipe = stdin.as_mut().ok_or("worker stdin closed")?;
        pipe.write_all(line.as_bytes())
            .await
            .map_err(|e| format!("worker {}: {e}", self.pid))?;
        pipe.flush()
            .await
            .map_err(|e| format!("worker {}: {e}", self.pid))?;
        Ok(rx)
    }

    /// Sends `command` and waits for its reply (at most `timeout`).
    pub async fn call(&self, command: Command, timeout: Duration) -> Result<Reply, String> {
        let rx = self.send(command).await?;
        Self::wait(self.pid, rx, timeout).await
    }

    /// Waits for a reply of [`send`](Self::send).
    pub async fn wait(
        pid: u32,
        rx: oneshot::Receiver<Reply>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Reply::Error { message })) => Err(format!("worker {pid}: {message}")),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(format!("worker {pid} exited without answering")),
            Err(_) => Err(format!("worker {pid} did not answer within {timeout:?}")),
        }
    }

    /// The latest progress line.
    pub fn progress(&self) -> Counters {
        *lock(&self.progress)
    }

    /// CPU time the worker used so far, seconds.
    pub fn cpu_seconds(&self) -> f64 {
        crate::procfs::cpu_ns(self.pid).unwrap_or(0) as f64 / 1e9
    }

    /// Closes stdin (the worker exits) and waits briefly, then kills it.
    pub async fn finish(mut self) {
        *self.stdin.lock().await = None;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
