//! Fuzz harnesses for `session-core`: the frame decoder, the server session
//! and the client session, each checking its invariants with `assert!`.
//!
//! The targets in `fuzz_targets/` are one line each; the harnesses live here
//! so that `cargo test` (on stable, without libFuzzer) can replay the
//! committed corpus and check the seeds, see `tests/seeds.rs`. Inputs are
//! decoded with `arbitrary`; [`wire::Encode`] writes them back, which is how
//! [`seeds`] are made. Run them with `cargo xtask fuzz` from the workspace
//! root; `docs/fuzzing.md` says more.

pub mod client;
pub mod decoder;
pub mod seeds;
pub mod server;
pub mod wire;

/// The fuzz targets, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: [&str; 3] = ["frame_decoder", "server_session", "client_session"];

/// Runs one input through `target`'s harness; `false` for an unknown target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "frame_decoder" => decoder::run(data),
        "server_session" => server::run(data),
        "client_session" => client::run(data),
        _ => return false,
    }
    true
}
