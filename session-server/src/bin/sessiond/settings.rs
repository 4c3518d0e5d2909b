//! `sessiond`'s settings: command-line flags over an optional TOML file over
//! the embedded defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use session_core::{ConflictPolicy, ConflictRules, ServerConfig};
use session_server::{Listen, Rate, ServerOptions, TlsFiles};

/// The session server, on embedded defaults unless told otherwise.
///
/// Every setting can be given as a flag or in the TOML file named by
/// `--config` (same names, with `_` for `-`); flags win.
#[derive(Debug, Clone, Default, Parser, Deserialize)]
#[command(name = "sessiond", version, about, long_about = None)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    /// A TOML file with any of the settings below.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,

    /// TCP listen address, or `off` [default: 127.0.0.1:7700].
    #[arg(long, value_name = "ADDR")]
    pub(crate) tcp: Option<String>,
    /// WebSocket listen address, or `off` [default: 127.0.0.1:7701].
    #[arg(long, value_name = "ADDR")]
    pub(crate) ws: Option<String>,
    /// WebSocket path [default: /session].
    #[arg(long, value_name = "PATH")]
    pub(crate) ws_path: Option<String>,
    /// TLS (over TCP) listen address [default: off]; needs --cert and --key.
    #[arg(long, value_name = "ADDR")]
    pub(crate) tls: Option<String>,
    /// Secure WebSocket listen address [default: off]; needs --cert and --key.
    #[arg(long, value_name = "ADDR")]
    pub(crate) wss: Option<String>,
    /// Certificate chain, PEM, for --tls and --wss (an error without
    /// either).
    #[arg(long, value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key, PEM, for --tls and --wss (an error without either).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,

    /// A file of `user:password` lines, replacing the demo users.
    #[arg(long, value_name = "FILE")]
    pub(crate) users: Option<PathBuf>,
    /// Whether `load-*` users may log in with password `load` [default: true
    /// with the demo users, false with --users].
    #[arg(long, value_name = "BOOL")]
    pub(crate) load_users: Option<bool>,

    /// Heartbeat interval when the client asks for none, ms [default: 30000].
    #[arg(long, value_name = "MS")]
    pub(crate) heartbeat_ms: Option<u64>,
    /// Shortest heartbeat a client may negotiate, ms [default: 1000].
    #[arg(long, value_name = "MS")]
    pub(crate) min_heartbeat_ms: Option<u64>,
    /// Longest heartbeat a client may negotiate, ms [default: 300000].
    #[arg(long, value_name = "MS")]
    pub(crate) max_heartbeat_ms: Option<u64>,
    /// Session timeout in heartbeat intervals [default: 3].
    #[arg(long, value_name = "N")]
    pub(crate) timeout_heartbeats: Option<u32>,
    /// Time to log in after connecting, handshakes included, ms [default: 10000].
    #[arg(long, value_name = "MS")]
    pub(crate) login_timeout_ms: Option<u64>,
    /// Largest frame before login, bytes [default: 4096].
    #[arg(long, value_name = "BYTES")]
    pub(crate) pre_login_max_frame_len: Option<usize>,
    /// Largest frame after login, bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_frame_len: Option<usize>,
    /// Most unacknowledged events per session [default: 1024].
    #[arg(long, value_name = "N")]
    pub(crate) max_unacked_events: Option<u32>,
    /// Most unacknowledged event bytes per session [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_unacked_bytes: Option<u32>,
    /// Most requests in flight per session [default: 128].
    #[arg(long, value_name = "N")]
    pub(crate) max_pending_requests: Option<u32>,
    /// Most frames per second per session, 0 for no limit [default: 0].
    #[arg(long, value_name = "N")]
    pub(crate) max_frames_per_second: Option<u32>,

    /// Most connections at once [default: 100000].
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// Most connections at once per IP address [default: 1000].
    #[arg(long, value_name = "N")]
    pub(crate) max_connections_per_ip: Option<usize>,
    /// New connections per second per IP address [default: 100].
    #[arg(long, value_name = "RATE")]
    pub(crate) connection_rate: Option<f64>,
    /// Burst of new connections per IP address [default: 200].
    #[arg(long, value_name = "N")]
    pub(crate) connection_burst: Option<u32>,
    /// Failed logins per second per IP address [default: 1].
    #[arg(long, value_name = "RATE")]
    pub(crate) failed_login_rate: Option<f64>,
    /// Burst of failed logins per IP address [default: 10].
    #[arg(long, value_name = "N")]
    pub(crate) failed_login_burst: Option<u32>,
    /// Time a write may take before the connection is dropped, ms [default: 10000].
    #[arg(long, value_name = "MS")]
    pub(crate) write_timeout_ms: Option<u64>,
    /// Time a graceful shutdown may take, ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub(crate) shutdown_timeout_ms: Option<u64>,
    /// Reactor threads driving TCP and WebSocket sessions; 0 gives each session a
    /// task instead [default: one per core, at most 8].
    #[arg(long, value_name = "N")]
    pub(crate) reactor_threads: Option<usize>,

    /// Login-conflict policy: replace-older, reject-newer or allow-many
    /// [default: replace-older].
    #[arg(long, value_name = "POLICY")]
    pub(crate) conflict: Option<String>,
    /// Per-device policy, as DEVICE=POLICY (repeatable).
    #[arg(long = "conflict-device", value_name = "DEVICE=POLICY")]
    pub(crate) conflict_device: Vec<String>,

    /// Log filter, as in RUST_LOG [default: info].
    #[arg(long, value_name = "FILTER")]
    pub(crate) log: Option<String>,
}

macro_rules! overlay {
    ($flags:ident, $file:ident, $($field:ident),* $(,)?) => {
        Settings {
            config: $flags.config,
            conflict_device: if $flags.conflict_device.is_empty() {
                $file.conflict_device
            } else {
                $flags.conflict_device
            },
            $($field: $flags.$field.or($file.$field),)*
        }
    };
}

impl Settings {
    /// Flags over the file named by `--config` (if any).
    pub(crate) fn load() -> Result<Self, String> {
        let flags = Settings::parse();
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str::<Settings>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Settings::default(),
        };
        Ok(overlay!(
            flags,
            file,
            tcp,
            ws,
            ws_path,
            tls,
            wss,
            cert,
            key,
            users,
            load_users,
            heartbeat_ms,
            min_heartbeat_ms,
            max_heartbeat_ms,
            timeout_heartbeats,
            login_timeout_ms,
            pre_login_max_frame_len,
            max_frame_len,
            max_unacked_events,
            max_unacked_bytes,
            max_pending_requests,
            max_frames_per_second,
            max_connections,
            max_connections_per_ip,
            connection_rate,
            connection_burst,
            failed_login_rate,
            failed_login_burst,
            write_timeout_ms,
            shutdown_timeout_ms,
            reactor_threads,
            conflict,
            log,
        ))
    }

    /// The listeners to bind.
    pub(crate) fn listeners(&self) -> Result<Vec<Listen>, String> {
        let path = self.ws_path.clone().unwrap_or_else(|| "/session".into());
        if !path.starts_with('/') {
            return Err(format!("bad ws_path {path:?}: a path starts with '/'"));
        }
        let addr = |value: &Option<String>,
                    default: Option<&str>|
         -> Result<Option<std::net::SocketAddr>, String> {
            match value.as_deref().or(default) {
                None | Some("off") => Ok(None),
                Some(text) => text
                    .parse()
                    .map(Some)
                    .map_err(|e| format!("bad listen address {text:?}: {e}")),
            }
        };
        let tls = || -> Result<TlsFiles, String> {
            match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => Ok(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => Err("--tls and --wss need --cert and --key".into()),
            }
        };
        let mut listeners = Vec::new();
        if let Some(addr) = addr(&self.tcp, Some("127.0.0.1:7700"))? {
            listeners.push(Listen::Tcp { addr });
        }
        if let Some(addr) = addr(&self.ws, Some("127.0.0.1:7701"))? {
            listeners.push(Listen::Ws {
                addr,
                path: path.clone(),
            });
        }
        if let Some(addr) = addr(&self.tls, None)? {
            listeners.push(Listen::Tls { addr, tls: tls()? });
        }
        if let Some(addr) = addr(&self.wss, None)? {
            listeners.push(Listen::Wss {
                addr,
                path,
                tls: tls()?,
            });
        }
        if listeners.is_empty() {
            return Err("every listener is off".into());
        }
        // A certificate without a listener to use it means the operator
        // believes TLS is on while every listener is plain: say so.
        let secure = listeners
            .iter()
            .any(|l| matches!(l, Listen::Tls { .. } | Listen::Wss { .. }));
        if !secure && (self.cert.is_some() || self.key.is_some()) {
            return Err(
                "--cert and --key serve --tls and --wss, and neither is on: \
                 add one, or leave out --cert and --key"
                    .into(),
            );
        }
        Ok(listeners)
    }

    /// The server options these settings describe.
    pub(crate) fn options(&self) -> Result<ServerOptions, String> {
        let defaults = ServerOptions::default();
        let core_defaults = ServerConfig::default();
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        let core = ServerConfig {
            heartbeat: ms(self.heartbeat_ms, core_defaults.heartbeat),
            min_heartbeat: ms(self.min_heartbeat_ms, core_defaults.min_heartbeat),
            max_heartbeat: ms(self.max_heartbeat_ms, core_defaults.max_heartbeat),
            timeout_heartbeats: self
                .timeout_heartbeats
                .unwrap_or(core_defaults.timeout_heartbeats),
            login_timeout: ms(self.login_timeout_ms, core_defaults.login_timeout),
            pre_login_max_frame_len: self
                .pre_login_max_frame_len
                .unwrap_or(core_defaults.pre_login_max_frame_len),
            max_frame_len: self.max_frame_len.unwrap_or(core_defaults.max_frame_len),
            max_unacked_events: self
                .max_unacked_events
                .unwrap_or(core_defaults.max_unacked_events),
            max_unacked_bytes: self
                .max_unacked_bytes
                .unwrap_or(core_defaults.max_unacked_bytes),
            max_pending_requests: self
                .max_pending_requests
                .unwrap_or(core_defaults.max_pending_requests),
            max_frames_per_second: self
                .max_frames_per_second
                .unwrap_or(core_defaults.max_frames_per_second),
            wall_clock: None,
        };
        if core.min_heartbeat > core.max_heartbeat {
            return Err("min_heartbeat_ms is above max_heartbeat_ms".into());
        }
        // Values that would leave no session usable: refused at start
        // rather than found out from the first clients.
        for (name, zero) in [
            ("min_heartbeat_ms", core.min_heartbeat.is_zero()),
            ("heartbeat_ms", core.heartbeat.is_zero()),
            ("pre_login_max_frame_len", core.pre_login_max_frame_len == 0),
            ("max_frame_len", core.max_frame_len == 0),
            ("max_pending_requests", core.max_pending_requests == 0),
            ("max_unacked_events", core.max_unacked_events == 0),
        ] {
            if zero {
                return Err(format!("{name} must be above 0"));
            }
        }
        for (name, rate) in [
            ("connection_rate", self.connection_rate),
            ("failed_login_rate", self.failed_login_rate),
        ] {
            if rate.is_some_and(|rate| !rate.is_finite() || rate < 0.0) {
                return Err(format!("{name} must be a number of 0 or more"));
            }
        }
        let mut conflict = ConflictRules::default();
        if let Some(policy) = &self.conflict {
            conflict.default = parse_policy(policy)?;
        }
        for rule in &self.conflict_device {
            let (device, policy) = rule
                .split_once('=')
                .ok_or_else(|| format!("bad --conflict-device {rule:?}: expected DEVICE=POLICY"))?;
            conflict
                .per_device
                .insert(device.to_owned(), parse_policy(policy)?);
        }
        Ok(ServerOptions {
            core,
            conflict,
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(defaults.max_connections_per_ip),
            connection_rate: Rate {
                burst: self
                    .connection_burst
                    .unwrap_or(defaults.connection_rate.burst),
                per_second: self
                    .connection_rate
                    .unwrap_or(defaults.connection_rate.per_second),
            },
            failed_login_rate: Rate {
                burst: self
                    .failed_login_burst
                    .unwrap_or(defaults.failed_login_rate.burst),
                per_second: self
                    .failed_login_rate
                    .unwrap_or(defaults.failed_login_rate.per_second),
            },
            write_timeout: ms(self.write_timeout_ms, defaults.write_timeout),
            shutdown_timeout: ms(self.shutdown_timeout_ms, defaults.shutdown_timeout),
            retry_after: defaults.retry_after,
            reactor_threads: self.reactor_threads.unwrap_or(defaults.reactor_threads),
        })
    }
}

fn parse_policy(text: &str) -> Result<ConflictPolicy, String> {
    match text {
        "replace-older" => Ok(ConflictPolicy::ReplaceOlder),
        "reject-newer" => Ok(ConflictPolicy::RejectNewer),
        "allow-many" => Ok(ConflictPolicy::AllowMany),
        other => Err(format!(
            "unknown conflict policy {other:?}: use replace-older, reject-newer or allow-many"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_file_sets_options_and_listeners() {
        let settings: Settings = toml::from_str(
            r#"
            tcp = "127.0.0.1:9000"
            ws = "off"
            heartbeat_ms = 5000
            max_unacked_events = 64
            conflict = "reject-newer"
            conflict_device = ["bot=allow-many"]
            failed_login_burst = 3
            "#,
        )
        .unwrap();
        let options = settings.options().unwrap();
        assert_eq!(options.core.heartbeat, Duration::from_secs(5));
        assert_eq!(options.core.max_unacked_events, 64);
        assert_eq!(options.conflict.default, ConflictPolicy::RejectNewer);
        assert_eq!(
            options.conflict.policy_for("bot"),
            ConflictPolicy::AllowMany
        );
        assert_eq!(options.failed_login_rate.burst, 3);
        let listeners = settings.listeners().unwrap();
        assert_eq!(
            listeners,
            [Listen::Tcp {
                addr: "127.0.0.1:9000".parse().unwrap()
            }]
        );
    }

    #[test]
    fn the_defaults_are_tcp_7700_and_ws_7701() {
        let listeners = Settings::default().listeners().unwrap();
        assert_eq!(listeners.len(), 2);
        assert_eq!(
            listeners[1],
            Listen::Ws {
                addr: "127.0.0.1:7701".parse().unwrap(),
                path: "/session".into()
            }
        );
        assert_eq!(
            Settings::default().options().unwrap(),
            ServerOptions {
                core: ServerConfig::default(),
                ..ServerOptions::default()
            }
        );
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(toml::from_str::<Settings>("no_such_setting = 1").is_err());
        let bad_policy = Settings {
            conflict: Some("whatever".into()),
            ..Settings::default()
        };
        assert!(bad_policy.options().unwrap_err().contains("whatever"));
        let tls_without_cert = Settings {
            tls: Some("127.0.0.1:7702".into()),
            ..Settings::default()
        };
        assert!(tls_without_cert.listeners().unwrap_err().contains("--cert"));
        // And a certificate with no TLS listener to serve.
        for (cert, key) in [
            (Some("c.pem"), Some("k.pem")),
            (Some("c.pem"), None),
            (None, Some("k.pem")),
        ] {
            let cert_without_tls = Settings {
                cert: cert.map(PathBuf::from),
                key: key.map(PathBuf::from),
                ..Settings::default()
            };
            let error = cert_without_tls.listeners().unwrap_err();
            assert!(error.contains("neither is on"), "{error}");
            let with_wss = Settings {
                wss: Some("127.0.0.1:7703".into()),
                ..cert_without_tls
            };
            if cert.is_some() && key.is_some() {
                assert_eq!(with_wss.listeners().unwrap().len(), 3);
            } else {
                assert!(
                    with_wss
                        .listeners()
                        .unwrap_err()
                        .contains("need --cert and --key")
                );
            }
        }
        let all_off = Settings {
            tcp: Some("off".into()),
            ws: Some("off".into()),
            ..Settings::default()
        };
        assert!(all_off.listeners().is_err());
        let relative_path = Settings {
            ws_path: Some("session".into()),
            ..Settings::default()
        };
        assert!(relative_path.listeners().unwrap_err().contains("'/'"));
    }

    #[test]
    fn values_that_leave_no_session_usable_are_refused() {
        let zero = |settings: Settings| settings.options().unwrap_err();
        assert!(
            zero(Settings {
                heartbeat_ms: Some(0),
                min_heartbeat_ms: Some(0),
                ..Settings::default()
            })
            .contains("above 0")
        );
        assert!(
            zero(Settings {
                max_frame_len: Some(0),
                ..Settings::default()
            })
            .contains("max_frame_len")
        );
        assert!(
            zero(Settings {
                max_pending_requests: Some(0),
                ..Settings::default()
            })
            .contains("max_pending_requests")
        );
        for rate in [-1.0, f64::NAN, f64::INFINITY] {
            let error = zero(Settings {
                connection_rate: Some(rate),
                ..Settings::default()
            });
            assert!(error.contains("connection_rate"), "{rate}: {error}");
        }
        // Zero is allowed: each address then has its burst, never refilled.
        assert!(
            Settings {
                connection_rate: Some(0.0),
                ..Settings::default()
            }
            .options()
            .is_ok()
        );
    }
}
