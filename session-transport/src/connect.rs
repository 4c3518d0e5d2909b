//! The client side: `connect` to a URL, with a timeout over the TCP
//! connection, the TLS handshake and the WebSocket upgrade together.

#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use session_core::DEFAULT_MAX_FRAME_LEN;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::transport::Buffers;
use crate::ws::{self, WsGuard, WsStream};
use crate::{
    DEFAULT_READ_BUFFER_SIZE, DEFAULT_WRITE_BUFFER_SIZE, Endpoint, FrameCodec, Transport,
    TransportError, TransportKind,
};

/// How a client connects.
///
/// ```
/// use std::time::Duration;
/// use session_transport::ConnectOptions;
///
/// let mut options = ConnectOptions::default();
/// options.connect_timeout = Duration::from_secs(3);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The longest the TCP connection, the TLS handshake and the WebSocket
    /// upgrade may take together. Default 10 s.
    pub connect_timeout: Duration,
    /// The largest frame accepted from the server (the client session's
    /// `max_frame_len()`). Default 1 MiB.
    pub max_frame_len: usize,
    /// The initial read buffer of the connection. Default 4 KiB.
    pub read_buffer_size: usize,
    /// Outgoing frames are batched up to this size until the next flush.
    /// Default 4 KiB.
    pub write_buffer_size: usize,
    /// Whom to trust for `tls://` and `wss://`: see
    /// [`client_config_from_pem`](crate::tls::client_config_from_pem).
    /// Required for those kinds: there are no built-in roots.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            write_buffer_size: DEFAULT_WRITE_BUFFER_SIZE,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Connects to `url` (`tcp://`, `tls://`, `ws://` or `wss://`; see
/// [`Endpoint`]) within `options.connect_timeout`.
pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Transport, TransportError> {
    connect_to(&Endpoint::parse(url)?, options).await
}

/// Connects to a parsed [`Endpoint`] within `options.connect_timeout`.
pub async fn connect_to(
    endpoint: &Endpoint,
    options: &ConnectOptions,
) -> Result<Transport, TransportError> {
    let deadline: Instant =
        session_core::deadline_after(Instant::now().into_std(), options.connect_timeout).into();
    #[cfg(feature = "tls")]
    let tls = match (endpoint.kind().is_tls(), &options.tls) {
        (false, _) => None,
        (true, Some(config)) => Some(tokio_rustls::TlsConnector::from(Arc::clone(config))),
        (true, None) => {
            return Err(TransportError::MissingTlsConfig {
                kind: endpoint.kind(),
            });
        }
    };
    #[cfg(not(feature = "tls"))]
    if endpoint.kind().is_tls() {
        return Err(TransportError::TlsUnavailable {
            kind: endpoint.kind(),
        });
    }

    let authority = endpoint.authority();
    let tcp = timeout_at(
        deadline,
        TcpStream::connect((endpoint.host(), endpoint.port())),
    )
    .await
    .map_err(|_| TransportError::TimedOut { stage: "connect" })?
    .map_err(|source| match source.kind() {
        std::io::ErrorKind::ConnectionRefused => TransportError::Refused {
            addr: authority.clone(),
        },
        _ => TransportError::Connect {
            addr: authority.clone(),
            source,
        },
    })?;
    // Frames are small and latency matters more than packet count.
    tcp.set_nodelay(true)?;
    let addrs = (tcp.peer_addr()?, tcp.local_addr()?);
    let buffers = Buffers {
        read: options.read_buffer_size,
        write: options.write_buffer_size,
        addrs,
    };
    let codec = FrameCodec::new(options.max_frame_len);

    match endpoint.kind() {
        TransportKind::Tcp => Ok(Transport::tcp(tcp, codec, buffers)),
        TransportKind::Ws => Ok(Transport::ws(
            upgrade(tcp, endpoint, options, deadline).await?,
            addrs,
        )),
        #[cfg(feature = "tls")]
        kind @ (TransportKind::Tls | TransportKind::Wss) => {
            let Some(connector) = tls else {
                return Err(TransportError::MissingTlsConfig { kind });
            };
            let name =
                tokio_rustls::rustls::pki_types::ServerName::try_from(endpoint.host().to_owned())
                    .map_err(|_| TransportError::InvalidUrl {
                    url: endpoint.to_string(),
                    reason: "the host is not a valid TLS server name",
                })?;
            let stream = timeout_at(deadline, connector.connect(name, tcp))
                .await
                .map_err(|_| TransportError::TimedOut {
                    stage: "TLS handshake",
                })?
                .map_err(crate::listen::tls_handshake_error)?;
            let stream = tokio_rustls::TlsStream::from(stream);
            if kind == TransportKind::Tls {
                Ok(Transport::tls(stream, codec, buffers))
            } else {
                Ok(Transport::wss(
                    upgrade(stream, endpoint, options, deadline).await?,
                    addrs,
                ))
            }
        }
        #[cfg(not(feature = "tls"))]
        kind => Err(TransportError::TlsUnavailable { kind }),
    }
}

/// The client side of the WebSocket upgrade, before `deadline`.
async fn upgrade<S>(
    stream: S,
    endpoint: &Endpoint,
    options: &ConnectOptions,
    deadline: Instant,
) -> Result<WsStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = ws::config(
        options.max_frame_len,
        options.read_buffer_size,
        options.write_buffer_size,
    );
    let authority = endpoint.authority();
    let upgrade = ws::connect(
        WsGuard::client(stream, options.max_frame_len),
        endpoint.kind().is_tls(),
        &authority,
        endpoint.path(),
        config,
    );
    timeout_at(deadline, upgrade)
        .await
        .map_err(|_| TransportError::TimedOut {
            stage: "WebSocket upgrade",
        })?
}
