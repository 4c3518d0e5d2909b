//! The wall-clock anchor handed to the core (which reads no clock itself).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use session_core::WallClock;

/// Now, as a monotonic instant paired with Unix milliseconds.
pub(crate) fn wall_clock() -> WallClock {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    WallClock {
        at: Instant::now(),
        unix_ms,
    }
}
