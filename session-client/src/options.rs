//! `ClientOptions`: timing, limits, TLS, acknowledgements and the listener.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use session_core::{ClientConfig, DEFAULT_MAX_FRAME_LEN};
use session_transport::{ConnectOptions, TransportError, rustls};

use crate::events::AckPolicy;
use crate::listener::ClientListener;

/// How a [`Client`](crate::Client) connects and behaves. Start from
/// `default()` and change what you need:
///
/// ```
/// use std::time::Duration;
/// use session_client::ClientOptions;
///
/// let mut options = ClientOptions::default();
/// options.heartbeat = Some(Duration::from_secs(10));
/// options.request_timeout = Duration::from_secs(5);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The heartbeat interval to ask for; the server clamps it to its range
    /// and its answer wins. `None` (the default) lets the server choose.
    pub heartbeat: Option<Duration>,
    /// How long a login or a resume waits for the server's answer. Default
    /// 10 s.
    pub login_timeout: Duration,
    /// How long a request waits for its response, counted from when it is
    /// sent (or from the call, while it waits for a free slot in the
    /// server's window of pending requests). Default 30 s.
    pub request_timeout: Duration,
    /// The connection is considered dead, and the session suspended, when
    /// nothing was heard from the server for this many heartbeat intervals.
    /// Default 2.
    pub silence_heartbeats: u32,
    /// The largest frame accepted from the server. Default 1 MiB.
    pub max_frame_len: usize,
    /// The longest the TCP connection, the TLS handshake and the WebSocket
    /// upgrade may take together. Default 10 s.
    pub connect_timeout: Duration,
    /// How long writing frames may take before the connection is
    /// considered lost. Default 10 s.
    pub write_timeout: Duration,
    /// After closing a connection, how long to keep reading (and
    /// discarding) what the server still sends, so that the close is
    /// orderly. Default 1 s; it runs in the background.
    pub close_linger: Duration,
    /// When pushed events are acknowledged. Default: when taken from the
    /// event stream.
    pub ack: AckPolicy,
    /// How long an acknowledgement may wait to be coalesced with later ones
    /// or to ride on a heartbeat. Default 1 s; zero sends each at once. It
    /// goes at once anyway when half the server's window of unacknowledged
    /// events is in use. Acknowledgements only let the server forget
    /// events, so waiting costs no event, only server memory.
    pub ack_delay: Duration,
    /// Whom to trust for `tls://` and `wss://` (required for those; there
    /// are no built-in roots). See [`with_tls_roots`](Self::with_tls_roots).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Callbacks for lifecycle changes. See
    /// [`with_listener`](Self::with_listener).
    pub listener: Option<Arc<dyn ClientListener>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let core = ClientConfig::default();
        Self {
            heartbeat: core.requested_heartbeat,
            login_timeout: core.login_timeout,
            request_timeout: core.request_timeout,
            silence_heartbeats: core.silence_heartbeats,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            close_linger: Duration::from_secs(1),
            ack: AckPolicy::default(),
            ack_delay: core.ack_delay,
            tls: None,
            listener: None,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("heartbeat", &self.heartbeat)
            .field("login_timeout", &self.login_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("silence_heartbeats", &self.silence_heartbeats)
            .field("max_frame_len", &self.max_frame_len)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("close_linger", &self.close_linger)
            .field("ack", &self.ack)
            .field("ack_delay", &self.ack_delay)
            .field("tls", &self.tls.is_some())
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

impl ClientOptions {
    /// Sets the lifecycle listener.
    #[must_use]
    pub fn with_listener(mut self, listener: impl ClientListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Trusts the root certificates of a PEM file for `tls://` and `wss://`.
    pub fn with_tls_roots(mut self, pem: impl AsRef<Path>) -> Result<Self, TransportError> {
        self.tls = Some(session_transport::tls::client_config_from_pem(pem)?);
        Ok(self)
    }

    pub(crate) fn core_config(&self) -> ClientConfig {
        ClientConfig {
            requested_heartbeat: self.heartbeat,
            login_timeout: self.login_timeout,
            request_timeout: self.request_timeout,
            silence_heartbeats: self.silence_heartbeats,
            max_frame_len: self.max_frame_len,
            ack_delay: self.ack_delay,
        }
    }

    pub(crate) fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::default();
        options.connect_timeout = self.connect_timeout;
        options.max_frame_len = self.max_frame_len;
        options.tls = self.tls.clone();
        options
    }
}
