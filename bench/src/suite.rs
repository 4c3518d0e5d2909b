//! Runs scenarios several times, and reports each figure's median, min and
//! max next to its target: a table on stdout, `load.json`, and SVG plots of
//! the latency distributions.

use std::fmt::Write as _;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::scenario::{Bench, Broker, RunResult, Scenario, Sizes};
use crate::stats::{Latency, Summary, latency};

/// What a figure should be.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// At least this.
    AtLeast(f64),
    /// At most this.
    AtMost(f64),
    /// No target: context.
    Info,
}

impl Goal {
    /// Whether `value` meets the goal (`None` for [`Goal::Info`]).
    ///
    /// ```
    /// use session_bench::suite::Goal;
    /// assert_eq!(Goal::AtMost(640.0).met(600.0), Some(true));
    /// assert_eq!(Goal::AtLeast(25_000.0).met(17_100.0), Some(false));
    /// assert_eq!(Goal::Info.met(1.0), None);
    /// ```
    pub fn met(self, value: f64) -> Option<bool> {
        match self {
            Self::AtLeast(t) => Some(value >= t),
            Self::AtMost(t) => Some(value <= t),
            Self::Info => None,
        }
    }

    fn text(self) -> String {
        match self {
            Self::AtLeast(t) => format!(">= {}", human(t)),
            Self::AtMost(t) => format!("<= {}", human(t)),
            Self::Info => String::new(),
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The scenario.
    pub scenario: Scenario,
    /// The figure's key in [`RunResult::figures`].
    pub key: String,
    /// What it is, for people.
    pub label: String,
    /// Its target.
    pub goal: Goal,
}

fn row(scenario: Scenario, key: impl Into<String>, label: impl Into<String>, goal: Goal) -> Row {
    Row {
        scenario,
        key: key.into(),
        label: label.into(),
        goal,
    }
}

/// The rows of the report for these sizes, targets from the issue.
pub fn rows(sizes: &Sizes) -> Vec<Row> {
    use Goal::{AtLeast, AtMost, Info};
    use Scenario::*;
    let mut rows = vec![
        row(
            S1,
            "logins_per_s",
            format!("S1 logins/s ({} sessions)", sizes.s1),
            AtLeast(25_000.0),
        ),
        row(S1, "login_p50_ms", "S1 login latency p50 (ms)", Info),
        row(
            S1,
            "login_p99_ms",
            "S1 login latency p99 (ms)",
            AtMost(20.0),
        ),
        row(S1, "login_p999_ms", "S1 login latency p99.9 (ms)", Info),
        row(
            S1,
            "listen_drops",
            "S1 SYNs dropped (ListenDrops)",
            AtMost(0.0),
        ),
        row(
            S1,
            "listen_overflows",
            "S1 accept queue overflows",
            AtMost(0.0),
        ),
        row(S1, "failed", "S1 failed logins", AtMost(0.0)),
        row(S1, "server_cpu_s", "S1 server CPU (s)", Info),
        row(
            S1,
            "server_cpu_per_login_rt",
            "S1 server CPU per login (round trips)",
            Info,
        ),
        row(
            S1,
            "yardstick_rt_cpu_us",
            "S1 yardstick: round trip CPU (us)",
            Info,
        ),
        row(
            S1,
            "floor_logins_per_s",
            "S1 floor: bare loopback logins/s",
            Info,
        ),
        row(
            S1,
            "floor_login_p99_ms",
            "S1 floor: login latency p99 (ms)",
            Info,
        ),
        row(S1, "share_of_floor", "S1 logins/s over its floor", Info),
        row(
            S1,
            "steal_share",
            "S1 steal: CPU taken by the host (share)",
            Info,
        ),
    ];
    for &n in &sizes.s2 {
        rows.push(row(
            S2,
            format!("rss_per_session_{n}"),
            format!("S2 TCP RSS growth/session at {n} (B)"),
            AtMost(640.0),
        ));
    }
    for &n in &sizes.s2 {
        rows.push(row(
            S2ws,
            format!("rss_per_session_{n}"),
            format!("S2 WS RSS growth/session at {n} (B)"),
            AtMost(2048.0),
        ));
    }
    rows.extend([
        row(
            S2cpu,
            "cpu_s",
            format!(
                "S2 CPU, {} idle for {} s (s)",
                sizes.s2cpu, sizes.s2cpu_window_s
            ),
            AtMost(0.10),
        ),
        row(S2cpu, "cpu_ticks_s", "S2 CPU, from utime+stime (s)", Info),
        row(
            S2cpu,
            "cpu_per_heartbeat_rt",
            "S2 CPU per heartbeat (round trips)",
            Info,
        ),
        row(
            S2cpu,
            "yardstick_rt_cpu_us",
            "S2 yardstick: round trip CPU (us)",
            Info,
        ),
        row(S2cpu, "bare_cpu_s", "S2 bare loop: server CPU (s)", Info),
        row(S2cpu, "times_bare", "S2 CPU over the bare loop's", Info),
        row(
            S2cpu,
            "steal_share",
            "S2 steal: CPU taken by the host (share)",
            Info,
        ),
        row(
            S3,
            "delivered_per_s",
            format!(
                "S3 delivered/s ({} msgs to {})",
                sizes.s3_messages, sizes.s3_receivers
            ),
            AtLeast(190_000.0),
        ),
        row(S3, "lost", "S3 messages not delivered", AtMost(0.0)),
        row(
            S3,
            "latency_p99_ms",
            "S3 latency p99, unthrottled (ms)",
            Info,
        ),
        row(S3, "server_cpu_s", "S3 server CPU (s)", Info),
        row(
            S3,
            "server_cpu_per_message_rt",
            "S3 server CPU per message (round trips)",
            Info,
        ),
        row(
            S3,
            "yardstick_rt_cpu_us",
            "S3 yardstick: round trip CPU (us)",
            Info,
        ),
        row(
            S3,
            "floor_per_s",
            "S3 floor: bare loopback deliveries/s",
            Info,
        ),
        row(S3, "share_of_floor", "S3 delivered/s over its floor", Info),
        row(
            S3,
            "steal_share",
            "S3 steal: CPU taken by the host (share)",
            Info,
        ),
        row(
            S3lat,
            "latency_p50_ms",
            format!("S3 at {}/s: latency p50 (ms)", human(sizes.s3lat_rate)),
            Info,
        ),
        row(
            S3lat,
            "latency_p99_ms",
            format!("S3 at {}/s: latency p99 (ms)", human(sizes.s3lat_rate)),
            AtMost(1.5),
        ),
        row(
            S3lat,
            "latency_p999_ms",
            format!("S3 at {}/s: latency p99.9 (ms)", human(sizes.s3lat_rate)),
            Info,
        ),
        row(
            S3lat,
            "sent_latency_p50_ms",
            "S3 paced: from the send, p50 (ms)",
            Info,
        ),
        row(
            S3lat,
            "sent_latency_p99_ms",
            "S3 paced: from the send, p99 (ms)",
            Info,
        ),
        row(
            S3lat,
            "offered_per_s",
            "S3 paced: rate achieved (msg/s)",
            Info,
        ),
        row(
            S3lat,
            "lost",
            "S3 paced: messages not delivered",
            AtMost(0.0),
        ),
        row(
            S3lat,
            "steal_share",
            "S3 paced steal: CPU taken by the host (share)",
            Info,
        ),
        row(
            S4,
            "close_s",
            format!("S4 all {} closed by the server (s)", sizes.s4),
            AtMost(0.19),
        ),
        row(S4, "clients_closed_s", "S4 client processes gone (s)", Info),
        row(
            S4,
            "yardstick_rt_wall_us",
            "S4 yardstick: round trip wall time (us)",
            Info,
        ),
        row(
            S4,
            "steal_share",
            "S4 steal: CPU taken by the host (share)",
            Info,
        ),
    ]);
    for &n in &sizes.sim {
        rows.push(row(
            Sim,
            format!("bytes_per_session_{n}"),
            format!("sim {n}: bytes/session (inline+heap)"),
            Info,
        ));
        rows.push(row(
            Sim,
            format!("rss_bytes_per_session_{n}"),
            format!("sim {n}: RSS growth/session (B)"),
            Info,
        ));
        rows.push(row(
            Sim,
            format!("login_ns_{n}"),
            format!("sim {n}: ns per login"),
            Info,
        ));
        rows.push(row(
            Sim,
            format!("heartbeat_ns_{n}"),
            format!("sim {n}: ns per heartbeat, random order"),
            Info,
        ));
        rows.push(row(
            Sim,
            format!("heartbeat_seq_ns_{n}"),
            format!("sim {n}: ns per heartbeat, in index order"),
            Info,
        ));
        rows.push(row(
            Sim,
            format!("allocs_per_heartbeat_{n}"),
            format!("sim {n}: allocations per heartbeat"),
            Info,
        ));
        rows.push(row(
            Sim,
            format!("expiry_ns_{n}"),
            format!("sim {n}: ns per expiry"),
            Info,
        ));
        rows.push(row(
            Sim,
            format!("allocs_per_expiry_{n}"),
            format!("sim {n}: allocations per expiry"),
            Info,
        ));
    }
    rows
}

/// A number for people: thousands separated, a few significant digits.
///
/// ```
/// use session_bench::suite::human;
/// assert_eq!(human(25_000.0), "25,000");
/// assert_eq!(human(0.1234), "0.123");
/// assert_eq!(human(19.04), "19.0");
/// ```
pub fn human(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 1000.0 {
        let mut digits = format!("{:.0}", a);
        let mut out = String::new();
        while digits.len() > 3 {
            let tail = digits.split_off(digits.len() - 3);
            out = format!(",{tail}{out}");
        }
        format!("{}{digits}{out}", if v < 0.0 { "-" } else { "" })
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// One run's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Which run (1-based).
    pub run: usize,
    /// Which scenario.
    pub scenario: Scenario,
    /// Seconds it took.
    pub seconds: f64,
    /// The result, or why it failed.
    pub result: Result<RunResult, String>,
}

/// One figure over all runs.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The row.
    #[serde(flatten)]
    pub row: Row,
    /// Median, min, max over the runs that produced it.
    pub summary: Option<Summary>,
    /// Every run's value.
    pub values: Vec<f64>,
    /// Whether the median meets the target.
    pub met: Option<bool>,
}

/// Summarises the records.
pub fn summarise(sizes: &Sizes, records: &[RunRecord]) -> Vec<Line> {
    rows(sizes)
        .into_iter()
        .filter(|row| records.iter().any(|r| r.scenario == row.scenario))
        .map(|row| {
            let values: Vec<f64> = records
                .iter()
                .filter(|r| r.scenario == row.scenario)
                .filter_map(|r| r.result.as_ref().ok())
                .filter_map(|r| r.figures.get(&row.key).copied())
                .collect();
            let summary = Summary::of(&values);
            let met = summary.and_then(|s| row.goal.met(s.median));
            Line {
                row,
                summary,
                values,
                met,
            }
        })
        .collect()
}

/// The table, as text.
pub fn table(lines: &[Line]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<46} {:>10} {:>10} {:>10} {:>10}  met",
        "figure", "median", "min", "max", "target"
    );
    for line in lines {
        let (median, min, max) = match line.summary {
            Some(sum) => (human(sum.median), human(sum.min), human(sum.max)),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let met = match line.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        let _ = writeln!(
            s,
            "{:<46} {:>10} {:>10} {:>10} {:>10}  {met}",
            line.row.label,
            median,
            min,
            max,
            line.row.goal.text()
        );
    }
    s
}

/// Runs `scenarios` `runs` times (runs outside, scenarios inside, so slow
/// drifts of the machine spread over all scenarios), writes `load.json` and
/// the plots into `bench.out_dir` as it goes, and returns the records.
pub async fn run(
    bench: &Bench,
    scenarios: &[Scenario],
    runs: usize,
    command: &str,
) -> Result<Vec<RunRecord>, String> {
    std::fs::create_dir_all(&bench.out_dir)
        .map_err(|e| format!("create {}: {e}", bench.out_dir.display()))?;
    let total = (scenarios.len() * runs) as u64;
    let bar = bench.progress.add(ProgressBar::new(total));
    bar.set_style(
        ProgressStyle::with_template("{prefix:<26} [{bar:30}] {pos}/{len} runs {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut records = Vec::new();
    for run in 1..=runs {
        for &scenario in scenarios {
            bar.set_prefix(format!("run {run}/{runs}: {}", scenario.name()));
            let started = std::time::Instant::now();
            let result = bench.run(scenario).await;
            let seconds = started.elapsed().as_secs_f64();
            bench.note(&match &result {
                Ok(r) => format!(
                    "run {run} {:<6} {:>6.1} s  {}",
                    scenario.name(),
                    seconds,
                    brief(r)
                ),
                Err(e) => format!(
                    "run {run} {:<6} FAILED after {seconds:.1} s: {e}",
                    scenario.name()
                ),
            });
            records.push(RunRecord {
                run,
                scenario,
                seconds,
                result,
            });
            bar.inc(1);
            write_report(bench, &records, command)?;
        }
    }
    bar.finish_and_clear();
    Ok(records)
}

fn brief(r: &RunResult) -> String {
    let mut text = r
        .figures
        .iter()
        .filter(|(k, _)| !k.starts_with("online"))
        .map(|(k, v)| format!("{k}={}", human(*v)))
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(other) = r.details["machine"]["other_cpu_s"].as_f64() {
        let _ = write!(text, " [other processes: {other:.1} cpu-s]");
    }
    text
}

/// The records and sizes of a `load.json`, to report again (a new table
/// and new plots) without running anything.
pub fn read_report(path: &Path) -> Result<(Sizes, Vec<RunRecord>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let sizes = serde_json::from_value(report["sizes"].clone())
        .map_err(|e| format!("{}: sizes: {e}", path.display()))?;
    let records = serde_json::from_value(report["runs"].clone())
        .map_err(|e| format!("{}: runs: {e}", path.display()))?;
    Ok((sizes, records))
}

/// Writes the latency plots of `records` into `dir`.
pub fn write_plots(dir: &Path, records: &[RunRecord]) -> Result<(), String> {
    for (scenario, file, title) in [
        (Scenario::S1, "s1-login.svg", "S1: connect + login latency"),
        (Scenario::S3, "s3.svg", "S3 unthrottled: end-to-end latency"),
        (Scenario::S3lat, "s3lat.svg", "S3 paced: end-to-end latency"),
    ] {
        plot(&dir.join(file), title, records, scenario)?;
    }
    Ok(())
}

/// Writes `load.json` and the latency plots.
pub fn write_report(bench: &Bench, records: &[RunRecord], command: &str) -> Result<(), String> {
    let lines = summarise(&bench.sizes, records);
    let report = json!({
        "command": command,
        "sizes": bench.sizes,
        "machine": machine(),
        "summary": lines,
        "runs": records,
    });
    let path = bench.out_dir.join("load.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    write_plots(&bench.out_dir, records)
}

fn plot(path: &Path, title: &str, records: &[RunRecord], scenario: Scenario) -> Result<(), String> {
    let series: Vec<(String, Latency)> = records
        .iter()
        .filter(|r| r.scenario == scenario)
        .filter_map(|r| {
            let counts = r.result.as_ref().ok()?.latency.as_ref()?;
            let mut h = latency();
            counts.add_to(&mut h);
            Some((format!("run {}", r.run), h))
        })
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    let refs: Vec<(String, &Latency)> = series.iter().map(|(n, h)| (n.clone(), h)).collect();
    crate::plot::write_percentiles(path, title, &refs)
}

fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("")
        .to_owned();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_owned())
    };
    json!({
        "git_head": git(&["rev-parse", "HEAD"]),
        // Uncommitted changes to what is measured, if any.
        "git_dirty": git(&[
            "status",
            "--porcelain",
            "--",
            "proto",
            "session-core",
            "session-transport",
            "session-server",
        ])
        .map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "mem_total_kb": crate::procfs::parse_status_kb(&read("/proc/meminfo"), "MemTotal:"),
    })
}

/// One server of a comparison: `sessiond` (no broker) or a broker.
#[derive(Debug, Clone)]
pub struct Contender {
    /// Its column's heading: `sessiond`, `mosquitto-qos0`, `nats-server`.
    pub name: String,
    /// The broker, or `None` for `sessiond`.
    pub broker: Option<Broker>,
}

impl Contender {
    /// `sessiond` and the brokers given, each MQTT QoS a contender of its
    /// own.
    pub fn all(mosquitto: Option<&Path>, qos: &[u8], nats_server: Option<&Path>) -> Vec<Contender> {
        let mut all = vec![Contender {
            name: "sessiond".into(),
            broker: None,
        }];
        if let Some(binary) = mosquitto {
            for &qos in qos {
                all.push(Contender {
                    name: format!("mosquitto-qos{qos}"),
                    broker: Some(Broker::Mosquitto {
                        binary: binary.to_owned(),
                        qos,
                    }),
                });
            }
        }
        if let Some(binary) = nats_server {
            all.push(Contender {
                name: "nats-server".into(),
                broker: Some(Broker::Nats {
                    binary: binary.to_owned(),
                }),
            });
        }
        all
    }
}

/// A comparison's figures: for each figure, each contender's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The row.
    #[serde(flatten)]
    pub row: Row,
    /// By contender, in order: median, min, max over its runs.
    pub summaries: Vec<Option<Summary>>,
    /// `sessiond`'s median over the best broker's, for figures with a
    /// target (best: the highest for "at least", the lowest for "at
    /// most").
    pub ratio_to_best: Option<f64>,
}

/// Runs `scenarios` against every contender, `rounds` times: in each
/// round each contender runs each scenario once, in turn, so that a slow
/// spell of the machine falls on all of them. Writes `compare.json` into
/// `bench.out_dir` as it goes; returns each contender's records.
pub async fn compare(
    bench: &mut Bench,
    contenders: &[Contender],
    scenarios: &[Scenario],
    rounds: usize,
    command: &str,
) -> Result<Vec<Vec<RunRecord>>, String> {
    std::fs::create_dir_all(&bench.out_dir)
        .map_err(|e| format!("create {}: {e}", bench.out_dir.display()))?;
    let total = (scenarios.len() * rounds * contenders.len()) as u64;
    let bar = bench.progress.add(ProgressBar::new(total));
    bar.set_style(
        ProgressStyle::with_template("{prefix:<40} [{bar:30}] {pos}/{len} runs {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut records: Vec<Vec<RunRecord>> = vec![Vec::new(); contenders.len()];
    for run in 1..=rounds {
        for (c, contender) in contenders.iter().enumerate() {
            bench.broker = contender.broker.clone();
            for &scenario in scenarios {
                bar.set_prefix(format!(
                    "round {run}/{rounds}: {} {}",
                    contender.name,
                    scenario.name()
                ));
                let started = std::time::Instant::now();
                let result = bench.run(scenario).await;
                let seconds = started.elapsed().as_secs_f64();
                bench.note(&match &result {
                    Ok(r) => format!(
                        "round {run} {:<16} {:<6} {:>6.1} s  {}",
                        contender.name,
                        scenario.name(),
                        seconds,
                        brief(r)
                    ),
                    Err(e) => format!(
                        "round {run} {:<16} {:<6} FAILED after {seconds:.1} s: {e}",
                        contender.name,
                        scenario.name()
                    ),
                });
                records[c].push(RunRecord {
                    run,
                    scenario,
                    seconds,
                    result,
                });
                bar.inc(1);
                write_comparison(bench, contenders, &records, command)?;
            }
        }
    }
    bench.broker = None;
    bar.finish_and_clear();
    Ok(records)
}

/// Each figure, side by side over the contenders (the first is
/// `sessiond`).
pub fn comparisons(sizes: &Sizes, records: &[Vec<RunRecord>]) -> Vec<Comparison> {
    let per: Vec<Vec<Line>> = records.iter().map(|r| summarise(sizes, r)).collect();
    let Some(first) = per.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let summaries: Vec<Option<Summary>> = per
                .iter()
                .map(|lines| lines.get(i).and_then(|l| l.summary))
                .collect();
            let ours = summaries.first().copied().flatten().map(|s| s.median);
            let brokers = summaries.iter().skip(1).flatten().map(|s| s.median);
            let best = match line.row.goal {
                Goal::AtLeast(_) => brokers.reduce(f64::max),
                Goal::AtMost(_) => brokers.reduce(f64::min),
                Goal::Info => None,
            };
            let ratio_to_best = match (ours, best) {
                (Some(ours), Some(best)) if best != 0.0 => Some(ours / best),
                _ => None,
            };
            Comparison {
                row: line.row.clone(),
                summaries,
                ratio_to_best,
            }
        })
        .filter(|c| c.summaries.iter().any(Option::is_some))
        .collect()
}

/// The comparison as a table: each contender's median (min–max), then
/// `sessiond`'s median over the best broker's.
pub fn comparison_table(contenders: &[Contender], lines: &[Comparison]) -> String {
    const W: usize = 24;
    let mut s = String::new();
    let _ = write!(s, "{:<46}", "figure");
    for contender in contenders {
        let _ = write!(s, " {:>W$}", contender.name);
    }
    let _ = writeln!(s, " {:>10}  {:>10}", "vs best", "target");
    for line in lines {
        let _ = write!(s, "{:<46}", line.row.label);
        for summary in &line.summaries {
            let cell = match summary {
                Some(sum) if sum.n > 1 => format!(
                    "{} ({}-{})",
                    human(sum.median),
                    human(sum.min),
                    human(sum.max)
                ),
                Some(sum) => human(sum.median),
                None => "-".into(),
            };
            let _ = write!(s, " {cell:>W$}");
        }
        let ratio = line
            .ratio_to_best
            .map_or_else(String::new, |r| format!("{r:.2}x"));
        let _ = writeln!(s, " {ratio:>10}  {:>10}", line.row.goal.text());
    }
    s
}

fn write_comparison(
    bench: &Bench,
    contenders: &[Contender],
    records: &[Vec<RunRecord>],
    command: &str,
) -> Result<(), String> {
    let report = json!({
        "command": command,
        "sizes": bench.sizes,
        "machine": machine(),
        "contenders": contenders.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        "summary": comparisons(&bench.sizes, records),
        "runs": contenders
            .iter()
            .zip(records)
            .map(|(c, r)| json!({ "contender": c.name, "runs": r }))
            .collect::<Vec<_>>(),
    });
    let path = bench.out_dir.join("compare.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(run: usize, scenario: Scenario, figures: &[(&str, f64)]) -> RunRecord {
        RunRecord {
            run,
            scenario,
            seconds: 1.0,
            result: Ok(RunResult {
                scenario,
                figures: figures
                    .iter()
                    .map(|&(k, v)| (k.to_owned(), v))
                    .collect::<BTreeMap<_, _>>(),
                details: serde_json::Value::Null,
                latency: None,
            }),
        }
    }

    fn line<'a>(lines: &'a [Comparison], key: &str) -> &'a Comparison {
        lines.iter().find(|l| l.row.key == key).unwrap()
    }

    #[test]
    fn the_ratio_is_to_the_best_broker_in_the_targets_direction() {
        let sizes = Sizes::full();
        let s3 = |run, delivered| record(run, Scenario::S3, &[("delivered_per_s", delivered)]);
        let s4 = |run, close| record(run, Scenario::S4, &[("close_s", close)]);
        let records = vec![
            // sessiond
            vec![s3(1, 100.0), s3(2, 120.0), s3(3, 110.0), s4(1, 0.15)],
            // a broker, better at S3, worse at S4
            vec![s3(1, 200.0), s4(1, 0.30)],
            // another, worse at both; and one of its runs failed
            vec![
                s3(1, 50.0),
                s4(1, 0.20),
                RunRecord {
                    run: 2,
                    scenario: Scenario::S4,
                    seconds: 1.0,
                    result: Err("down".into()),
                },
            ],
        ];
        let lines = comparisons(&sizes, &records);
        let s3 = line(&lines, "delivered_per_s");
        assert_eq!(s3.summaries[0].map(|s| (s.median, s.n)), Some((110.0, 3)));
        // At least: the best broker is the highest, 200.
        assert_eq!(s3.ratio_to_best, Some(110.0 / 200.0));
        let s4 = line(&lines, "close_s");
        // At most: the best broker is the lowest, 0.20.
        assert_eq!(s4.ratio_to_best, Some(0.15 / 0.20));
        assert_eq!(s4.summaries[2].map(|s| s.n), Some(1));
        // No figure of a scenario nobody ran.
        assert!(lines.iter().all(|l| l.row.scenario != Scenario::S1));
        let table = comparison_table(
            &Contender::all(Some(Path::new("m")), &[1], Some(Path::new("n"))),
            &lines,
        );
        assert!(table.contains("mosquitto-qos1"), "{table}");
        assert!(table.contains("110 (100-120)"), "{table}");
        assert!(table.contains("0.55x"), "{table}");
    }
}
