//! Replays inputs through a target's harness without libFuzzer, e.g. a crash
//! artifact: `SESSION_FUZZ_TRACE=1 cargo run --example replay -- server_session FILE...`
//! (`SESSION_FUZZ_TRACE` prints every operation and output).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((target, files)) = args.split_first() else {
        eprintln!("usage: replay <target> <input>...");
        return ExitCode::from(2);
    };
    for file in files {
        let data = match std::fs::read(file) {
            Ok(data) => data,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if !session_fuzz::run(target, &data) {
            eprintln!(
                "unknown target {target}; one of {:?}",
                session_fuzz::TARGETS
            );
            return ExitCode::from(2);
        }
        eprintln!("{file}: ok");
    }
    ExitCode::SUCCESS
}
