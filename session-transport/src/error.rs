//! `TransportError`: what went wrong with a connection, named by meaning.

use std::io;
use std::path::PathBuf;

use session_core::{CloseCode, ProtocolError};

use crate::TransportKind;

/// A boxed error from a library underneath (the WebSocket implementation),
/// kept as the source without making its type part of this API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why connecting, handshaking, reading or writing failed.
///
/// Errors that the peer caused by sending something it must not
/// ([`FrameTooLarge`](Self::FrameTooLarge),
/// [`ProtocolViolation`](Self::ProtocolViolation),
/// [`WebSocketViolation`](Self::WebSocketViolation)) carry a
/// [`close_code`](Self::close_code) and a
/// [`protocol_error`](Self::protocol_error) for the session core, and leave
/// the transport able to write: the server hands the error to
/// `ServerSession::handle_protocol_error` and delivers the close signal over
/// the same transport. After any error, the transport yields no more frames.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The URL is not one this crate can connect to.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nothing listens at the address (connection refused).
    #[error("connection refused by {addr}")]
    Refused {
        /// The address dialled, as `host:port`.
        addr: String,
    },
    /// The TCP connection could not be made for another reason (name
    /// resolution, unreachable network).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled, as `host:port`.
        addr: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A deadline passed: the connect timeout on the client, the login
    /// deadline during a server-side handshake.
    #[error("timed out during {stage}")]
    TimedOut {
        /// What was in progress: "connect", "TLS handshake" or "WebSocket upgrade".
        stage: &'static str,
    },
    /// A `tls://` or `wss://` transport without a TLS configuration (root
    /// certificates on the client, a certificate and key on the server).
    #[error("{kind} needs a TLS configuration")]
    MissingTlsConfig {
        /// The kind asked for.
        kind: TransportKind,
    },
    /// The crate was built without the `tls` feature.
    #[error("{kind} needs the `tls` feature of session-transport")]
    TlsUnavailable {
        /// The kind asked for.
        kind: TransportKind,
    },
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load {}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Certificates or keys were refused when building a TLS configuration.
    #[cfg(feature = "tls")]
    #[error("invalid TLS configuration: {0}")]
    TlsConfig(#[source] tokio_rustls::rustls::Error),
    /// The TLS handshake failed (bad certificate, no common cipher, not TLS
    /// at all) or a TLS record was invalid.
    #[error("tls failure: {0}")]
    Tls(#[source] io::Error),
    /// The WebSocket upgrade failed: not an HTTP upgrade request, wrong
    /// path, subprotocol `session.v1` not offered or not chosen, or an HTTP
    /// error status from the server.
    #[error("websocket upgrade failed: {0}")]
    Upgrade(#[source] BoxError),
    /// The peer closed or reset the connection where a clean end was not
    /// possible: in the middle of a frame or a handshake, or without the
    /// WebSocket or TLS closing handshake.
    #[error("connection closed by the peer")]
    PeerClosed,
    /// The peer sent (or declared, in a length prefix or a WebSocket frame
    /// header) a frame over the limit in force. Nothing of that size was
    /// allocated.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The declared or actual length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The peer broke the framing: an invalid length prefix, or a text
    /// WebSocket message where only binary messages carry frames.
    #[error("protocol violation: {0}")]
    ProtocolViolation(ProtocolError),
    /// The peer broke the WebSocket protocol itself (unmasked or fragmented
    /// control frames, reserved bits, invalid opcodes and the like).
    #[error("websocket protocol violation: {0}")]
    WebSocketViolation(#[source] BoxError),
    /// The transport was already closed, by this side or after an error.
    #[error("transport closed")]
    Closed,
    /// Another I/O error from the operating system.
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
}

/// What `protocol_error` reports for a text WebSocket message.
pub(crate) const TEXT_MESSAGE: ProtocolError = ProtocolError::UnexpectedFrame {
    frame: "text message",
    state: "expecting binary messages",
};

/// What `protocol_error` reports for a broken WebSocket frame.
pub(crate) const MALFORMED_WEBSOCKET: ProtocolError = ProtocolError::UnexpectedFrame {
    frame: "malformed WebSocket",
    state: "reading messages",
};

impl TransportError {
    /// The close code a session ends with because of this error, when the
    /// peer caused it: `POLICY_VIOLATION` for a frame over the limit,
    /// `PROTOCOL_ERROR` for broken framing. `None` for errors that are not
    /// the peer's misbehaviour (timeouts, closed connections, I/O).
    pub fn close_code(&self) -> Option<CloseCode> {
        self.protocol_error().map(|error| error.close_code())
    }

    /// The peer's misbehaviour as the session core names it, for
    /// `ServerSession::handle_protocol_error`; `None` when the peer did
    /// nothing wrong at the protocol level.
    pub fn protocol_error(&self) -> Option<ProtocolError> {
        match self {
            Self::FrameTooLarge { len, max } => Some(ProtocolError::FrameTooLarge {
                len: *len,
                max: *max,
            }),
            Self::ProtocolViolation(error) => Some(error.clone()),
            Self::WebSocketViolation(_) => Some(MALFORMED_WEBSOCKET),
            _ => None,
        }
    }

    /// The error for a text message received on a WebSocket transport.
    pub(crate) fn text_message() -> Self {
        Self::ProtocolViolation(TEXT_MESSAGE)
    }

    /// Whether the connection is simply gone — the peer closed or reset it,
    /// or it was already closed here — as opposed to a misbehaving peer, a
    /// timeout or a local failure: the session is merely disconnected.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, Self::PeerClosed | Self::Closed)
    }
}

impl From<ProtocolError> for TransportError {
    fn from(error: ProtocolError) -> Self {
        match error {
            ProtocolError::FrameTooLarge { len, max } => Self::FrameTooLarge { len, max },
            other => Self::ProtocolViolation(other),
        }
    }
}

impl From<io::Error> for TransportError {
    fn from(error: io::Error) -> Self {
        if is_disconnect(&error) {
            Self::PeerClosed
        } else {
            Self::Io(error)
        }
    }
}

/// Whether an I/O error means the peer closed or reset the connection.
pub(crate) fn is_disconnect(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}
