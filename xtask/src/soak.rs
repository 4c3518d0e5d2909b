//! `cargo xtask soak`: thousands of sessions heartbeating against a real
//! `sessiond` for a while, reporting spurious expiries (must be zero), the
//! server's memory drift and lost events (must be zero). Not part of CI.
//!
//! ```text
//! cargo xtask soak [--sessions N] [--seconds S] [--heartbeat-ms MS]
//!                  [--events-per-second N] [--transport tcp|ws|both]
//!                  [--sessiond PATH]
//! ```
//!
//! It builds `sessiond` in release (`cargo build --release --bin sessiond`,
//! in `CARGO_TARGET_DIR` when set), starts it on free ports with the demo
//! users, and logs in N `load-<k>` sessions (default 2000, half over TCP and
//! half over WebSocket) that heartbeat at the given interval (default
//! 1000 ms) for S seconds (default 60). Meanwhile a publisher session sends
//! `to load-<k> <n>` relay requests (default 200 per second, spread over
//! every session), each of which the server turns into an event. Every
//! session acknowledges what it receives.
//!
//! The verdict: no session may go offline, lose its connection or fail to
//! log in (a *spurious expiry*: nothing here should end a session), and
//! every relayed event must arrive. The server's resident memory
//! (`VmRSS`) is sampled idle, once every session is online, midway and at
//! the end, and the drift is reported. The task exits non-zero when the
//! verdict fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use session_core::{
    ClientConfig, ClientEvent, ClientSession, Credentials, Framing, RequestFailure, Transmit,
};
use session_transport::ConnectOptions;
use tokio::sync::{Semaphore, watch};

use crate::root;

/// Connections being set up at once during the ramp.
const RAMP_CONCURRENCY: usize = 200;
/// Relay requests the publisher keeps in flight at most (the server's
/// default window is 128).
const PUBLISHER_WINDOW: usize = 64;
/// How long the events still in flight get to arrive after the last one.
const GRACE: Duration = Duration::from_secs(10);

/// Which transports the sessions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    Tcp,
    Ws,
    Both,
}

#[derive(Debug, Clone)]
struct Settings {
    sessions: usize,
    seconds: u64,
    heartbeat_ms: u64,
    events_per_second: u64,
    mix: Mix,
    sessiond: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sessions: 2000,
            seconds: 60,
            heartbeat_ms: 1000,
            events_per_second: 200,
            mix: Mix::Both,
            sessiond: None,
        }
    }
}

fn parse(args: &[String]) -> Result<Settings, String> {
    let mut settings = Settings::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .cloned()
        };
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|e| format!("{flag} {text:?}: {e}"))
        };
        match flag.as_str() {
            "--sessions" => settings.sessions = number(value()?)? as usize,
            "--seconds" => settings.seconds = number(value()?)?,
            "--heartbeat-ms" => settings.heartbeat_ms = number(value()?)?.max(100),
            "--events-per-second" => settings.events_per_second = number(value()?)?,
            "--transport" => {
                settings.mix = match value()?.as_str() {
                    "tcp" => Mix::Tcp,
                    "ws" => Mix::Ws,
                    "both" => Mix::Both,
                    other => return Err(format!("--transport {other:?}: use tcp, ws or both")),
                }
            }
            "--sessiond" => settings.sessiond = Some(PathBuf::from(value()?)),
            other => {
                return Err(format!(
                    "unknown flag {other:?}; usage: cargo xtask soak [--sessions N] \
                     [--seconds S] [--heartbeat-ms MS] [--events-per-second N] \
                     [--transport tcp|ws|both] [--sessiond PATH]"
                ));
            }
        }
    }
    if settings.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    Ok(settings)
}

/// Runs the soak test.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let settings = parse(args)?;
    check_fd_limit(settings.sessions)?;
    let binary = match &settings.sessiond {
        Some(path) => path.clone(),
        None => build_sessiond()?,
    };
    let mut server = Sessiond::start(&binary, &settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let report = runtime.block_on(load(&settings, &server));
    let stopped = server.stop();
    let report = report?;
    report.print(&settings, &server, &stopped);
    report.verdict()
}

// ---- sessiond ----

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Builds `sessiond` in release, in the target directory cargo uses.
fn build_sessiond() -> Result<PathBuf, String> {
    eprintln!("==> soak: cargo build --release --bin sessiond");
    let status = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--package",
            "session-server",
            "--bin",
            "sessiond",
        ])
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building sessiond failed ({status})"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root().join(dir)
            }
        })
        .unwrap_or_else(|| root().join("target"));
    let binary = target.join("release").join("sessiond");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "built sessiond, but {} is missing",
            binary.display()
        ))
    }
}

/// The open-file limit of this process must hold every client socket.
fn check_fd_limit(sessions: usize) -> Result<(), String> {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return Ok(());
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    match soft {
        Some(soft) if soft < sessions + 200 => Err(format!(
            "{sessions} sessions need {} file descriptors, but the limit is {soft}: \
             raise it (ulimit -n) or ask for fewer sessions",
            sessions + 200
        )),
        _ => Ok(()),
    }
}

/// What the server printed besides its addresses.
#[derive(Debug, Default)]
struct ServerLog {
    warnings: usize,
    samples: Vec<String>,
    farewell: Option<String>,
}

/// A running `sessiond`, killed if still running when dropped.
struct Sessiond {
    child: Child,
    pid: u32,
    tcp: String,
    ws: String,
    log: Arc<Mutex<ServerLog>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sessiond {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Sessiond {
    fn start(binary: &Path, settings: &Settings) -> Result<Self, String> {
        let min_heartbeat = settings.heartbeat_ms.min(1000).to_string();
        let per_ip = (settings.sessions + 1000).to_string();
        let mut child = Command::new(binary)
            .args([
                "--tcp",
                "127.0.0.1:0",
                "--ws",
                "127.0.0.1:0",
                "--log",
                "warn",
                "--min-heartbeat-ms",
                &min_heartbeat,
                "--max-connections-per-ip",
                &per_ip,
                "--connection-rate",
                "1000000",
                "--connection-burst",
                "1000000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let log = Arc::new(Mutex::new(ServerLog::default()));
        let (urls, found) = mpsc::channel();
        let reader = std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let text = line.trim();
                    if let Some(url) = text.strip_prefix("listening on ") {
                        let _ = urls.send(url.to_owned());
                    } else if text.starts_with("sessiond: closed") {
                        log.lock().unwrap().farewell = Some(text.to_owned());
                    } else if text.contains("WARN") || text.contains("ERROR") {
                        let mut log = log.lock().unwrap();
                        log.warnings += 1;
                        if log.samples.len() < 10 {
                            log.samples.push(text.to_owned());
                        }
                    }
                }
            }
        });
        let mut server = Self {
            child,
            pid,
            tcp: String::new(),
            ws: String::new(),
            log,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.tcp.is_empty() || server.ws.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match found.recv_timeout(left) {
                Ok(url) if url.starts_with("tcp://") => server.tcp = url,
                Ok(url) if url.starts_with("ws://") => server.ws = url,
                Ok(_) => {}
                Err(_) => return Err("sessiond did not say where it listens".into()),
            }
        }
        eprintln!(
            "==> soak: sessiond (pid {pid}) on {} and {}",
            server.tcp, server.ws
        );
        Ok(server)
    }

    /// Resident memory now, in KiB.
    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// SIGTERM (a graceful shutdown), then waits; kills after 15 s.
    fn stop(&mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break "killed after 15 s".to_owned();
                }
            }
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

// ---- the load ----

/// Counters every session task updates.
#[derive(Debug, Default)]
struct Counters {
    online: AtomicUsize,
    login_failed: AtomicUsize,
    /// Sessions that ended before the soak did.
    offline: AtomicUsize,
    /// Connections lost before the soak ended.
    disconnected: AtomicUsize,
    received: AtomicU64,
    /// Relay requests answered "delivered to n sessions": the sum of n.
    relayed: AtomicU64,
    /// Relay requests that found nobody, or failed.
    relay_failures: AtomicU64,
    /// Relay requests sent and not yet answered.
    relays_in_flight: AtomicUsize,
    problems: Mutex<Vec<String>>,
}

impl Counters {
    fn problem(&self, text: String) {
        let mut problems = self.problems.lock().unwrap();
        if problems.len() < 20 {
            problems.push(text);
        }
    }
}

/// The publisher's state, for the one session that publishes.
#[derive(Debug)]
struct Publisher {
    sessions: usize,
    every: Duration,
    next_at: tokio::time::Instant,
    sent: u64,
    in_flight: usize,
    /// Flips to false to stop publishing (without ending the session).
    publishing: watch::Receiver<bool>,
}

struct Member {
    user: String,
    url: String,
    heartbeat: Duration,
    counters: Arc<Counters>,
    /// Flips to true when the soak is over: log out.
    stop: watch::Receiver<bool>,
    ramp: Option<tokio::sync::OwnedSemaphorePermit>,
    publisher: Option<Publisher>,
}

/// One session, from connect to logout.
async fn member(mut m: Member) {
    let counters = m.counters.clone();
    let mut transport = match session_transport::connect(&m.url, &ConnectOptions::default()).await {
        Ok(transport) => Some(transport),
        Err(error) => {
            counters.login_failed.fetch_add(1, Ordering::SeqCst);
            counters.problem(format!("{}: cannot connect: {error}", m.user));
            return;
        }
    };
    let mut client = ClientSession::new(ClientConfig {
        requested_heartbeat: Some(m.heartbeat),
        ..ClientConfig::default()
    });
    client.handle_connected(Instant::now());
    let credentials = Credentials {
        user_id: m.user.clone(),
        credential: Bytes::from_static(b"load"),
        device: "soak".into(),
        properties: Default::default(),
    };
    if client.login(Instant::now(), credentials).is_err() {
        counters.login_failed.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let mut buf = BytesMut::new();
    let mut stopping = false;
    let mut online = false;
    loop {
        // Events first (acknowledging messages queues an ack)...
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Online(_) if !online => {
                    online = true;
                    m.ramp = None;
                    if m.publisher.is_none() {
                        counters.online.fetch_add(1, Ordering::SeqCst);
                    }
                }
                ClientEvent::Message { seq, .. } => {
                    counters.received.fetch_add(1, Ordering::SeqCst);
                    let _ = client.ack(seq);
                }
                ClientEvent::Response { id: _, result } => {
                    if let Some(publisher) = &mut m.publisher {
                        publisher.in_flight -= 1;
                        counters.relays_in_flight.fetch_sub(1, Ordering::SeqCst);
                        // Requests still in flight at the logout fail with
                        // "session closed": they are not counted.
                        if !stopping {
                            relayed(&counters, result);
                        }
                    }
                }
                ClientEvent::LoginFailed(failure) => {
                    counters.login_failed.fetch_add(1, Ordering::SeqCst);
                    counters.problem(format!("{}: login failed: {failure:?}", m.user));
                    return;
                }
                ClientEvent::Offline(reason) if !stopping => {
                    counters.offline.fetch_add(1, Ordering::SeqCst);
                    counters.problem(format!("{}: went offline: {reason:?}", m.user));
                }
                ClientEvent::Disconnected(reason) if !stopping => {
                    counters.disconnected.fetch_add(1, Ordering::SeqCst);
                    counters.problem(format!("{}: disconnected: {reason:?}", m.user));
                }
                _ => {}
            }
        }
        // ...then frames out.
        let mut close = false;
        while let Some(transmit) = client.poll_transmit(&mut buf, Framing::Bare) {
            match transmit {
                Transmit::Frame => {
                    let frame = buf.split().freeze();
                    if let Some(t) = &mut transport {
                        let _ = t.feed(frame).await;
                    }
                }
                Transmit::CloseConnection => close = true,
            }
        }
        if let Some(t) = &mut transport {
            let _ = t.flush().await;
        }
        if close {
            if let Some(t) = transport.take() {
                let _ = t.close_with_linger(Duration::from_millis(500)).await;
            }
            client.handle_disconnect(Instant::now());
            continue;
        }
        let Some(conn) = transport.as_mut() else {
            if !stopping {
                // The session is suspended or over: it stays out of the
                // soak (it has been counted as a failure).
                let _ = m.stop.wait_for(|stop| *stop).await;
            }
            return;
        };

        let deadline = client
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let publish_at = m
            .publisher
            .as_ref()
            .filter(|p| online && *p.publishing.borrow() && p.in_flight < PUBLISHER_WINDOW)
            .map(|p| p.next_at);
        tokio::select! {
            frame = conn.next() => {
                let now = Instant::now();
                match frame {
                    Some(Ok(frame)) => {
                        let _ = client.handle_frame(now, frame);
                    }
                    Some(Err(error)) => match error.protocol_error() {
                        Some(error) => client.handle_protocol_error(now, error),
                        None => {
                            transport = None;
                            client.handle_disconnect(now);
                        }
                    },
                    None => {
                        transport = None;
                        client.handle_disconnect(now);
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                client.handle_timeout(Instant::now());
            }
            () = sleep_until_opt(publish_at) => {
                if let Some(p) = &mut m.publisher {
                    let target = p.sent as usize % p.sessions;
                    p.sent += 1;
                    let body = format!("to load-{target} {}", p.sent);
                    if client.request(Instant::now(), body.into()).is_ok() {
                        p.in_flight += 1;
                        counters.relays_in_flight.fetch_add(1, Ordering::SeqCst);
                    }
                    p.next_at += p.every;
                    // Behind schedule (a slow moment): do not burst to catch up.
                    p.next_at = p.next_at.max(tokio::time::Instant::now() - p.every);
                }
            }
            _ = m.stop.changed(), if !stopping => {
                stopping = true;
                let _ = client.logout(Instant::now(), "soak over");
            }
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn relayed(counters: &Counters, result: Result<Bytes, RequestFailure>) {
    let delivered = result.as_ref().ok().and_then(|body| {
        std::str::from_utf8(body)
            .ok()?
            .strip_prefix("delivered to ")?
            .split(' ')
            .next()?
            .parse::<u64>()
            .ok()
    });
    match delivered {
        Some(n) if n > 0 => {
            counters.relayed.fetch_add(n, Ordering::SeqCst);
        }
        Some(_) => {
            counters.relay_failures.fetch_add(1, Ordering::SeqCst);
            counters.problem("a relay request found no session of its user".into());
        }
        None => {
            counters.relay_failures.fetch_add(1, Ordering::SeqCst);
            counters.problem(format!("a relay request failed: {result:?}"));
        }
    }
}

/// Memory samples of the server, in KiB.
#[derive(Debug, Default)]
struct Memory {
    idle: Option<u64>,
    start: Option<u64>,
    middle: Option<u64>,
    end: Option<u64>,
    peak: u64,
}

#[derive(Debug)]
struct Report {
    ramp: Duration,
    online_after_ramp: usize,
    ran: Duration,
    counters: Arc<Counters>,
    memory: Memory,
    tcp: usize,
    ws: usize,
}

async fn load(settings: &Settings, server: &Sessiond) -> Result<Report, String> {
    let counters = Arc::new(Counters::default());
    let mut memory = Memory {
        idle: server.rss_kib(),
        ..Memory::default()
    };
    let (stop, stopped) = watch::channel(false);
    let (publishing, publishing_rx) = watch::channel(true);
    let ramp = Arc::new(Semaphore::new(RAMP_CONCURRENCY));
    let heartbeat = Duration::from_millis(settings.heartbeat_ms);

    // The ramp: every session logs in.
    eprintln!("==> soak: logging in {} sessions", settings.sessions);
    let started = Instant::now();
    let (mut tcp, mut ws) = (0, 0);
    let mut tasks = Vec::new();
    for k in 0..settings.sessions {
        let over_ws = match settings.mix {
            Mix::Tcp => false,
            Mix::Ws => true,
            Mix::Both => k % 2 == 1,
        };
        let url = if over_ws {
            ws += 1;
            server.ws.clone()
        } else {
            tcp += 1;
            server.tcp.clone()
        };
        let permit = ramp.clone().acquire_owned().await.expect("never closed");
        tasks.push(tokio::spawn(member(Member {
            user: format!("load-{k}"),
            url,
            heartbeat,
            counters: counters.clone(),
            stop: stopped.clone(),
            ramp: Some(permit),
            publisher: None,
        })));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while counters.online.load(Ordering::SeqCst) + counters.login_failed.load(Ordering::SeqCst)
        < settings.sessions
    {
        if Instant::now() > deadline {
            return Err("the sessions did not all log in within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_took = started.elapsed();
    let online_after_ramp = counters.online.load(Ordering::SeqCst);
    eprintln!(
        "==> soak: {} online in {ramp_took:.1?}; running for {} s",
        counters.online.load(Ordering::SeqCst),
        settings.seconds
    );
    memory.start = server.rss_kib();

    // The publisher.
    if settings.events_per_second > 0 {
        let every = Duration::from_secs_f64(1.0 / settings.events_per_second as f64);
        tasks.push(tokio::spawn(member(Member {
            user: "load-publisher".into(),
            url: server.tcp.clone(),
            heartbeat,
            counters: counters.clone(),
            stop: stopped.clone(),
            ramp: None,
            publisher: Some(Publisher {
                sessions: settings.sessions,
                every,
                next_at: tokio::time::Instant::now(),
                sent: 0,
                in_flight: 0,
                publishing: publishing_rx,
            }),
        })));
    }

    // The soak itself, with a progress line every 10 s.
    let run = Duration::from_secs(settings.seconds);
    let running = Instant::now();
    let mut middle_taken = false;
    while running.elapsed() < run {
        let step = (run - running.elapsed()).min(Duration::from_secs(10));
        tokio::time::sleep(step.min(run / 2)).await;
        let rss = server.rss_kib();
        memory.peak = memory.peak.max(rss.unwrap_or(0));
        if !middle_taken && running.elapsed() >= run / 2 {
            memory.middle = rss;
            middle_taken = true;
        }
        eprintln!(
            "    {:>5.0?}: {} online, {} offline, {} disconnected, {} events relayed, {} received, RSS {}",
            running.elapsed(),
            counters
                .online
                .load(Ordering::SeqCst)
                .saturating_sub(counters.offline.load(Ordering::SeqCst)),
            counters.offline.load(Ordering::SeqCst),
            counters.disconnected.load(Ordering::SeqCst),
            counters.relayed.load(Ordering::SeqCst),
            counters.received.load(Ordering::SeqCst),
            rss.map_or("?".into(), mib),
        );
    }
    let ran = running.elapsed();
    memory.end = server.rss_kib();
    memory.peak = memory.peak.max(memory.end.unwrap_or(0));

    // Stop publishing, let every answer and event in flight arrive, then
    // log everyone out.
    let _ = publishing.send(false);
    let grace = Instant::now() + GRACE;
    while Instant::now() < grace
        && (counters.relays_in_flight.load(Ordering::SeqCst) > 0
            || counters.received.load(Ordering::SeqCst) < counters.relayed.load(Ordering::SeqCst))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    Ok(Report {
        ramp: ramp_took,
        online_after_ramp,
        ran,
        counters,
        memory,
        tcp,
        ws,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Report {
    fn spurious(&self) -> usize {
        let c = &self.counters;
        c.offline.load(Ordering::SeqCst)
            + c.disconnected.load(Ordering::SeqCst)
            + c.login_failed.load(Ordering::SeqCst)
    }

    /// Events not received, and relay requests that reached nobody (a
    /// session of the soak that the server no longer knew).
    fn lost(&self) -> u64 {
        let c = &self.counters;
        c.relayed
            .load(Ordering::SeqCst)
            .saturating_sub(c.received.load(Ordering::SeqCst))
            + c.relay_failures.load(Ordering::SeqCst)
    }

    fn print(&self, settings: &Settings, server: &Sessiond, stopped: &str) {
        let c = &self.counters;
        let m = &self.memory;
        let show = |v: Option<u64>| v.map_or("?".into(), mib);
        println!();
        println!(
            "soak: {} sessions ({} tcp, {} ws), heartbeat {} ms, {:.0?}, {} events/s",
            settings.sessions,
            self.tcp,
            self.ws,
            settings.heartbeat_ms,
            self.ran,
            settings.events_per_second
        );
        println!(
            "  ramp:               {} of {} online in {:.1?}",
            self.online_after_ramp, settings.sessions, self.ramp
        );
        println!(
            "  spurious expiries:  {} (went offline {}, lost a connection {}, failed to log in {})",
            self.spurious(),
            c.offline.load(Ordering::SeqCst),
            c.disconnected.load(Ordering::SeqCst),
            c.login_failed.load(Ordering::SeqCst)
        );
        println!(
            "  events:             {} relayed, {} received, {} lost ({} relay requests failed)",
            c.relayed.load(Ordering::SeqCst),
            c.received.load(Ordering::SeqCst),
            self.lost(),
            c.relay_failures.load(Ordering::SeqCst)
        );
        let per_session = match (m.idle, m.start) {
            (Some(idle), Some(start)) if start > idle => format!(
                " ({:.1} KiB per session)",
                (start - idle) as f64 / settings.sessions as f64
            ),
            _ => String::new(),
        };
        println!(
            "  sessiond RSS:       idle {}, start {}{per_session}, middle {}, end {}, peak {}",
            show(m.idle),
            show(m.start),
            show(m.middle),
            show(m.end),
            mib(m.peak)
        );
        if let (Some(start), Some(end)) = (m.start, m.end) {
            let drift = end as f64 - start as f64;
            println!(
                "  memory drift:       {:+.1} MiB ({:+.1}%) from start to end",
                drift / 1024.0,
                100.0 * drift / start as f64
            );
        }
        let log = server.log.lock().unwrap();
        println!(
            "  sessiond:           {} warnings logged; {}; exit: {stopped}",
            log.warnings,
            log.farewell.as_deref().unwrap_or("no shutdown report")
        );
        for line in &log.samples {
            println!("    | {line}");
        }
        for problem in c.problems.lock().unwrap().iter() {
            println!("    ! {problem}");
        }
    }

    fn verdict(&self) -> Result<(), String> {
        let (spurious, lost) = (self.spurious(), self.lost());
        if spurious == 0 && lost == 0 {
            println!("soak: passed");
            Ok(())
        } else {
            Err(format!(
                "failed: {spurious} spurious expiries, {lost} lost events"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_parsed_and_mistakes_reported() {
        let args: Vec<String> = ["--sessions", "10", "--seconds", "5", "--transport", "ws"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let settings = parse(&args).unwrap();
        assert_eq!(settings.sessions, 10);
        assert_eq!(settings.seconds, 5);
        assert_eq!(settings.mix, Mix::Ws);
        assert_eq!(settings.heartbeat_ms, 1000);
        assert!(parse(&["--sessions".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
        assert!(parse(&["--sessions".into(), "0".into()]).is_err());
    }
}
