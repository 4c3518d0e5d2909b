//! Server settings beyond the core's: connection limits, rates, deadlines.

use std::time::Duration;

use session_core::{ConflictRules, ServerConfig};

/// A token bucket's shape: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens available at once.
    pub burst: u32,
    /// Tokens added per second.
    pub per_second: f64,
}

/// Everything the server can be told, with defaults for a small production
/// deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerOptions {
    /// The sessions' protocol settings (heartbeat range, timeouts, frame
    /// and buffer limits).
    pub core: ServerConfig,
    /// The login-conflict policy per device.
    pub conflict: ConflictRules,
    /// Connections open at once, logged in or not.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// New connections per IP address.
    pub connection_rate: Rate,
    /// Failed logins per IP address; once spent, logins from that address
    /// are refused with `RATE_LIMITED` without asking the authenticator.
    pub failed_login_rate: Rate,
    /// How long writing to a connection may take before it is dropped.
    pub write_timeout: Duration,
    /// How long a graceful shutdown may take.
    pub shutdown_timeout: Duration,
    /// Hint sent with `SERVER_SHUTDOWN` and limit rejections.
    pub retry_after: Duration,
    /// Threads that drive logged-in TCP and WebSocket sessions, each with its own
    /// poll and a slab of connections instead of a task per session (see
    /// `docs/server.md`). 0 gives every session a task, as TLS and
    /// WSS sessions always get. Default: one per available core
    /// (at most 8). At most 65,535 are started.
    pub reactor_threads: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            core: ServerConfig::default(),
            conflict: ConflictRules::default(),
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            connection_rate: Rate {
                burst: 200,
                per_second: 100.0,
            },
            failed_login_rate: Rate {
                burst: 10,
                per_second: 1.0,
            },
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(5),
            reactor_threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        }
    }
}
