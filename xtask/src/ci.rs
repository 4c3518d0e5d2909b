//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure.

use std::process::Command;

use crate::root;

/// Runs fmt, clippy, the tests, rustdoc and the codegen check.
pub(crate) fn run() -> Result<(), String> {
    // (name, cargo arguments, environment)
    type Step<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let steps: &[Step<'_>] = &[
        ("fmt", &["fmt", "--all", "--check"], &[]),
        (
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
        // The README's test command.
        ("test", &["test", "--workspace"], &[]),
        (
            "doc",
            &["doc", "--workspace", "--no-deps"],
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
    ];
    for (name, args, envs) in steps {
        eprintln!("==> ci: {name}: cargo {}", args.join(" "));
        let status = Command::new(cargo())
            .args(*args)
            .envs(envs.iter().copied())
            .current_dir(root())
            .status()
            .map_err(|e| format!("{name}: cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("{name} failed ({status})"));
        }
    }
    eprintln!("==> ci: codegen --check");
    crate::codegen::run(true)?;
    eprintln!("==> ci: all checks passed");
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
