//! Workspace tasks, run as `cargo xtask <task>`.
//!
//! - `codegen [--check]`: regenerate `proto/src/session.v1.rs` from
//!   `proto/session.proto` (with `--check`, fail if the checked-in file is stale).
//! - `ci`: everything CI checks: fmt, clippy, tests, rustdoc, codegen check.
//! - `bench [core | load | sim]`: the core's hot paths, the load scenarios
//!   against a real `sessiond`, and the core simulation.
//! - `fuzz [--seconds N]`: every fuzz target for N seconds each.
//! - `soak`: thousands of sessions heartbeating for a while (not in CI).

mod bench;
mod ci;
mod codegen;
mod fuzz;
mod soak;
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "codegen" => codegen::run(rest.iter().any(|a| a == "--check")),
        "ci" => ci::run(),
        "bench" => bench::run(rest),
        "fuzz" => fuzz::run(rest),
        "soak" => soak::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <codegen [--check] | ci | bench [core | load [--runs N] [--quick] | sim] | fuzz [--seconds N] [--target NAME] [--install] [--verbose] | soak [...]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's folder).
fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}
