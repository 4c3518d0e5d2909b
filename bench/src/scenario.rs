//! The scenarios of the benchmark issue, each against a fresh `sessiond`
//! with fresh worker processes, and what each reports.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::control::{Carrier, Command, Counters, Reply, unix_ns};
use crate::coord::WorkerProc;
use crate::procfs::{self, Sample};
use crate::server::ServerProcess;
use crate::stats::{Counts, Latency, Percentiles, latency};
use crate::yardstick;

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Connect and log in many sessions, a fixed number of handshakes in flight.
    S1,
    /// Server memory per idle logged-in session over TCP.
    S2,
    /// The same over WebSocket.
    S2ws,
    /// Server CPU to keep idle sessions alive.
    S2cpu,
    /// Push messages to many sessions as fast as possible.
    S3,
    /// Push messages at a fixed rate; end-to-end latency.
    S3lat,
    /// Every session disconnects; time until the server closed every socket.
    S4,
    /// The core simulation, no sockets.
    Sim,
}

impl Scenario {
    /// Every scenario, in the order a suite runs them.
    pub const ALL: [Self; 8] = [
        Self::S1,
        Self::S2,
        Self::S2ws,
        Self::S2cpu,
        Self::S3,
        Self::S3lat,
        Self::S4,
        Self::Sim,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::S1 => "s1",
            Self::S2 => "s2",
            Self::S2ws => "s2ws",
            Self::S2cpu => "s2cpu",
            Self::S3 => "s3",
            Self::S3lat => "s3lat",
            Self::S4 => "s4",
            Self::Sim => "sim",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether it can measure a broker in `sessiond`'s place: all but
    /// S2ws (the brokers are measured over plain TCP) and the core
    /// simulation.
    ///
    /// ```
    /// use session_bench::scenario::Scenario;
    /// assert!(Scenario::S3lat.applies_to_brokers());
    /// assert!(!Scenario::S2ws.applies_to_brokers());
    /// ```
    pub fn applies_to_brokers(self) -> bool {
        !matches!(self, Self::S2ws | Self::Sim)
    }
}

/// How big each scenario is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizes {
    /// S1 sessions.
    pub s1: u64,
    /// S2 and S2ws: RSS is read at each of these session counts.
    pub s2: Vec<u64>,
    /// S2cpu sessions.
    pub s2cpu: u64,
    /// S2cpu: how long CPU is measured.
    pub s2cpu_window_s: u64,
    /// S2cpu: the server's heartbeat interval.
    pub s2cpu_heartbeat_ms: u32,
    /// S3 and S3lat receiving sessions.
    pub s3_receivers: u64,
    /// S3 and S3lat messages.
    pub s3_messages: u64,
    /// S3lat offered rate, messages per second.
    pub s3lat_rate: f64,
    /// S3: publishing sessions (each keeps a full request window).
    pub s3_publishers: usize,
    /// S3 body bytes.
    pub body_len: usize,
    /// S4 sessions.
    pub s4: u64,
    /// Sim sizes.
    pub sim: Vec<u64>,
    /// Handshakes in flight while connecting.
    pub in_flight: usize,
    /// Most sessions per worker process.
    pub per_worker: u64,
}

impl Sizes {
    /// The sizes of the issue. S1 uses 19,500 sessions, not 20,000: the
    /// server may hold at most 20,000 file descriptors, listeners included.
    pub fn full() -> Self {
        Self {
            s1: 19_500,
            s2: vec![10_000, 19_500],
            s2cpu: 10_000,
            s2cpu_window_s: 35,
            s2cpu_heartbeat_ms: 30_000,
            s3_receivers: 10_000,
            s3_messages: 200_000,
            s3lat_rate: 50_000.0,
            s3_publishers: 8,
            body_len: 64,
            s4: 10_000,
            sim: vec![10_000, 100_000, 1_000_000],
            in_flight: 200,
            per_worker: 9_000,
        }
    }

    /// A smoke run: the same steps, small.
    pub fn quick() -> Self {
        Self {
            s1: 2_000,
            s2: vec![1_000, 2_000],
            s2cpu: 2_000,
            s2cpu_window_s: 4,
            s2cpu_heartbeat_ms: 2_000,
            s3_receivers: 2_000,
            s3_messages: 20_000,
            s3lat_rate: 10_000.0,
            s3_publishers: 4,
            body_len: 64,
            s4: 2_000,
            sim: vec![1_000, 10_000, 100_000],
            in_flight: 200,
            per_worker: 9_000,
        }
    }

    /// Sets the main session count of every scenario to `n`.
    pub fn with_sessions(mut self, n: u64) -> Self {
        self.s1 = n;
        self.s2 = vec![n / 2, n];
        self.s2cpu = n;
        self.s3_receivers = n;
        self.s3_messages = 20 * n;
        self.s4 = n;
        self.sim = vec![(n / 100).max(1), (n / 10).max(1), n];
        self
    }
}

/// One run of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Which scenario.
    pub scenario: Scenario,
    /// Its figures, by key (see [`crate::suite::rows`]).
    pub figures: BTreeMap<String, f64>,
    /// Everything else worth keeping: counts, errors, server samples.
    pub details: serde_json::Value,
    /// A latency distribution (µs), when the scenario has one.
    pub latency: Option<Counts>,
}

/// A broker to measure in `sessiond`'s place, with the same load.
#[derive(Debug, Clone)]
pub enum Broker {
    /// mosquitto, over MQTT at `qos` (0 or 1).
    Mosquitto {
        /// The `mosquitto` binary.
        binary: PathBuf,
        /// QoS of every publish and subscription.
        qos: u8,
    },
    /// nats-server, over NATS's client protocol.
    Nats {
        /// The `nats-server` binary.
        binary: PathBuf,
    },
}

/// The coordinator: where the binaries are, how big to go, where to write.
#[derive(Debug)]
pub struct Bench {
    /// The `sessiond` binary.
    pub sessiond: PathBuf,
    /// Measure this broker instead of `sessiond`.
    pub broker: Option<Broker>,
    /// This binary (started again as workers).
    pub exe: PathBuf,
    /// Scenario sizes.
    pub sizes: Sizes,
    /// Where reports go.
    pub out_dir: PathBuf,
    /// Progress bars.
    pub progress: MultiProgress,
    /// The server's file-descriptor limit.
    pub nofile: u64,
    lane: AtomicU32,
    seed: u8,
}

/// A server and its workers for one run.
struct Rig {
    server: ServerProcess,
    workers: Vec<WorkerProc>,
    /// For the CPU the rest of the machine used meanwhile.
    started: Instant,
    busy_ticks: u64,
    coordinator_ns: u64,
    loadavg: f64,
}

/// Logins of one connect phase over several workers.
struct Logins {
    online: u64,
    failed: u64,
    wall_s: f64,
    latency: Latency,
    errors: BTreeMap<String, u64>,
}

const MB: f64 = 1024.0 * 1024.0;

/// Runs a blocking measurement (`what`, for errors) off the runtime.
async fn measure<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("{what}: {e}"))?
        .map_err(|e| format!("{what}: {e}"))
}

/// Most socket pairs of S3's and S1's floors ([`yardstick::delivery_floor`],
/// [`yardstick::login_floor`]): two descriptors each, in this process,
/// under a limit of 20,000.
const FLOOR_PAIRS: u64 = 9_000;

/// How long the bare heartbeats' pairs stay idle before their heartbeats:
/// longer than TCP's retransmission timeout (at least 200 ms), as S2cpu's
/// sessions are idle for 30 s, so that the kernel treats each heartbeat as
/// it does S2cpu's.
const BARE_HEARTBEATS_IDLE: Duration = Duration::from_secs(1);

/// Round trips per yardstick measurement (a few hundred milliseconds).
const YARDSTICK_ROUND_TRIPS: u32 = 10_000;

impl Bench {
    /// A coordinator.
    pub fn new(sessiond: PathBuf, exe: PathBuf, sizes: Sizes, out_dir: PathBuf) -> Self {
        Self {
            sessiond,
            broker: None,
            exe,
            sizes,
            out_dir,
            progress: MultiProgress::new(),
            nofile: 20_000,
            lane: AtomicU32::new(0),
            // Runs started close together (within TIME_WAIT) should not
            // share source addresses: spread them by pid.
            seed: (1 + std::process::id() % 250) as u8,
        }
    }

    /// Prints a line above the progress bars (or plainly when there are none).
    pub fn note(&self, line: &str) {
        if self.progress.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.progress.println(line);
        }
    }

    /// A fresh source address for worker `k` of a new rig:
    /// `127.<seed>.<lane>.<k + 1>`.
    fn sources(&self, workers: usize) -> Vec<IpAddr> {
        let lane = (self.lane.fetch_add(1, Ordering::Relaxed) % 250 + 1) as u8;
        (0..workers)
            .map(|k| IpAddr::V4(Ipv4Addr::new(127, self.seed, lane, (k + 1) as u8)))
            .collect()
    }

    async fn rig(&self, server_args: &[String], workers: usize) -> Result<Rig, String> {
        let started = Instant::now();
        let busy_ticks = procfs::machine_busy_ticks().unwrap_or(0);
        let coordinator_ns = procfs::cpu_ns(std::process::id()).unwrap_or(0);
        let loadavg = procfs::loadavg();
        let dir = self.out_dir.join("broker");
        let server = match &self.broker {
            Some(Broker::Mosquitto { binary, qos }) => {
                ServerProcess::start_mosquitto(binary, *qos, self.nofile, &dir).await?
            }
            Some(Broker::Nats { binary }) => {
                ServerProcess::start_nats(binary, self.nofile, &dir).await?
            }
            None => ServerProcess::start(&self.sessiond, self.nofile, server_args).await?,
        };
        let mut procs = Vec::with_capacity(workers);
        for (k, source) in self.sources(workers).into_iter().enumerate() {
            procs.push(WorkerProc::spawn(&self.exe, k, source, &server, 1_800)?);
        }
        // Let the server settle before any baseline is read.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Rig {
            server,
            workers: procs,
            started,
            busy_ticks,
            coordinator_ns,
            loadavg,
        })
    }

    fn workers_for(&self, sessions: u64) -> usize {
        sessions.div_ceil(self.sizes.per_worker).max(2) as usize
    }

    fn bar(&self, label: &str, len: u64) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new(len));
        let style = ProgressStyle::with_template(
            "  {prefix:<24} [{bar:30}] {pos:>7}/{len:7} {per_sec:>10} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar
    }

    /// Runs `work` while a bar follows the workers' progress (`pick` reads
    /// the relevant counter, summed over `workers`, minus `base`).
    async fn tracked<T>(
        &self,
        label: &str,
        len: u64,
        workers: &[&WorkerProc],
        pick: fn(&Counters) -> u64,
        work: impl Future<Output = T>,
    ) -> T {
        let sum = || workers.iter().map(|w| pick(&w.progress())).sum::<u64>();
        let base = sum();
        let bar = self.bar(label, len);
        tokio::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let out = loop {
            tokio::select! {
                out = &mut work => break out,
                _ = tick.tick() => bar.set_position(sum().saturating_sub(base).min(len)),
            }
        };
        bar.finish_and_clear();
        out
    }

    /// Waits `seconds` with a bar.
    async fn idle(&self, label: &str, seconds: u64) {
        let bar = self.bar(label, seconds);
        for s in 0..seconds {
            bar.set_position(s);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        bar.finish_and_clear();
    }

    /// Logs in `total` sessions (users `first..first + total`) spread over
    /// `workers`, with `self.sizes.in_flight` handshakes in flight in all.
    async fn login(
        &self,
        label: &str,
        workers: &[&WorkerProc],
        carrier: Carrier,
        first: u64,
        total: u64,
        heartbeat_ms: Option<u32>,
    ) -> Result<Logins, String> {
        let n = workers.len() as u64;
        let in_flight = self.sizes.in_flight.div_ceil(workers.len()).max(1);
        let timeout_ms = 60_000 + total * 5;
        let mut waits = Vec::new();
        let mut next = first;
        for (k, worker) in workers.iter().enumerate() {
            let count = total / n + u64::from((k as u64) < total % n);
            let rx = worker
                .send(Command::Connect {
                    carrier,
                    first: next,
                    count,
                    in_flight,
                    heartbeat_ms,
                    timeout_ms,
                })
                .await?;
            next += count;
            waits.push(WorkerProc::wait(
                worker.pid,
                rx,
                Duration::from_millis(timeout_ms + 10_000),
            ));
        }
        let replies = self
            .tracked(
                label,
                total,
                workers,
                |c| c.online + c.failed,
                futures_util::future::join_all(waits),
            )
            .await;
        let mut logins = Logins {
            online: 0,
            failed: 0,
            wall_s: 0.0,
            latency: latency(),
            errors: BTreeMap::new(),
        };
        let (mut start, mut end) = (u64::MAX, 0);
        for reply in replies {
            let Reply::Connected {
                online,
                failed,
                start_ns,
                end_ns,
                latency,
                errors,
            } = reply?
            else {
                return Err("unexpected reply to connect".into());
            };
            logins.online += online;
            logins.failed += failed;
            start = start.min(start_ns);
            end = end.max(end_ns);
            latency.add_to(&mut logins.latency);
            for (kind, count) in errors {
                *logins.errors.entry(kind).or_insert(0) += count;
            }
        }
        logins.wall_s = end.saturating_sub(start) as f64 / 1e9;
        Ok(logins)
    }

    async fn online(&self, workers: &[&WorkerProc]) -> Result<Counters, String> {
        let mut total = Counters::default();
        for worker in workers {
            match worker.call(Command::Stats, Duration::from_secs(10)).await? {
                Reply::Stats(c) => {
                    total.online += c.online;
                    total.failed += c.failed;
                    total.received += c.received;
                }
                _ => return Err("unexpected reply to stats".into()),
            }
        }
        Ok(total)
    }

    /// Runs one scenario once. A CPU-bound scenario first measures the
    /// machine's [`yardstick`] and also reports its server CPU in loopback
    /// round trips.
    pub async fn run(&self, scenario: Scenario) -> Result<RunResult, String> {
        if self.broker.is_some() && !scenario.applies_to_brokers() {
            return Err(format!("{} applies to sessiond only", scenario.name()));
        }
        let yardstick = match scenario {
            Scenario::S1 | Scenario::S2cpu | Scenario::S3 | Scenario::S4 => {
                Some(measure("yardstick", || yardstick::loopback(YARDSTICK_ROUND_TRIPS)).await?)
            }
            _ => None,
        };
        // Each floor holds at most 9,000 socket pairs: 18,000 descriptors in
        // this process.
        let login_floor = if scenario == Scenario::S1 {
            let sessions = self.sizes.s1.min(FLOOR_PAIRS) as usize;
            let in_flight = self.sizes.in_flight;
            Some(
                measure("login floor", move || {
                    yardstick::login_floor(sessions, in_flight)
                })
                .await?,
            )
        } else {
            None
        };
        let floor = if scenario == Scenario::S3 {
            let pairs = self.sizes.s3_receivers.min(FLOOR_PAIRS) as usize;
            let messages = self.sizes.s3_messages as usize;
            Some(measure("floor", move || yardstick::delivery_floor(pairs, messages)).await?)
        } else {
            None
        };
        let (steal_before, steal_since) = (procfs::machine_steal_ticks().ok(), Instant::now());
        let mut result = match scenario {
            Scenario::S1 => self.s1().await,
            Scenario::S2 => self.s2(Carrier::Tcp).await,
            Scenario::S2ws => self.s2(Carrier::Ws).await,
            Scenario::S2cpu => self.s2cpu().await,
            Scenario::S3 => self.s3(None).await,
            Scenario::S3lat => self.s3(Some(self.sizes.s3lat_rate)).await,
            Scenario::S4 => self.s4().await,
            Scenario::Sim => self.sim().await,
        }?;
        // The share of the machine's CPU time that the hypervisor gave to
        // others during the run: on a shared virtual machine, the CPU-bound
        // figures of a run with much of it are not comparable.
        if let (Some(before), Ok(after)) = (steal_before, procfs::machine_steal_ticks()) {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
            let ticks = procfs::clock_ticks_per_second() as f64;
            let wall = steal_since.elapsed().as_secs_f64().max(1e-9);
            let steal = after.saturating_sub(before) as f64 / ticks;
            result
                .figures
                .insert("steal_share".into(), steal / (wall * cpus));
        }
        if scenario == Scenario::S2cpu {
            // After the run, whose logins' spread the bare heartbeats
            // take.
            let pairs = self.sizes.s2cpu.min(FLOOR_PAIRS) as usize;
            let spread = result.figures.get("login_wall_s").copied().unwrap_or(0.5);
            let spread = Duration::from_secs_f64(spread.clamp(0.001, 60.0));
            let bare = measure("bare heartbeats", move || {
                yardstick::bare_heartbeats(pairs, spread, BARE_HEARTBEATS_IDLE)
            })
            .await?;
            let figures = &mut result.figures;
            // Each session's heartbeats in the window: one in the full
            // size (30 s in 35 s), two in the quick one (2 s in 4 s).
            let per_session = (self.sizes.s2cpu_window_s * 1000)
                .checked_div(u64::from(self.sizes.s2cpu_heartbeat_ms))
                .unwrap_or(0);
            let heartbeats = (self.sizes.s2cpu * per_session) as f64;
            let bare_cpu_s = bare.server_cpu_us * heartbeats / 1e6;
            figures.insert("bare_server_cpu_us".into(), bare.server_cpu_us);
            figures.insert("bare_client_cpu_us".into(), bare.client_cpu_us);
            figures.insert("bare_cpu_s".into(), bare_cpu_s);
            if let Some(&cpu_s) = figures.get("cpu_s").filter(|_| bare_cpu_s > 0.0) {
                figures.insert("times_bare".into(), cpu_s / bare_cpu_s);
            }
        }
        if let Some(floor) = login_floor {
            let figures = &mut result.figures;
            figures.insert("floor_logins_per_s".into(), floor.per_s);
            figures.insert("floor_login_p99_ms".into(), floor.p99_ms);
            if let Some(&rate) = figures.get("logins_per_s") {
                figures.insert("share_of_floor".into(), rate / floor.per_s);
            }
        }
        if let Some(floor) = floor {
            let figures = &mut result.figures;
            figures.insert("floor_per_s".into(), floor.per_s);
            figures.insert("floor_cpu_us".into(), floor.cpu_us);
            if let Some(&delivered) = figures.get("delivered_per_s") {
                figures.insert("share_of_floor".into(), delivered / floor.per_s);
            }
        }
        if let Some(yardstick) = yardstick {
            let rt_us = yardstick.round_trip_cpu_us;
            let figures = &mut result.figures;
            figures.insert("yardstick_rt_cpu_us".into(), rt_us);
            figures.insert("yardstick_rt_wall_us".into(), yardstick.round_trip_wall_us);
            // Server CPU per unit of work, in round trips.
            let per_unit = match scenario {
                Scenario::S1 => figures
                    .get("server_cpu_s")
                    .map(|cpu| (cpu, self.sizes.s1, "server_cpu_per_login_rt")),
                Scenario::S2cpu => figures
                    .get("cpu_s")
                    .map(|cpu| (cpu, self.sizes.s2cpu, "cpu_per_heartbeat_rt")),
                Scenario::S3 => figures
                    .get("server_cpu_s")
                    .map(|cpu| (cpu, self.sizes.s3_messages, "server_cpu_per_message_rt")),
                _ => None,
            };
            if let Some((&cpu_s, units, key)) = per_unit.filter(|_| rt_us > 0.0) {
                let per_unit_us = cpu_s * 1e6 / units.max(1) as f64;
                figures.insert(key.into(), per_unit_us / rt_us);
            }
        }
        Ok(result)
    }

    async fn finish(rig: Rig, details: &mut serde_json::Value) {
        let server_end = Sample::of(rig.server.pid).ok();
        let loadgen_cpu: f64 = rig.workers.iter().map(WorkerProc::cpu_seconds).sum();
        // What else ran on the machine meanwhile (other builds and tests
        // share these cores): busy time of all CPUs, less the server, the
        // workers and this process.
        let ticks = procfs::clock_ticks_per_second() as f64;
        let busy = procfs::machine_busy_ticks()
            .unwrap_or(0)
            .saturating_sub(rig.busy_ticks) as f64
            / ticks;
        let coordinator = procfs::cpu_ns(std::process::id())
            .unwrap_or(0)
            .saturating_sub(rig.coordinator_ns) as f64
            / 1e9;
        let server_cpu = server_end.map_or(0.0, |s| s.cpu_ns as f64 / 1e9);
        details["server_end"] = json!(server_end);
        details["server_log"] = json!(rig.server.log());
        details["loadgen_cpu_s"] = json!(loadgen_cpu);
        details["coordinator_cpu_s"] = json!(coordinator);
        details["machine"] = json!({
            "wall_s": rig.started.elapsed().as_secs_f64(),
            "busy_cpu_s": busy,
            "other_cpu_s": (busy - server_cpu - loadgen_cpu - coordinator).max(0.0),
            "loadavg_before": rig.loadavg,
            "loadavg_after": procfs::loadavg(),
        });
        details["sources"] = json!(
            rig.workers
                .iter()
                .map(|w| w.source.to_string())
                .collect::<Vec<_>>()
        );
        for worker in rig.workers {
            worker.finish().await;
        }
        rig.server.stop().await;
    }

    async fn s1(&self) -> Result<RunResult, String> {
        let n = self.sizes.s1;
        let rig = self.rig(&[], self.workers_for(n)).await?;
        let workers: Vec<&WorkerProc> = rig.workers.iter().collect();
        let before = procfs::tcp_ext().unwrap_or_default();
        let cpu_before = procfs::cpu_ns(rig.server.pid).unwrap_or(0);
        let logins = self
            .login("S1 login", &workers, Carrier::Tcp, 0, n, None)
            .await?;
        let cpu = procfs::cpu_ns(rig.server.pid).unwrap_or(0) - cpu_before;
        let after = procfs::tcp_ext().unwrap_or_default();
        let delta = |key: &str| {
            after.get(key).copied().unwrap_or(0) as f64
                - before.get(key).copied().unwrap_or(0) as f64
        };
        let p = Percentiles::of(&logins.latency);
        let mut figures = BTreeMap::new();
        figures.insert("logins_per_s".into(), logins.online as f64 / logins.wall_s);
        figures.insert("login_p50_ms".into(), p.p50_ms);
        figures.insert("login_p99_ms".into(), p.p99_ms);
        figures.insert("login_p999_ms".into(), p.p999_ms);
        figures.insert("failed".into(), logins.failed as f64);
        figures.insert("listen_drops".into(), delta("ListenDrops"));
        figures.insert("listen_overflows".into(), delta("ListenOverflows"));
        figures.insert("server_cpu_s".into(), cpu as f64 / 1e9);
        let mut details = json!({
            "sessions": n,
            "online": logins.online,
            "listen_backlog": procfs::listen_backlog(rig.server.tcp),
            "wall_s": logins.wall_s,
            "login_latency": p,
            "errors": logins.errors,
            "tcp_ext_delta": {
                "ListenDrops": delta("ListenDrops"),
                "ListenOverflows": delta("ListenOverflows"),
                "TCPReqQFullDrop": delta("TCPReqQFullDrop"),
                "TCPReqQFullDoCookies": delta("TCPReqQFullDoCookies"),
                "SyncookiesSent": delta("SyncookiesSent"),
            },
        });
        let counts = Counts::of(&logins.latency);
        Self::finish(rig, &mut details).await;
        Ok(RunResult {
            scenario: Scenario::S1,
            figures,
            details,
            latency: Some(counts),
        })
    }

    async fn s2(&self, carrier: Carrier) -> Result<RunResult, String> {
        let points = self.sizes.s2.clone();
        let last = points.last().copied().unwrap_or(0);
        let rig = self.rig(&[], self.workers_for(last)).await?;
        let workers: Vec<&WorkerProc> = rig.workers.iter().collect();
        let base = Sample::of(rig.server.pid).map_err(|e| e.to_string())?;
        let (tag, name) = match carrier {
            Carrier::Tcp => ("S2", Scenario::S2),
            Carrier::Ws => ("S2ws", Scenario::S2ws),
        };
        let mut figures = BTreeMap::new();
        let mut samples = Vec::new();
        let mut done = 0;
        let mut errors = BTreeMap::new();
        for &n in &points {
            let logins = self
                .login(
                    &format!("{tag} login to {n}"),
                    &workers,
                    carrier,
                    done,
                    n - done,
                    None,
                )
                .await?;
            errors.extend(logins.errors);
            done = n;
            // Let transient buffers go before reading.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let sample = Sample::of(rig.server.pid).map_err(|e| e.to_string())?;
            let online = self.online(&workers).await?.online;
            let per = (sample.rss_bytes as f64 - base.rss_bytes as f64) / online.max(1) as f64;
            figures.insert(format!("rss_per_session_{n}"), per);
            figures.insert(format!("online_{n}"), online as f64);
            samples.push(json!({
                "sessions": n,
                "online": online,
                "rss_bytes": sample.rss_bytes,
                "rss_mb": sample.rss_bytes as f64 / MB,
                "fds": sample.fds,
                "rss_per_session": per,
            }));
        }
        let mut details = json!({
            "carrier": carrier,
            "baseline": base,
            "points": samples,
            "errors": errors,
        });
        Self::finish(rig, &mut details).await;
        Ok(RunResult {
            scenario: name,
            figures,
            details,
            latency: None,
        })
    }

    async fn s2cpu(&self) -> Result<RunResult, String> {
        let n = self.sizes.s2cpu;
        let heartbeat = self.sizes.s2cpu_heartbeat_ms.to_string();
        let args = ["--heartbeat-ms".to_owned(), heartbeat];
        let rig = self.rig(&args, self.workers_for(n)).await?;
        let workers: Vec<&WorkerProc> = rig.workers.iter().collect();
        // An MQTT or NATS client chooses its keep-alive; sessiond chooses
        // the heartbeat it answers.
        let keep_alive = self.broker.as_ref().map(|_| self.sizes.s2cpu_heartbeat_ms);
        let logins = self
            .login("S2cpu login", &workers, Carrier::Tcp, 0, n, keep_alive)
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = rig.server.pid;
        let before = Sample::of(pid).map_err(|e| e.to_string())?;
        let loadgen_before: f64 = rig.workers.iter().map(WorkerProc::cpu_seconds).sum();
        let window = self.sizes.s2cpu_window_s;
        self.idle(&format!("S2cpu idle {window} s"), window).await;
        let after = Sample::of(pid).map_err(|e| e.to_string())?;
        let loadgen_after: f64 = rig.workers.iter().map(WorkerProc::cpu_seconds).sum();
        let online = self.online(&workers).await?;
        let ticks = procfs::clock_ticks_per_second() as f64;
        let cpu_s = (after.cpu_ns - before.cpu_ns) as f64 / 1e9;
        let mut figures = BTreeMap::new();
        figures.insert("cpu_s".into(), cpu_s);
        figures.insert(
            "cpu_ticks_s".into(),
            (after.cpu_ticks - before.cpu_ticks) as f64 / ticks,
        );
        figures.insert("online".into(), online.online as f64);
        // The heartbeats in the window follow the logins' spread.
        figures.insert("login_wall_s".into(), logins.wall_s);
        let mut details = json!({
            "sessions": n,
            "logged_in": logins.online,
            "online_at_end": online.online,
            "failed": online.failed,
            "window_s": window,
            "heartbeat_ms": self.sizes.s2cpu_heartbeat_ms,
            "before": before,
            "after": after,
            "loadgen_cpu_in_window_s": loadgen_after - loadgen_before,
            "errors": logins.errors,
        });
        Self::finish(rig, &mut details).await;
        Ok(RunResult {
            scenario: Scenario::S2cpu,
            figures,
            details,
            latency: None,
        })
    }

    async fn s3(&self, rate: Option<f64>) -> Result<RunResult, String> {
        let receivers = self.sizes.s3_receivers;
        let messages = self.sizes.s3_messages;
        let receiver_workers = self.workers_for(receivers);
        let rig = self.rig(&[], receiver_workers + 1).await?;
        let (recv, publisher) = rig.workers.split_at(receiver_workers);
        let recv: Vec<&WorkerProc> = recv.iter().collect();
        let publisher = &publisher[0];
        let tag = if rate.is_some() { "S3lat" } else { "S3" };
        let logins = self
            .login(
                &format!("{tag} login"),
                &recv,
                Carrier::Tcp,
                0,
                receivers,
                None,
            )
            .await?;
        if logins.online < receivers {
            return Err(format!(
                "{tag}: only {} of {receivers} receivers online: {:?}",
                logins.online, logins.errors
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;

        // Which users each receiving worker holds, so how many events each
        // should see: user u gets messages u, u + R, u + 2R, ...
        let n = recv.len() as u64;
        let per_user = |u: u64| messages / receivers + u64::from(u < messages % receivers);
        let expected_of = |k: u64| {
            let first: u64 = (0..k)
                .map(|j| receivers / n + u64::from(j < receivers % n))
                .sum();
            let count = receivers / n + u64::from(k < receivers % n);
            (first..first + count).map(per_user).sum::<u64>()
        };
        let run_s = rate.map_or(60.0, |r| messages as f64 / r + 30.0);
        let timeout_ms = (run_s * 1000.0) as u64;
        let mut waits = Vec::new();
        for (k, worker) in recv.iter().enumerate() {
            let rx = worker
                .send(Command::Expect {
                    total: expected_of(k as u64),
                    timeout_ms,
                })
                .await?;
            waits.push(WorkerProc::wait(
                worker.pid,
                rx,
                Duration::from_millis(timeout_ms + 10_000),
            ));
        }
        let cpu_before = procfs::cpu_ns(rig.server.pid).unwrap_or(0);
        let publish = publisher.call(
            Command::Publish {
                sessions: self.sizes.s3_publishers,
                total: messages,
                targets: receivers,
                body_len: self.sizes.body_len,
                rate,
                window: 128,
                timeout_ms,
            },
            Duration::from_millis(timeout_ms + 10_000),
        );
        let all = async {
            let (published, received) =
                tokio::join!(publish, futures_util::future::join_all(waits));
            (published, received)
        };
        let (published, received) = self
            .tracked(
                &format!("{tag} deliver"),
                messages,
                &recv,
                |c| c.received,
                all,
            )
            .await;
        let cpu = procfs::cpu_ns(rig.server.pid).unwrap_or(0) - cpu_before;
        let Reply::Published {
            sent,
            delivered_ok,
            failed,
            start_ns,
            end_ns,
            errors,
        } = published?
        else {
            return Err("unexpected reply to publish".into());
        };
        let mut total_received = 0;
        let mut last = 0;
        let mut hist = latency();
        let mut taken_hist = latency();
        for reply in received {
            let Reply::Received {
                received,
                last_ns,
                latency,
                taken_latency,
                ..
            } = reply?
            else {
                return Err("unexpected reply to expect".into());
            };
            total_received += received;
            last = last.max(last_ns);
            latency.add_to(&mut hist);
            taken_latency.add_to(&mut taken_hist);
        }
        let wall_s = last.saturating_sub(start_ns) as f64 / 1e9;
        let p = Percentiles::of(&hist);
        let mut figures = BTreeMap::new();
        figures.insert("delivered_per_s".into(), total_received as f64 / wall_s);
        figures.insert(
            "lost".into(),
            messages.saturating_sub(total_received) as f64,
        );
        figures.insert("publish_failed".into(), failed as f64);
        figures.insert("latency_p50_ms".into(), p.p50_ms);
        figures.insert("latency_p99_ms".into(), p.p99_ms);
        figures.insert("latency_p999_ms".into(), p.p999_ms);
        figures.insert("server_cpu_s".into(), cpu as f64 / 1e9);
        let taken = Percentiles::of(&taken_hist);
        if rate.is_some() {
            let send_s = end_ns.saturating_sub(start_ns) as f64 / 1e9;
            figures.insert("offered_per_s".into(), sent as f64 / send_s);
            figures.insert("sent_latency_p50_ms".into(), taken.p50_ms);
            figures.insert("sent_latency_p99_ms".into(), taken.p99_ms);
        }
        let mut details = json!({
            "receivers": receivers,
            "messages": messages,
            "rate": rate,
            "publishers": self.sizes.s3_publishers,
            "sent": sent,
            "delivered_ok": delivered_ok,
            "received": total_received,
            "wall_s": wall_s,
            "publish_errors": errors,
            "latency": p,
            "latency_from_sending": taken,
            "login_errors": logins.errors,
            "started_ns": start_ns,
            "now_ns": unix_ns(),
        });
        let counts = Counts::of(&hist);
        Self::finish(rig, &mut details).await;
        Ok(RunResult {
            scenario: if rate.is_some() {
                Scenario::S3lat
            } else {
                Scenario::S3
            },
            figures,
            details,
            latency: Some(counts),
        })
    }

    async fn s4(&self) -> Result<RunResult, String> {
        let n = self.sizes.s4;
        let rig = self.rig(&[], self.workers_for(n)).await?;
        let workers: Vec<&WorkerProc> = rig.workers.iter().collect();
        let pid = rig.server.pid;
        let base_fds = procfs::fd_count(pid).map_err(|e| e.to_string())?;
        let logins = self
            .login("S4 login", &workers, Carrier::Tcp, 0, n, None)
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let loaded_fds = procfs::fd_count(pid).map_err(|e| e.to_string())?;

        // Every worker exits at once: the kernel closes their sockets, with
        // no per-session work in the load generator.
        let started = Instant::now();
        let pids: Vec<u32> = workers.iter().map(|w| w.pid).collect();
        for worker in &workers {
            // The answer comes just before the exit; not waited for.
            drop(worker.send(Command::Exit).await?);
        }
        // Poll off the runtime, at sub-millisecond steps.
        let watch = tokio::task::spawn_blocking(move || {
            let limit = Duration::from_secs(30);
            let mut polls = 0u64;
            let mut clients_gone = None;
            loop {
                let fds = procfs::fd_count(pid).unwrap_or(0);
                polls += 1;
                if clients_gone.is_none() && pids.iter().all(|&p| procfs::exited(p)) {
                    clients_gone = Some(started.elapsed());
                }
                if fds <= base_fds || started.elapsed() > limit {
                    return (started.elapsed(), clients_gone, fds, polls);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        let (elapsed, clients_gone, fds_left, polls) = watch.await.map_err(|e| e.to_string())?;
        if fds_left > base_fds {
            return Err(format!(
                "S4: the server still had {fds_left} descriptors (baseline {base_fds}) after 30 s"
            ));
        }
        let mut figures = BTreeMap::new();
        figures.insert("close_s".into(), elapsed.as_secs_f64());
        if let Some(gone) = clients_gone {
            figures.insert("clients_closed_s".into(), gone.as_secs_f64());
        }
        let mut details = json!({
            "sessions": n,
            "online": logins.online,
            "base_fds": base_fds,
            "loaded_fds": loaded_fds,
            "polls": polls,
            "errors": logins.errors,
        });
        Self::finish(rig, &mut details).await;
        Ok(RunResult {
            scenario: Scenario::S4,
            figures,
            details,
            latency: None,
        })
    }

    /// The simulation runs in its own process, so that its memory is its own.
    async fn sim(&self) -> Result<RunResult, String> {
        let sizes: Vec<String> = self.sizes.sim.iter().map(u64::to_string).collect();
        let bar = self.bar("sim", 1);
        bar.enable_steady_tick(Duration::from_millis(200));
        let output = tokio::process::Command::new(&self.exe)
            .arg("sim")
            .arg("--json")
            .arg("--sizes")
            .arg(sizes.join(","))
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run the simulation: {e}"))?;
        bar.finish_and_clear();
        if !output.status.success() {
            return Err(format!("simulation failed ({})", output.status));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text
            .lines()
            .last()
            .ok_or("the simulation printed nothing")?;
        serde_json::from_str(line).map_err(|e| format!("simulation output: {e}"))
    }
}

/// The simulation at each size, as a [`RunResult`].
pub fn sim_result(sizes: &[u64], tick: &mut dyn FnMut(u64, u64, u64)) -> Result<RunResult, String> {
    let mut figures = BTreeMap::new();
    let mut points = Vec::new();
    for &n in sizes {
        let point = crate::sim::simulate(n, |done, total| tick(n, done, total))?;
        figures.insert(format!("bytes_per_session_{n}"), point.bytes_per_session);
        figures.insert(
            format!("rss_bytes_per_session_{n}"),
            point.rss_bytes_per_session,
        );
        figures.insert(format!("login_ns_{n}"), point.login_ns);
        figures.insert(format!("heartbeat_ns_{n}"), point.heartbeat_ns);
        figures.insert(format!("heartbeat_seq_ns_{n}"), point.heartbeat_seq_ns);
        figures.insert(
            format!("allocs_per_heartbeat_{n}"),
            point.allocs_per_heartbeat,
        );
        figures.insert(format!("allocs_per_expiry_{n}"), point.allocs_per_expiry);
        figures.insert(format!("expiry_ns_{n}"), point.expiry_ns);
        points.push(point);
    }
    Ok(RunResult {
        scenario: Scenario::Sim,
        figures,
        details: json!({ "points": points }),
        latency: None,
    })
}
