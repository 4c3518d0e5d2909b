//! `cargo xtask fuzz --seconds N`: runs every fuzz target (to be written).

/// Runs the fuzz targets.
pub(crate) fn run(_args: &[String]) -> Result<(), String> {
    Err("fuzzing is not set up yet".into())
}
