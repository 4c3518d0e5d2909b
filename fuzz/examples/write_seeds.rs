//! Writes the seed corpora (`session_fuzz::seeds`) to `corpus/<target>/seed-*`,
//! replacing the old seeds: `cargo run --example write_seeds` in `fuzz/`.

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in session_fuzz::TARGETS {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let stale = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"));
            if stale {
                fs::remove_file(path)?;
            }
        }
    }
    for seed in session_fuzz::seeds::all() {
        let path = corpus.join(seed.target).join(format!("seed-{}", seed.name));
        fs::write(&path, &seed.bytes)?;
        println!("{} ({} bytes)", path.display(), seed.bytes.len());
    }
    Ok(())
}
