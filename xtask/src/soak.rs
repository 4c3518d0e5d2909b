//! `cargo xtask soak`: thousands of sessions heartbeating for a while (to be
//! written).

/// Runs the soak test.
pub(crate) fn run(_args: &[String]) -> Result<(), String> {
    Err("the soak test is not set up yet".into())
}
