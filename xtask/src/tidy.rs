//! House rules checked by plain `cargo test` (as rust-analyzer's tidy does).

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};

    use crate::root;

    /// Every Rust source file of the workspace, but generated code and
    /// anything under `target` or `node_modules`.
    fn sources() -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if path.is_dir() {
                    if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                        walk(&path, out);
                    }
                } else if name.ends_with(".rs") && name != "session.v1.rs" {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&root(), &mut out);
        assert!(out.len() > 10, "tidy found too few sources: {out:?}");
        out
    }

    fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_start()))
            .filter(|(_, l)| !l.starts_with("//"))
    }

    #[test]
    fn every_file_opens_with_a_doc_line() {
        let missing: Vec<_> = sources()
            .into_iter()
            .filter(|p| {
                let text = fs::read_to_string(p).unwrap_or_default();
                !text.trim_start().starts_with("//!")
            })
            .collect();
        assert!(
            missing.is_empty(),
            "files without a leading `//!` line: {missing:?}"
        );
    }

    #[test]
    fn the_core_reads_no_clock() {
        let core = root().join("session-core/src");
        for path in sources().into_iter().filter(|p| p.starts_with(&core)) {
            let text = fs::read_to_string(&path).unwrap_or_default();
            for (line, code) in code_lines(&text) {
                for banned in ["Instant::now", "SystemTime::now", "thread::spawn", "tokio"] {
                    assert!(
                        !code.contains(banned),
                        "{}:{line}: `{banned}` in session-core",
                        path.display()
                    );
                }
            }
        }
    }

    #[test]
    fn the_core_depends_on_nothing_that_does_io() {
        let manifest = fs::read_to_string(root().join("session-core/Cargo.toml")).unwrap();
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .unwrap_or_default();
        let names: Vec<&str> = deps
            .lines()
            .filter_map(|l| l.split(['=', '.']).next())
            .map(str::trim)
            .filter(|n| !n.is_empty() && !n.starts_with('#'))
            .collect();
        assert_eq!(names, ["session-proto", "bytes", "thiserror"]);
    }

    #[test]
    fn no_ignored_or_should_panic_tests_and_no_placeholders() {
        let xtask = root().join("xtask/src/tidy.rs");
        for path in sources().into_iter().filter(|p| *p != xtask) {
            let text = fs::read_to_string(&path).unwrap_or_default();
            for (line, code) in code_lines(&text) {
                for banned in ["#[ignore", "#[should_panic", "todo!(", "unimplemented!("] {
                    assert!(
                        !code.contains(banned),
                        "{}:{line}: `{banned}` is not allowed",
                        path.display()
                    );
                }
            }
        }
    }
}
