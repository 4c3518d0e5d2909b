//! Configuration of client and server sessions, and the wall-clock anchor.

use std::time::{Duration, Instant};

use crate::codec::{DEFAULT_MAX_FRAME_LEN, DEFAULT_PRE_LOGIN_MAX_FRAME_LEN};

/// How long a client's acknowledgement may wait by default
/// ([`ClientConfig::ack_delay`]): one second, as a consumer commits its
/// position now and then rather than per message.
pub const DEFAULT_ACK_DELAY: Duration = Duration::from_secs(1);

/// Maps the caller's monotonic clock to Unix time, so that the core can report
/// `server_time_ms` without reading a clock. Set once by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// A monotonic instant...
    pub at: Instant,
    /// ...and the Unix time in milliseconds at that instant.
    pub unix_ms: u64,
}

impl WallClock {
    /// Unix milliseconds at `now` (saturating before `at`).
    pub fn unix_ms_at(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.at).as_millis();
        self.unix_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

/// Settings of a [`ServerSession`](crate::ServerSession). Shared by all
/// sessions through an `Arc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Heartbeat interval when the client asks for none.
    pub heartbeat: Duration,
    /// The shortest heartbeat interval a client may negotiate.
    pub min_heartbeat: Duration,
    /// The longest heartbeat interval a client may negotiate.
    pub max_heartbeat: Duration,
    /// The session timeout is this many heartbeat intervals (at least 2).
    pub timeout_heartbeats: u32,
    /// How long a new connection has to log in (the authenticator's time
    /// counts too).
    pub login_timeout: Duration,
    /// The largest frame accepted before login.
    pub pre_login_max_frame_len: usize,
    /// The largest frame accepted after login.
    pub max_frame_len: usize,
    /// The most events published but not yet acknowledged.
    pub max_unacked_events: u32,
    /// The most payload bytes published but not yet acknowledged.
    pub max_unacked_bytes: u32,
    /// The negotiated window of outstanding requests.
    pub max_pending_requests: u32,
    /// The most frames an open session may send in one second (heartbeats,
    /// acks and requests alike); above it the session is closed with
    /// `POLICY_VIOLATION`. 0 (the default) disables the limit.
    pub max_frames_per_second: u32,
    /// Wall time for `server_time_ms`; `None` reports 0.
    pub wall_clock: Option<WallClock>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(30),
            min_heartbeat: Duration::from_secs(1),
            max_heartbeat: Duration::from_secs(300),
            timeout_heartbeats: 3,
            login_timeout: Duration::from_secs(10),
            pre_login_max_frame_len: DEFAULT_PRE_LOGIN_MAX_FRAME_LEN,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_unacked_events: 1024,
            max_unacked_bytes: 4 * 1024 * 1024,
            max_pending_requests: 128,
            max_frames_per_second: 0,
            wall_clock: None,
        }
    }
}

impl ServerConfig {
    /// The heartbeat interval granted for a client's request (milliseconds, 0
    /// for no preference): the default, or the request clamped to the range.
    pub fn negotiate_heartbeat(&self, requested_ms: u32) -> Duration {
        if requested_ms == 0 {
            return within(self.heartbeat, self.min_heartbeat, self.max_heartbeat);
        }
        within(
            Duration::from_millis(u64::from(requested_ms)),
            self.min_heartbeat,
            self.max_heartbeat,
        )
    }

    /// The session timeout for a heartbeat interval.
    pub fn session_timeout(&self, heartbeat: Duration) -> Duration {
        heartbeat.saturating_mul(self.timeout_heartbeats.max(2))
    }
}

/// Settings of a [`ClientSession`](crate::ClientSession).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The heartbeat interval to ask for; `None` lets the server choose.
    pub requested_heartbeat: Option<Duration>,
    /// How long to wait for the answer to a login or a resume.
    pub login_timeout: Duration,
    /// How long a request waits for its response before failing.
    pub request_timeout: Duration,
    /// The connection is considered dead when nothing was heard from the
    /// server for this many heartbeat intervals.
    pub silence_heartbeats: u32,
    /// The largest frame accepted from the server.
    pub max_frame_len: usize,
    /// How long an acknowledgement may wait to be coalesced with later ones
    /// (or to ride on a heartbeat). An acknowledgement goes at once when
    /// half the server's window of unacknowledged events or bytes (announced
    /// at login) is in use, or when the server announced none. Zero sends
    /// every acknowledgement at once. Acknowledgements only let the server
    /// forget events (a resume asks for what was *received*), so waiting
    /// costs the server memory for that long, never an event.
    pub ack_delay: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            requested_heartbeat: None,
            login_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            silence_heartbeats: 2,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            ack_delay: DEFAULT_ACK_DELAY,
        }
    }
}

/// `d` brought into `min..=max`; unlike `Duration::clamp`, no panic when a
/// misconfigured `min` exceeds `max` (`max` wins).
fn within(d: Duration, min: Duration, max: Duration) -> Duration {
    d.max(min).min(max)
}
