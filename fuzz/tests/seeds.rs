//! The committed corpora: seeds up to date, scripts that survive an
//! encode/decode round trip, and every committed input (seeds and crash
//! regressions) replayed through its harness without a panic.

use std::fs;
use std::path::{Path, PathBuf};

use session_fuzz::client::{ClientOp, ClientSetup};
use session_fuzz::server::{ServerOp, ServerSetup};
use session_fuzz::wire::{encode_script, parse_script};
use session_fuzz::{TARGETS, decoder, seeds};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

#[test]
fn committed_seeds_are_current() {
    let mut expected = Vec::new();
    for seed in seeds::all() {
        let path = corpus(seed.target).join(format!("seed-{}", seed.name));
        let on_disk = fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == seed.bytes,
            "{} is stale: run `cargo run --example write_seeds` in fuzz/ and commit",
            path.display()
        );
        expected.push(path);
    }
    for target in TARGETS {
        for entry in fs::read_dir(corpus(target)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("seed-") {
                assert!(
                    expected.contains(&path),
                    "{} is no longer a seed",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn scripts_survive_a_round_trip() {
    for (name, setup, ops) in seeds::server_scripts() {
        let bytes = encode_script(&setup, &ops);
        let back = parse_script::<ServerSetup, ServerOp>(&bytes);
        assert_eq!(back, Some((setup, ops)), "server seed {name}");
    }
    for (name, setup, ops) in seeds::client_scripts() {
        let bytes = encode_script(&setup, &ops);
        let back = parse_script::<ClientSetup, ClientOp>(&bytes);
        assert_eq!(back, Some((setup, ops)), "client seed {name}");
    }
    for (name, setup, stream) in seeds::decoder_inputs() {
        let bytes = decoder::encode_input(&setup, &stream);
        let back = decoder::parse_input(&bytes).map(|(s, rest)| (s, rest.to_vec()));
        assert_eq!(back, Some((setup, stream)), "decoder seed {name}");
    }
}

#[test]
fn every_committed_input_runs_clean() {
    let mut count = 0;
    for target in TARGETS {
        for entry in fs::read_dir(corpus(target)).unwrap() {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            assert!(session_fuzz::run(target, &data));
            count += 1;
        }
    }
    assert!(count >= TARGETS.len(), "no committed inputs found");
}
