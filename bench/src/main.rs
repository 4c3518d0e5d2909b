//! `session-bench`: runs the load scenarios against `sessiond` (`run`), the
//! core simulation (`sim`), and, started by `run` itself, the worker
//! processes (`worker`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use session_bench::alloc::CountingAllocator;
use session_bench::control::Protocol;
use session_bench::scenario::{Bench, Broker, Scenario, Sizes, sim_result};
use session_bench::{suite, worker};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[derive(Debug, Parser)]
#[command(name = "session-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs scenarios against a fresh sessiond each time and reports the
    /// median, min and max of every figure.
    Run(RunArgs),
    /// The core simulation alone.
    Sim(SimArgs),
    /// Runs scenarios against sessiond and against mosquitto and/or
    /// nats-server in interleaved rounds, and reports them side by side.
    Compare(CompareArgs),
    /// Prints the table and redraws the plots of an existing load.json.
    Report(ReportArgs),
    /// A worker process (started by `run`).
    #[command(hide = true)]
    Worker(WorkerCli),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenarios, comma-separated: s1, s2, s2ws, s2cpu, s3, s3lat, s4, sim
    /// [default: all].
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Runs of each scenario.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Small sizes, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Sets the main session count of every scenario.
    #[arg(long)]
    sessions: Option<u64>,
    /// Handshakes in flight while logging in [default: 200].
    #[arg(long)]
    in_flight: Option<usize>,
    /// S2cpu: the server's heartbeat interval, ms [default: 30000].
    #[arg(long)]
    heartbeat_ms: Option<u32>,
    /// The sessiond binary [default: next to this one].
    #[arg(long)]
    sessiond: Option<PathBuf>,
    /// Measure an MQTT broker in sessiond's place: the mosquitto binary
    /// (Debian's package `mosquitto` installs /usr/sbin/mosquitto). S2ws and
    /// sim do not apply.
    #[arg(long)]
    mosquitto: Option<PathBuf>,
    /// With --mosquitto: the QoS of every publish and subscription (0 or
    /// 1; 1 does the work sessiond's responses and acknowledgements do).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    mqtt_qos: u8,
    /// Measure NATS in sessiond's place: the nats-server binary (Debian's
    /// package `nats-server` installs /usr/sbin/nats-server). S2ws and sim
    /// do not apply.
    #[arg(long, conflicts_with = "mosquitto")]
    nats_server: Option<PathBuf>,
    /// Where load.json and the plots go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// Rounds: in each, every server runs every scenario once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Scenarios, comma-separated, of s1, s2, s2cpu, s3, s3lat, s4
    /// [default: all six].
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Small sizes, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// The sessiond binary [default: next to this one].
    #[arg(long)]
    sessiond: Option<PathBuf>,
    /// The mosquitto binary (Debian's package `mosquitto`:
    /// /usr/sbin/mosquitto).
    #[arg(long)]
    mosquitto: Option<PathBuf>,
    /// The MQTT QoS levels to run mosquitto at, each a server of its own.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1], value_parser = clap::value_parser!(u8).range(0..=1))]
    mqtt_qos: Vec<u8>,
    /// The nats-server binary (Debian's package `nats-server`:
    /// /usr/sbin/nats-server).
    #[arg(long)]
    nats_server: Option<PathBuf>,
    /// Where compare.json goes.
    #[arg(long, default_value = "target/bench/compare")]
    out_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Session counts to simulate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// Print the result as one JSON line (for `run`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The load.json to read.
    #[arg(long, default_value = "target/bench/load.json")]
    json: PathBuf,
    /// Where the plots go [default: beside the JSON file].
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct WorkerCli {
    #[arg(long)]
    index: usize,
    #[arg(long)]
    source: IpAddr,
    #[arg(long)]
    tcp: SocketAddr,
    #[arg(long)]
    ws: SocketAddr,
    #[arg(long, default_value = "/session")]
    ws_path: String,
    #[arg(long, default_value_t = 1_800)]
    max_seconds: u64,
    #[arg(long, value_enum, default_value_t)]
    protocol: Protocol,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("session-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Cmd::Run(args) => runtime.block_on(run(args)),
        Cmd::Compare(args) => runtime.block_on(compare(args)),
        Cmd::Sim(args) => sim(args),
        Cmd::Report(args) => report(args),
        Cmd::Worker(args) => runtime.block_on(worker::run(worker::WorkerArgs {
            index: args.index,
            source: args.source,
            tcp: args.tcp,
            ws: args.ws,
            ws_path: args.ws_path,
            max_seconds: args.max_seconds,
            protocol: args.protocol,
        })),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("session-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The scenarios `names` names, or all of them (with `brokers`, all
/// those that apply to a broker, and only those).
fn scenarios(names: &[String], brokers: bool) -> Result<Vec<Scenario>, String> {
    if names.is_empty() {
        return Ok(Scenario::ALL
            .into_iter()
            .filter(|s| !brokers || s.applies_to_brokers())
            .collect());
    }
    names
        .iter()
        .map(|name| match Scenario::parse(name) {
            Some(s) if brokers && !s.applies_to_brokers() => {
                Err(format!("{name} applies to sessiond only"))
            }
            Some(s) => Ok(s),
            None => Err(format!("unknown scenario {name:?}")),
        })
        .collect()
}

/// This binary, and the `sessiond` to measure (`given`, or the one beside
/// this binary), which must exist if `needed`.
fn binaries(given: Option<PathBuf>, needed: bool) -> Result<(PathBuf, PathBuf), String> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let sessiond = given.unwrap_or_else(|| exe.with_file_name("sessiond"));
    if needed && !sessiond.exists() {
        return Err(format!(
            "no sessiond at {} (build it: cargo build --release -p session-server --bin sessiond, or pass --sessiond)",
            sessiond.display()
        ));
    }
    Ok((exe, sessiond))
}

async fn run(args: RunArgs) -> Result<(), String> {
    let brokers_only = args.mosquitto.is_some() || args.nats_server.is_some();
    let scenarios = scenarios(&args.scenario, false)?;
    let (exe, sessiond) = binaries(args.sessiond, !brokers_only)?;
    let mut sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    if let Some(n) = args.sessions {
        sizes = sizes.with_sessions(n);
    }
    if let Some(n) = args.in_flight {
        sizes.in_flight = n.max(1);
    }
    if let Some(ms) = args.heartbeat_ms {
        sizes.s2cpu_heartbeat_ms = ms;
    }
    let command: Vec<String> = std::env::args().collect();
    let mut bench = Bench::new(sessiond, exe, sizes, args.out_dir);
    bench.broker = match (args.mosquitto, args.nats_server) {
        (Some(binary), _) => Some(Broker::Mosquitto {
            binary,
            qos: args.mqtt_qos,
        }),
        (None, Some(binary)) => Some(Broker::Nats { binary }),
        (None, None) => None,
    };
    let records = suite::run(&bench, &scenarios, args.runs.max(1), &command.join(" ")).await?;
    let lines = suite::summarise(&bench.sizes, &records);
    let server = match &bench.broker {
        Some(Broker::Mosquitto { qos, .. }) => format!("mosquitto (MQTT, QoS {qos})"),
        Some(Broker::Nats { .. }) => "nats-server".to_owned(),
        None => "sessiond".to_owned(),
    };
    println!(
        "\n{server} under load ({} run(s) each; median, min and max over runs)\n",
        args.runs.max(1)
    );
    print!("{}", suite::table(&lines));
    println!(
        "\nwrote {} (and latency plots beside it)",
        bench.out_dir.join("load.json").display()
    );
    let failed = records.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        return Err(format!("{failed} run(s) failed; see load.json"));
    }
    Ok(())
}

async fn compare(args: CompareArgs) -> Result<(), String> {
    let scenarios = scenarios(&args.scenario, true)?;
    if args.mosquitto.is_none() && args.nats_server.is_none() {
        return Err("name a broker to compare with: --mosquitto and/or --nats-server".into());
    }
    let (exe, sessiond) = binaries(args.sessiond, true)?;
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let contenders = suite::Contender::all(
        args.mosquitto.as_deref(),
        &args.mqtt_qos,
        args.nats_server.as_deref(),
    );
    let command: Vec<String> = std::env::args().collect();
    let mut bench = Bench::new(sessiond, exe, sizes, args.out_dir);
    let rounds = args.rounds.max(1);
    let records = suite::compare(
        &mut bench,
        &contenders,
        &scenarios,
        rounds,
        &command.join(" "),
    )
    .await?;
    let lines = suite::comparisons(&bench.sizes, &records);
    println!(
        "\nsessiond against brokers ({rounds} interleaved round(s); median (min-max); \
         \"vs best\": sessiond's median over the best broker's, better below 1 for a \
         <= target, above 1 for a >= target)\n"
    );
    print!("{}", suite::comparison_table(&contenders, &lines));
    println!("\nwrote {}", bench.out_dir.join("compare.json").display());
    let failed = records
        .iter()
        .flatten()
        .filter(|r| r.result.is_err())
        .count();
    if failed > 0 {
        return Err(format!("{failed} run(s) failed; see compare.json"));
    }
    Ok(())
}

fn report(args: ReportArgs) -> Result<(), String> {
    let (sizes, records) = suite::read_report(&args.json)?;
    let dir = match args.out_dir {
        Some(dir) => dir,
        None => args
            .json
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    suite::write_plots(&dir, &records)?;
    let runs = records.iter().map(|r| r.run).max().unwrap_or(0);
    println!("{} ({runs} run(s))\n", args.json.display());
    print!("{}", suite::table(&suite::summarise(&sizes, &records)));
    Ok(())
}

fn sim(args: SimArgs) -> Result<(), String> {
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("  {prefix:<18} [{bar:30}] {pos:>9}/{len:9} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    // Allocates only when the size changes: the simulation counts the
    // allocations made while it runs, this closure's included.
    let mut size = 0;
    let mut tick = |n: u64, done: u64, total: u64| {
        if n != size {
            size = n;
            bar.set_length(total);
            bar.set_prefix(format!("sim {n}"));
        }
        bar.set_position(done);
    };
    let result = sim_result(&args.sizes, &mut tick)?;
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&result).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "{:>10} {:>8} {:>9} {:>12} {:>9} {:>8} {:>11} {:>9} {:>9} {:>12}",
            "sessions",
            "bytes",
            "rss bytes",
            "allocs/login",
            "login ns",
            "hb ns",
            "hb seq. ns",
            "allocs/hb",
            "expiry ns",
            "allocs/expiry"
        );
        for point in result.details["points"].as_array().into_iter().flatten() {
            let f = |k: &str| point[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:>10} {:>8.1} {:>9.1} {:>12.2} {:>9.1} {:>8.1} {:>11.1} {:>9.3} {:>9.1} {:>12.3}",
                f("sessions"),
                f("bytes_per_session"),
                f("rss_bytes_per_session"),
                f("allocs_per_login"),
                f("login_ns"),
                f("heartbeat_ns"),
                f("heartbeat_seq_ns"),
                f("allocs_per_heartbeat"),
                f("expiry_ns"),
                f("allocs_per_expiry"),
            );
        }
    }
    Ok(())
}
