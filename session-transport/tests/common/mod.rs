//! Shared test helpers: a test PKI made with rcgen, listeners of every kind
//! on loopback, client options that trust the test PKI, real session frames.
// Each test binary uses a different part of the helpers, and the items are
// `pub` for the test files, not for a published API.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use session_core::proto::prost::Message;
use session_core::proto::v1::{ClientFrame, Request, client_frame::Kind};
use session_core::{Framing, encode_frame};
use session_transport::rustls::{ClientConfig, ServerConfig};
use session_transport::{
    ConnectOptions, Listener, ListenerConfig, Transport, TransportError, TransportKind, tls,
};

/// A generous bound for anything that should happen promptly.
pub const PROMPTLY: Duration = Duration::from_secs(5);

/// The test PKI: a CA, and a certificate it signed for `localhost` and
/// `127.0.0.1`, written as PEM files and loaded back.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("session-transport-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the PKI folder");

        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "session-transport test CA");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");

        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca)
            .expect("leaf certificate");

        let ca_pem = dir.join("ca.pem");
        let chain_pem = dir.join("server-chain.pem");
        let key_pem = dir.join("server-key.pem");
        std::fs::write(&ca_pem, ca.pem()).expect("write ca.pem");
        std::fs::write(&chain_pem, leaf.pem() + &ca.pem()).expect("write the chain");
        std::fs::write(&key_pem, leaf_key.serialize_pem()).expect("write the key");

        Pki {
            server: tls::server_config_from_pem(&chain_pem, &key_pem).expect("server config"),
            client: tls::client_config_from_pem(&ca_pem).expect("client config"),
            dir,
            ca_pem,
        }
    })
}

/// A listener configuration of `kind` on a free loopback port.
pub fn listener_config(kind: TransportKind) -> ListenerConfig {
    let mut config = ListenerConfig::new(kind, "127.0.0.1:0".parse().expect("address"));
    if kind.is_tls() {
        config.tls = Some(Arc::clone(&pki().server));
    }
    config
}

pub async fn listener(kind: TransportKind) -> Listener {
    Listener::bind(listener_config(kind))
        .await
        .expect("bind a listener")
}

/// Client options trusting the test CA.
pub fn client_options() -> ConnectOptions {
    let mut options = ConnectOptions::default();
    options.connect_timeout = PROMPTLY;
    options.tls = Some(Arc::clone(&pki().client));
    options
}

pub fn deadline_in(duration: Duration) -> Instant {
    Instant::now() + duration
}

/// Accepts one connection and completes its handshake.
pub async fn accept(listener: &Listener) -> Result<Transport, TransportError> {
    let accepted = listener.accept().await?;
    accepted.handshake(deadline_in(PROMPTLY)).await
}

/// A connected pair (server side, client side) of `kind`.
pub async fn pair(kind: TransportKind) -> (Transport, Transport) {
    let listener = listener(kind).await;
    let url = listener.url().expect("url");
    let options = client_options();
    let (server, client) = tokio::join!(
        accept(&listener),
        session_transport::connect(&url, &options)
    );
    (
        server.expect("server handshake"),
        client.expect("client connect"),
    )
}

/// A real session frame: a request with a body of `body_len` bytes, bare.
pub fn request_frame(request_id: u64, body_len: usize) -> Bytes {
    let frame = ClientFrame {
        kind: Some(Kind::Request(Request {
            request_id,
            body: vec![(request_id % 251) as u8; body_len].into(),
            ack_request_id: 0,
        })),
    };
    let mut buf = BytesMut::new();
    encode_frame(&frame, Framing::Bare, &mut buf);
    buf.freeze()
}

/// The request id of a frame made by [`request_frame`].
pub fn request_id(frame: &[u8]) -> u64 {
    match ClientFrame::decode(frame).expect("a ClientFrame") {
        ClientFrame {
            kind: Some(Kind::Request(request)),
        } => request.request_id,
        other => panic!("not a request: {other:?}"),
    }
}

/// Reads one frame within [`PROMPTLY`].
pub async fn next_frame(transport: &mut Transport) -> Option<Result<Bytes, TransportError>> {
    tokio::time::timeout(PROMPTLY, transport.next())
        .await
        .expect("a frame or the end of the stream, promptly")
}

/// A server that echoes every frame on every connection of `listener`,
/// each connection in its own task, until the listener task is aborted.
pub fn spawn_echo_server(listener: Listener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok(accepted) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut transport) = accepted.handshake(deadline_in(PROMPTLY)).await else {
                    return;
                };
                while let Some(Ok(frame)) = transport.next().await {
                    if transport.send(frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// Connects to an echo server and checks a round trip.
pub async fn echo_round_trip(url: &str) {
    let mut client = session_transport::connect(url, &client_options())
        .await
        .expect("connect to the echo server");
    let frame = request_frame(7, 100);
    client.send(frame.clone()).await.expect("send");
    let echoed = next_frame(&mut client)
        .await
        .expect("an echo")
        .expect("a frame");
    assert_eq!(echoed, frame);
    // Close cleanly, so that the server reports no failure for this one.
    client.close().await.expect("close");
}

/// How one connection of a [`ReportingServer`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The handshake failed.
    Handshake(TransportError),
    /// The stream ended: cleanly (`None`) or with an error, after which the
    /// server sent [`CLOSE_SIGNAL`] and closed.
    Ended(Option<TransportError>),
}

/// What the reporting server sends after a reading error, as a session
/// server sends its close signal.
pub const CLOSE_SIGNAL: &[u8] = b"close signal";

/// A server that handles each connection in its own task like a session
/// server would: handshake before a deadline, echo frames, and on a reading
/// error send [`CLOSE_SIGNAL`] and close; it reports how each ended.
pub struct ReportingServer {
    pub addr: std::net::SocketAddr,
    pub url: String,
    outcomes: tokio::sync::mpsc::UnboundedReceiver<Outcome>,
    task: tokio::task::JoinHandle<()>,
}

impl ReportingServer {
    pub async fn start(config: ListenerConfig, handshake_within: Duration) -> Self {
        let listener = Listener::bind(config).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let url = listener.url().expect("url");
        let (report, outcomes) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok(accepted) = listener.accept().await else {
                    continue;
                };
                let report = report.clone();
                tokio::spawn(async move {
                    let mut transport =
                        match accepted.handshake(deadline_in(handshake_within)).await {
                            Ok(transport) => transport,
                            Err(error) => {
                                let _ = report.send(Outcome::Handshake(error));
                                return;
                            }
                        };
                    let error = loop {
                        match transport.next().await {
                            Some(Ok(frame)) => {
                                if let Err(error) = transport.send(frame).await {
                                    break Some(error);
                                }
                            }
                            Some(Err(error)) => {
                                let _ = transport.send(Bytes::from_static(CLOSE_SIGNAL)).await;
                                break Some(error);
                            }
                            None => break None,
                        }
                    };
                    let _ = report.send(Outcome::Ended(error));
                    let _ = transport.close_with_linger(Duration::from_secs(1)).await;
                });
            }
        });
        Self {
            addr,
            url,
            outcomes,
            task,
        }
    }

    /// The next connection that did not end cleanly, within [`PROMPTLY`].
    pub async fn next_failure(&mut self) -> Outcome {
        tokio::time::timeout(PROMPTLY, async {
            loop {
                match self.outcomes.recv().await.expect("the server runs") {
                    Outcome::Ended(None) => continue,
                    failure => return failure,
                }
            }
        })
        .await
        .expect("a failed connection, promptly")
    }
}

impl Drop for ReportingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The bytes of a client's WebSocket upgrade request.
pub fn upgrade_request(path: &str, subprotocol: Option<&str>) -> String {
    let protocol = subprotocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
    )
}

/// Upgrades a raw TCP connection by hand, as a client, and checks the 101.
pub async fn raw_upgrade(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(upgrade_request("/session", Some("session.v1")).as_bytes())
        .await
        .expect("write the request");
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        stream
            .read_exact(&mut byte)
            .await
            .expect("read the response");
        response.push(byte[0]);
    }
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(response.contains("session.v1"), "{response}");
    stream
}

/// A client WebSocket frame (masked with a zero key unless `masked` is
/// false) declaring `declared_len` bytes, followed by `payload`.
pub fn ws_frame(fin: bool, opcode: u8, declared_len: u64, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut frame = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match declared_len {
        0..=125 => frame.push(mask_bit | declared_len as u8),
        126..=0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(declared_len as u16).to_be_bytes());
        }
        _ => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&declared_len.to_be_bytes());
        }
    }
    if masked {
        frame.extend_from_slice(&[0, 0, 0, 0]);
    }
    frame.extend_from_slice(payload);
    frame
}

/// Reads until the peer closes (or resets) the connection, within
/// [`PROMPTLY`].
pub async fn read_to_close(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    tokio::time::timeout(PROMPTLY, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection promptly");
    received
}
