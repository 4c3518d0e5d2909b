//! The glue to `session-transport`: binding listeners from a [`Listen`],
//! and accepting.

use std::net::SocketAddr;
use std::time::Instant;

use session_transport::{
    Accepted, Listener, ListenerConfig, Transport, TransportError, TransportKind,
};

use crate::options::ServerOptions;
use crate::server::Listen;

/// A bound listener.
#[derive(Debug)]
pub(crate) struct Bound {
    listener: Listener,
    addr: SocketAddr,
}

/// Binds `listen` with the frame limits of `options`.
pub(crate) async fn bind(listen: &Listen, options: &ServerOptions) -> Result<Bound, String> {
    let (kind, addr, path, tls) = match listen {
        Listen::Tcp { addr } => (TransportKind::Tcp, *addr, None, None),
        Listen::Tls { addr, tls } => (TransportKind::Tls, *addr, None, Some(tls)),
        Listen::Ws { addr, path } => (TransportKind::Ws, *addr, Some(path), None),
        Listen::Wss { addr, path, tls } => (TransportKind::Wss, *addr, Some(path), Some(tls)),
    };
    let mut config = ListenerConfig::new(kind, addr);
    config.pre_login_max_frame_len = options.core.pre_login_max_frame_len;
    config.max_frame_len = options.core.max_frame_len;
    if let Some(path) = path {
        config.ws_path = path.clone();
        // tungstenite allocates its read buffer up front and keeps it for the
        // connection's life; it grows it for larger messages on demand, so
        // idle sessions only pay for a small one.
        config.read_buffer_size = 256;
    }
    if let Some(files) = tls {
        let tls = session_transport::tls::server_config_from_pem(&files.cert, &files.key)
            .map_err(|e| e.to_string())?;
        config.tls = Some(tls);
    }
    let listener = Listener::bind(config).await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    Ok(Bound { listener, addr })
}

impl Bound {
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next TCP connection, before any handshake.
    pub(crate) async fn accept(&mut self) -> Result<(Incoming, SocketAddr), TransportError> {
        let accepted = self.listener.accept().await?;
        let remote = accepted.peer_addr();
        Ok((Incoming(accepted), remote))
    }
}

/// A connection whose TLS handshake and WebSocket upgrade are still to do.
#[derive(Debug)]
pub(crate) struct Incoming(Accepted);

impl Incoming {
    /// Runs the handshakes before `deadline`.
    pub(crate) async fn handshake(self, deadline: Instant) -> Result<Transport, TransportError> {
        self.0.handshake(deadline).await
    }
}
