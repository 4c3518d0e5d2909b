//! The server side: a `Listener` per kind, whose `accept` returns at once,
//! and `Accepted::handshake`, which does TLS and the WebSocket upgrade
//! before the login deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use session_core::{DEFAULT_MAX_FRAME_LEN, DEFAULT_PRE_LOGIN_MAX_FRAME_LEN};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout_at;

use crate::transport::Buffers;
use crate::ws::{self, WsGuard, WsStream};
use crate::{
    DEFAULT_READ_BUFFER_SIZE, DEFAULT_WRITE_BUFFER_SIZE, DEFAULT_WS_PATH, FrameCodec, Transport,
    TransportError, TransportKind,
};

/// What a [`Listener`] listens on and how its connections start.
///
/// ```
/// use session_transport::{ListenerConfig, TransportKind};
///
/// let config = ListenerConfig::new(TransportKind::Ws, "127.0.0.1:7701".parse().unwrap());
/// assert_eq!(config.ws_path, "/session");
/// assert_eq!(config.pre_login_max_frame_len, 4096);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// The kind of transport.
    pub kind: TransportKind,
    /// The address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// The WebSocket path; other paths are answered 404. Default `/session`.
    pub ws_path: String,
    /// The largest frame a new connection accepts, until
    /// [`Transport::set_max_frame_len`] raises it after login. Default 4 KiB.
    pub pre_login_max_frame_len: usize,
    /// The largest frame accepted after login (the server configuration's
    /// `max_frame_len`); on WebSocket it is also the library's fixed
    /// ceiling. Default 1 MiB.
    pub max_frame_len: usize,
    /// The initial read buffer of each connection. Default 4 KiB.
    pub read_buffer_size: usize,
    /// Outgoing frames are batched up to this size until the next flush.
    /// Default 4 KiB.
    pub write_buffer_size: usize,
    /// The certificate and key for `tls` and `wss`: see
    /// [`server_config_from_pem`](crate::tls::server_config_from_pem).
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl ListenerConfig {
    /// A listener of `kind` on `addr`, with the defaults.
    pub fn new(kind: TransportKind, addr: SocketAddr) -> Self {
        Self {
            kind,
            addr,
            ws_path: DEFAULT_WS_PATH.to_owned(),
            pre_login_max_frame_len: DEFAULT_PRE_LOGIN_MAX_FRAME_LEN,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            write_buffer_size: DEFAULT_WRITE_BUFFER_SIZE,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// The accept queue length asked of the kernel (which caps it at
/// `net.core.somaxconn`). tokio's (mio's) default is 128: a burst of more
/// logins than that in flight drops SYNs, and those clients wait a second
/// for the retry.
const BACKLOG: u32 = 4096;

/// Binds a listening socket with [`BACKLOG`] and address reuse (so a
/// restarted server can bind while old connections sit in TIME_WAIT).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// What every connection of a listener shares.
#[derive(Debug)]
struct Shared {
    config: ListenerConfig,
    /// The listener's own address when it is bound to one IP address: then
    /// every connection's local address, known without asking the kernel.
    /// `None` for a wildcard address, where it depends on the connection.
    local_addr: Option<SocketAddr>,
}

/// A bound listening socket of one kind.
///
/// The accept loop calls [`accept`](Self::accept), which returns as soon as
/// a TCP connection arrives, and hands the [`Accepted`] connection to its
/// own task, which calls [`Accepted::handshake`] with the login deadline. So
/// a peer that stalls in the TLS handshake or the WebSocket upgrade holds up
/// only its own task, and is dropped when its deadline passes.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    shared: Arc<Shared>,
}

impl Listener {
    /// Binds the socket. Fails for `tls` and `wss` without a TLS
    /// configuration.
    pub async fn bind(config: ListenerConfig) -> Result<Self, TransportError> {
        #[cfg(feature = "tls")]
        if config.kind.is_tls() && config.tls.is_none() {
            return Err(TransportError::MissingTlsConfig { kind: config.kind });
        }
        #[cfg(not(feature = "tls"))]
        if config.kind.is_tls() {
            return Err(TransportError::TlsUnavailable { kind: config.kind });
        }
        let tcp = bind_tcp(config.addr)?;
        let local_addr = Some(tcp.local_addr()?).filter(|addr| !addr.ip().is_unspecified());
        Ok(Self {
            tcp,
            shared: Arc::new(Shared { config, local_addr }),
        })
    }

    /// The kind of transport.
    pub fn kind(&self) -> TransportKind {
        self.shared.config.kind
    }

    /// The bound address (with the port chosen when binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        Ok(self.tcp.local_addr()?)
    }

    /// The URL clients connect to, for this listener's address and path.
    pub fn url(&self) -> Result<String, TransportError> {
        let addr = self.local_addr()?;
        let path = match self.kind() {
            TransportKind::Tcp | TransportKind::Tls => "",
            TransportKind::Ws | TransportKind::Wss => &self.shared.config.ws_path,
        };
        Ok(format!("{}://{addr}{path}", self.kind()))
    }

    /// Waits for the next TCP connection; does no handshake.
    ///
    /// An error concerns one connection attempt or a passing shortage (too
    /// many open files): log it and accept again, after a short pause when
    /// it repeats.
    pub async fn accept(&self) -> Result<Accepted, TransportError> {
        let (stream, peer_addr) = self.tcp.accept().await?;
        Ok(Accepted {
            stream,
            peer_addr,
            shared: Arc::clone(&self.shared),
        })
    }
}

/// A TCP connection accepted by a [`Listener`], before its handshake.
#[derive(Debug)]
pub struct Accepted {
    stream: TcpStream,
    peer_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Accepted {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The kind of transport this connection will be.
    pub fn kind(&self) -> TransportKind {
        self.shared.config.kind
    }

    /// Performs the TLS handshake and the WebSocket upgrade, as the kind
    /// requires, before `deadline` (the session's login deadline: a peer
    /// that stalls here is dropped like one that never logs in).
    ///
    /// The transport starts with `pre_login_max_frame_len`.
    pub async fn handshake(self, deadline: Instant) -> Result<Transport, TransportError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let config = &self.shared.config;
        // Frames are small and latency matters more than packet count.
        self.stream.set_nodelay(true)?;
        let local_addr = match self.shared.local_addr {
            Some(addr) => addr,
            None => self.stream.local_addr()?,
        };
        let addrs = (self.peer_addr, local_addr);
        let buffers = Buffers {
            read: config.read_buffer_size,
            write: config.write_buffer_size,
            addrs,
        };
        let codec = FrameCodec::new(config.pre_login_max_frame_len);
        // Boxed, each handshake in its own allocation of its own size (the
        // TLS handshake's is about 12 KB, the upgrade's far less), and
        // awaited at one point only: awaiting a plain TCP connection's
        // "handshake" costs no memory, and a WebSocket upgrade no room for
        // TLS.
        let handshake: Pin<Box<dyn Future<Output = Result<Transport, TransportError>> + Send>> =
            match config.kind {
                TransportKind::Tcp => return Ok(Transport::tcp(self.stream, codec, buffers)),
                TransportKind::Ws => Box::pin(self.upgrade_ws(deadline, buffers)),
                #[cfg(feature = "tls")]
                kind @ (TransportKind::Tls | TransportKind::Wss) => {
                    Box::pin(self.secure(kind, deadline, codec, buffers))
                }
                #[cfg(not(feature = "tls"))]
                kind => return Err(TransportError::TlsUnavailable { kind }),
            };
        handshake.await
    }

    /// The WebSocket upgrade.
    async fn upgrade_ws(
        self,
        deadline: tokio::time::Instant,
        buffers: Buffers,
    ) -> Result<Transport, TransportError> {
        let ws = upgrade(self.stream, &self.shared.config, deadline).await?;
        Ok(Transport::ws(ws, buffers.addrs))
    }

    /// The TLS handshake, then for `wss` the WebSocket upgrade.
    #[cfg(feature = "tls")]
    async fn secure(
        self,
        kind: TransportKind,
        deadline: tokio::time::Instant,
        codec: FrameCodec,
        buffers: Buffers,
    ) -> Result<Transport, TransportError> {
        let config = &self.shared.config;
        let stream = tls_accept(self.stream, config, deadline).await?;
        if kind == TransportKind::Tls {
            Ok(Transport::tls(stream, codec, buffers))
        } else {
            let ws = upgrade(stream, config, deadline).await?;
            Ok(Transport::wss(ws, buffers.addrs))
        }
    }
}

/// The server side of the TLS handshake, before `deadline`.
#[cfg(feature = "tls")]
async fn tls_accept(
    stream: TcpStream,
    config: &ListenerConfig,
    deadline: tokio::time::Instant,
) -> Result<crate::transport::TlsStream, TransportError> {
    let Some(tls) = &config.tls else {
        return Err(TransportError::MissingTlsConfig { kind: config.kind });
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
    let stream = timeout_at(deadline, acceptor.accept(stream))
        .await
        .map_err(|_| TransportError::TimedOut {
            stage: "TLS handshake",
        })?
        .map_err(tls_handshake_error)?;
    Ok(tokio_rustls::TlsStream::from(stream))
}

/// The server side of the WebSocket upgrade, before `deadline`.
async fn upgrade<S>(
    stream: S,
    config: &ListenerConfig,
    deadline: tokio::time::Instant,
) -> Result<WsStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ws_config = ws::config(
        config.max_frame_len,
        config.read_buffer_size,
        config.write_buffer_size,
    );
    let guard = WsGuard::server(stream, config.pre_login_max_frame_len);
    timeout_at(deadline, ws::accept(guard, &config.ws_path, ws_config))
        .await
        .map_err(|_| TransportError::TimedOut {
            stage: "WebSocket upgrade",
        })?
}

/// Maps an error of a TLS handshake: the peer going away is
/// [`TransportError::PeerClosed`], anything else a TLS failure.
#[cfg(feature = "tls")]
pub(crate) fn tls_handshake_error(error: std::io::Error) -> TransportError {
    if crate::error::is_disconnect(&error) {
        TransportError::PeerClosed
    } else {
        TransportError::Tls(error)
    }
}
