//! `cargo xtask fuzz [--seconds N] [--target NAME] [--install]`: replays the
//! committed corpora, then runs every cargo-fuzz target in `fuzz/` for N
//! seconds each (default 10) and reports executions and crashes.
//!
//! The targets build with the address sanitizer on the stable toolchain
//! (`RUSTC_BOOTSTRAP=1` lets cargo-fuzz pass its `-Z` flags), into
//! `fuzz/target`. libFuzzer adds what it finds to a working corpus in
//! `fuzz/target/corpus/<target>` and reads the committed seeds from
//! `fuzz/corpus/<target>` without writing there. A crash leaves its input in
//! `fuzz/artifacts/<target>/`; the task then fails.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::root;

/// The targets, as in `fuzz/Cargo.toml`.
const TARGETS: [&str; 3] = ["frame_decoder", "server_session", "client_session"];

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--target NAME] [--install] [--verbose]";

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    seconds: u64,
    targets: Vec<String>,
    install: bool,
    verbose: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 10,
        targets: Vec::new(),
        install: false,
        verbose: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().ok_or(USAGE)?;
                options.seconds =
                    value.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                        format!("--seconds needs a positive number, not {value:?}")
                    })?;
            }
            "--target" => {
                let name = args.next().ok_or(USAGE)?;
                if !TARGETS.contains(&name.as_str()) {
                    return Err(format!("unknown target {name:?}; one of {TARGETS:?}"));
                }
                options.targets.push(name.clone());
            }
            "--install" => options.install = true,
            "--verbose" => options.verbose = true,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if options.targets.is_empty() {
        options.targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    Ok(options)
}

/// How one target's run went.
struct Outcome {
    target: String,
    executions: Option<u64>,
    /// Executions per second, as libFuzzer counted them.
    rate: Option<u64>,
    /// Wall time, the build included.
    seconds: f64,
    new_artifacts: Vec<PathBuf>,
    success: bool,
}

/// Runs the fuzz targets.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let fuzz_dir = root().join("fuzz");
    ensure_cargo_fuzz(options.install)?;

    // The harnesses also build without libFuzzer: this checks that the
    // committed seeds are current and replays every committed input.
    eprintln!("==> fuzz: committed corpora (cargo test in fuzz/)");
    let status = cargo(&fuzz_dir)
        .args(["test", "--quiet"])
        .status()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    if !status.success() {
        return Err(format!("the committed corpora failed ({status})"));
    }

    let mut outcomes = Vec::new();
    for target in &options.targets {
        outcomes.push(fuzz_target(&fuzz_dir, target, &options)?);
    }

    eprintln!("==> fuzz: summary ({} s per target)", options.seconds);
    eprintln!(
        "{:<16} {:>12} {:>10} {:>9}  result",
        "target", "executions", "exec/s", "wall s"
    );
    for o in &outcomes {
        let executions = o.executions.map_or("?".to_owned(), |n| n.to_string());
        let rate = o.rate.map_or("?".to_owned(), |n| n.to_string());
        let result = if o.success && o.new_artifacts.is_empty() {
            "ok".to_owned()
        } else if o.new_artifacts.is_empty() {
            "failed (no artifact written)".to_owned()
        } else {
            let names: Vec<_> = o
                .new_artifacts
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!("CRASH: {}", names.join(", "))
        };
        eprintln!(
            "{:<16} {executions:>12} {rate:>10} {:>9.1}  {result}",
            o.target, o.seconds
        );
    }
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !o.success || !o.new_artifacts.is_empty())
        .map(|o| o.target.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "crash or failure in {}; reproduce with `cargo fuzz run <target> <artifact>` in fuzz/",
            failed.join(", ")
        ))
    }
}

/// A `cargo` command run in `dir`, with the fuzz crate's own target folder.
fn cargo(dir: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    // Fuzz builds go to fuzz/target whatever the caller's target folder is:
    // sanitizer flags would otherwise invalidate its cache.
    command.current_dir(dir).env_remove("CARGO_TARGET_DIR");
    command
}

fn ensure_cargo_fuzz(install: bool) -> Result<(), String> {
    let installed = |dir: &Path| {
        cargo(dir)
            .args(["fuzz", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let here = root();
    if installed(&here) {
        return Ok(());
    }
    if !install {
        return Err(
            "cargo-fuzz is not installed: run `cargo install cargo-fuzz --locked`, \
             or pass --install"
                .into(),
        );
    }
    eprintln!("==> fuzz: cargo install cargo-fuzz --locked");
    let status = cargo(&here)
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .map_err(|e| format!("cannot run cargo install: {e}"))?;
    if !status.success() || !installed(&here) {
        return Err(format!("installing cargo-fuzz failed ({status})"));
    }
    Ok(())
}

fn fuzz_target(fuzz_dir: &Path, target: &str, options: &Options) -> Result<Outcome, String> {
    let seeds = fuzz_dir.join("corpus").join(target);
    let work = fuzz_dir.join("target").join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let before = list(&artifacts);

    eprintln!("==> fuzz: {target} for {} s", options.seconds);
    let started = Instant::now();
    let mut child = cargo(fuzz_dir)
        .args(["fuzz", "run", target])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", options.seconds))
        // A hang is a finding too: report an input that takes over 20 s.
        .arg("-timeout=20")
        .arg("-print_final_stats=1")
        // The sanitizer build needs `-Z` flags; this allows them on stable.
        .env("RUSTC_BOOTSTRAP", "1")
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;

    let mut log = Vec::new();
    let mut reader = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut line = Vec::new();
    let mut err = std::io::stderr().lock();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("reading cargo fuzz output: {e}")),
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        if options.verbose || !is_progress(&text) {
            let _ = err.write_all(text.as_bytes());
        }
        log.push(text);
    }
    drop(err);
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo fuzz: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let new_artifacts: Vec<PathBuf> = list(&artifacts)
        .difference(&before)
        .filter(|p| is_finding(p))
        .cloned()
        .collect();
    Ok(Outcome {
        target: target.to_owned(),
        executions: executions(&log),
        rate: stat(&log, "stat::average_exec_per_sec:"),
        seconds,
        new_artifacts,
        success: status.success(),
    })
}

fn list(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// An artifact that is a finding: a crash, leak, out-of-memory or timeout
/// (not a slow unit, nor a `cargo fuzz tmin` result).
fn is_finding(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        ["crash-", "leak-", "oom-", "timeout-"]
            .iter()
            .any(|p| n.starts_with(p))
    })
}

/// libFuzzer's progress lines (`#1234\tNEW ...`, `pulse`, `REDUCE`), left
/// out of the output unless `--verbose`.
fn is_progress(line: &str) -> bool {
    line.starts_with('#')
        && ["NEW", "REDUCE", "pulse", "RELOAD"]
            .iter()
            .any(|word| line.contains(word))
}

/// The last value of one of libFuzzer's final statistics (`stat::...: N`).
fn stat(log: &[String], name: &str) -> Option<u64> {
    log.iter()
        .rev()
        .find_map(|l| l.strip_prefix(name).and_then(|n| n.trim().parse().ok()))
}

/// The number of inputs run: from libFuzzer's final statistics, else its
/// `Done N runs` line, else the last progress line (after a crash).
fn executions(log: &[String]) -> Option<u64> {
    let number = |s: &str| s.trim().parse::<u64>().ok();
    stat(log, "stat::number_of_executed_units:")
        .or_else(|| {
            log.iter().rev().find_map(|l| {
                l.strip_prefix("Done ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(number)
            })
        })
        .or_else(|| {
            log.iter().rev().find_map(|l| {
                l.strip_prefix('#')
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(number)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn executions_come_from_the_final_statistics_first() {
        let log = lines(
            "#283729\tDONE   cov: 391 ft: 1890 corp: 120/5Kb\nDone 283729 runs in 21 second(s)\n\
             stat::number_of_executed_units: 283730\nstat::average_exec_per_sec:     13510\n",
        );
        assert_eq!(executions(&log), Some(283_730));
        assert_eq!(executions(&log[..2]), Some(283_729));
        assert_eq!(stat(&log, "stat::average_exec_per_sec:"), Some(13_510));
    }

    #[test]
    fn executions_after_a_crash_come_from_the_last_progress_line() {
        let log = lines(
            "#19454\tREDUCE cov: 2350 ft: 6918 corp: 470/88Kb\n\
             thread '<unnamed>' panicked at src/server.rs:801:17:\n\
             ==12791== ERROR: libFuzzer: deadly signal\n",
        );
        assert_eq!(executions(&log), Some(19_454));
        assert_eq!(executions(&[]), None);
    }

    #[test]
    fn options_default_to_every_target_for_ten_seconds() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.seconds, 10);
        assert_eq!(options.targets, TARGETS);
        let args: Vec<String> = ["--seconds", "60", "--target", "client_session"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let options = parse(&args).unwrap();
        assert_eq!(
            (options.seconds, options.targets),
            (60, vec!["client_session".to_owned()])
        );
        assert!(parse(&["--target".to_owned(), "nope".to_owned()]).is_err());
        assert!(parse(&["--seconds".to_owned(), "0".to_owned()]).is_err());
    }

    #[test]
    fn only_crashes_leaks_ooms_and_timeouts_are_findings() {
        assert!(is_finding(Path::new("fuzz/artifacts/x/crash-abc")));
        assert!(is_finding(Path::new("fuzz/artifacts/x/timeout-abc")));
        assert!(!is_finding(Path::new("fuzz/artifacts/x/slow-unit-abc")));
        assert!(!is_finding(Path::new(
            "fuzz/artifacts/x/minimized-from-abc"
        )));
    }

    #[test]
    fn the_targets_match_the_fuzz_manifest() {
        let manifest = fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} is not a [[bin]] of fuzz/Cargo.toml"
            );
        }
        assert_eq!(manifest.matches("[[bin]]").count(), TARGETS.len());
    }
}
