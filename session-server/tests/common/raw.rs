//! A raw peer for bad-input tests: a TCP socket (upgraded by hand for
//! WebSocket) that writes whatever bytes a test wants, frames them itself,
//! reads the server's frames back, and can reset the connection.

use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use session_core::proto::prost::Message;
use session_core::proto::v1::{self, client_frame, server_frame};
use session_core::{CloseCode, RejectCode, SessionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{SOON, password};

/// How the server ended a raw peer's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A close signal with this code, then the end of the connection.
    CloseSignal(CloseCode),
    /// `LoginRejected` with this code, then the end of the connection.
    Rejected(RejectCode),
    /// The connection ended with no close signal and no rejection.
    Silent,
}

/// What the server granted a raw login or resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The session.
    pub session_id: SessionId,
    /// The resume token to use next.
    pub token: Bytes,
    /// Whether it was a resume.
    pub resumed: bool,
}

/// The bytes of a client's WebSocket upgrade request for `/session`, with
/// the `session.v1` subprotocol.
pub fn upgrade_request() -> &'static str {
    "GET /session HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: session.v1\r\n\r\n"
}

/// A client WebSocket frame header (FIN set, masked with a zero key, so the
/// payload goes as it is) declaring `len` bytes.
pub fn ws_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut header = vec![0x80 | opcode];
    match len {
        0..=125 => header.push(0x80 | len as u8),
        126..=0xffff => {
            header.push(0x80 | 126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(0x80 | 127);
            header.extend_from_slice(&len.to_be_bytes());
        }
    }
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

/// The varint length prefix of a TCP frame.
pub fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A `Login` frame for `user` (with the demo password), optionally resuming.
pub fn login_frame(user: &str, device: &str, resume: Option<v1::Resume>) -> Bytes {
    login_frame_with(user, password(user), device, resume)
}

/// A `Login` frame for `user` with `credential`, optionally resuming.
pub fn login_frame_with(
    user: &str,
    credential: &[u8],
    device: &str,
    resume: Option<v1::Resume>,
) -> Bytes {
    frame(client_frame::Kind::Login(v1::Login {
        protocol_version: session_core::proto::PROTOCOL_VERSION,
        user_id: user.into(),
        credential: Bytes::copy_from_slice(credential),
        device: device.into(),
        requested_heartbeat_ms: 0,
        resume,
        properties: Default::default(),
    }))
}

/// A `Login` resuming `session` with `token`.
pub fn resume_frame(session: SessionId, token: &Bytes, last_event_seq: u64) -> Bytes {
    login_frame(
        "",
        "",
        Some(v1::Resume {
            session_id: session.0,
            resume_token: token.clone(),
            last_event_seq,
        }),
    )
}

/// Encodes one client frame.
pub fn frame(kind: client_frame::Kind) -> Bytes {
    v1::ClientFrame { kind: Some(kind) }.encode_to_vec().into()
}

/// A raw connection to one of the server's listeners.
#[derive(Debug)]
pub struct RawPeer {
    ws: bool,
    stream: TcpStream,
    inbox: BytesMut,
    /// A WebSocket message being reassembled from fragments.
    partial: BytesMut,
}

impl RawPeer {
    /// Connects to `addr`; for `kind` "ws", upgrades the connection by hand.
    pub async fn connect(addr: SocketAddr, kind: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connects");
        stream.set_nodelay(true).expect("nodelay");
        let mut peer = Self {
            ws: kind == "ws",
            stream,
            inbox: BytesMut::new(),
            partial: BytesMut::new(),
        };
        if peer.ws {
            peer.upgrade().await;
        }
        peer
    }

    /// Connects without any handshake (for stalling one).
    pub async fn connect_unupgraded(addr: SocketAddr) -> TcpStream {
        TcpStream::connect(addr).await.expect("connects")
    }

    /// A WebSocket peer on `stream`, from [`connect_unupgraded`](Self::connect_unupgraded):
    /// the stalled upgrade goes through now.
    pub async fn upgrade_later(stream: TcpStream) -> Self {
        let mut peer = Self {
            ws: true,
            stream,
            inbox: BytesMut::new(),
            partial: BytesMut::new(),
        };
        peer.upgrade().await;
        peer
    }

    async fn upgrade(&mut self) {
        self.stream
            .write_all(upgrade_request().as_bytes())
            .await
            .expect("writes the upgrade request");
        loop {
            if let Some(end) = self.inbox.windows(4).position(|w| w == b"\r\n\r\n") {
                let response = self.inbox.split_to(end + 4);
                let response = String::from_utf8_lossy(&response);
                assert!(response.starts_with("HTTP/1.1 101"), "{response}");
                return;
            }
            let n = tokio::time::timeout(SOON, self.stream.read_buf(&mut self.inbox))
                .await
                .expect("the upgrade is answered")
                .expect("reads the upgrade response");
            assert!(n > 0, "the server closed during the upgrade");
        }
    }

    /// The socket, for writing bytes that are not frames.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// A second handle on the same socket, for writing while this one
    /// reads.
    pub fn writer(&self) -> TcpStream {
        use std::os::fd::AsFd;
        let fd = self.stream.as_fd().try_clone_to_owned().expect("dup");
        let std = std::net::TcpStream::from(fd);
        std.set_nonblocking(true).expect("non-blocking");
        TcpStream::from_std(std).expect("registers")
    }

    /// Whether this is a WebSocket peer.
    pub fn is_ws(&self) -> bool {
        self.ws
    }

    /// `frame` as it goes on this peer's wire: length-prefixed on TCP, one
    /// binary message on WebSocket.
    pub fn wire(&self, frame: &[u8]) -> Vec<u8> {
        let mut out = if self.ws {
            ws_header(0x2, frame.len() as u64)
        } else {
            varint(frame.len() as u64)
        };
        out.extend_from_slice(frame);
        out
    }

    /// Writes raw bytes; false if the connection is gone.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Writes one frame; false if the connection is gone.
    pub async fn send_frame(&mut self, frame: &[u8]) -> bool {
        let wire = self.wire(frame);
        self.send_bytes(&wire).await
    }

    /// The next frame from the server; `None` when the connection ended
    /// (end of stream, reset, or a WebSocket close). Panics if nothing
    /// happens within [`SOON`].
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.parse()? {
                return Some(frame);
            }
            match tokio::time::timeout(SOON, self.stream.read_buf(&mut self.inbox)).await {
                Err(_) => panic!("the server neither sent a frame nor closed"),
                Ok(Ok(0) | Err(_)) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next frame, decoded.
    pub async fn next_kind(&mut self) -> Option<server_frame::Kind> {
        let frame = self.next_frame().await?;
        v1::ServerFrame::decode(frame)
            .expect("the server sends valid frames")
            .kind
    }

    /// Parses one frame from the inbox: `Some(Some(frame))`, `Some(None)`
    /// when more bytes are needed, `None` at a WebSocket close.
    fn parse(&mut self) -> Option<Option<Bytes>> {
        if !self.ws {
            let mut len = 0u64;
            for (i, byte) in self.inbox.iter().enumerate().take(10) {
                len |= u64::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    let total = i + 1 + len as usize;
                    if self.inbox.len() < total {
                        return Some(None);
                    }
                    self.inbox.advance(i + 1);
                    return Some(Some(self.inbox.split_to(len as usize).freeze()));
                }
            }
            return Some(None);
        }
        loop {
            if self.inbox.len() < 2 {
                return Some(None);
            }
            let (b0, b1) = (self.inbox[0], self.inbox[1]);
            let (mut at, mut len) = (2usize, u64::from(b1 & 0x7f));
            if len == 126 {
                if self.inbox.len() < 4 {
                    return Some(None);
                }
                len = u64::from(u16::from_be_bytes([self.inbox[2], self.inbox[3]]));
                at = 4;
            } else if len == 127 {
                if self.inbox.len() < 10 {
                    return Some(None);
                }
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&self.inbox[2..10]);
                len = u64::from_be_bytes(raw);
                at = 10;
            }
            // Frames from a server are never masked.
            if self.inbox.len() < at + len as usize {
                return Some(None);
            }
            self.inbox.advance(at);
            let payload = self.inbox.split_to(len as usize);
            match b0 & 0x0f {
                0x8 => return None,
                0x0 | 0x2 => {
                    self.partial.extend_from_slice(&payload);
                    if b0 & 0x80 != 0 {
                        return Some(Some(self.partial.split().freeze()));
                    }
                }
                // Pings, pongs (and text, which the server never sends).
                _ => {}
            }
        }
    }

    /// Reads until the connection ends; returns how it ended and every
    /// other frame received on the way.
    pub async fn ending(&mut self) -> (Ending, Vec<server_frame::Kind>) {
        let mut ending = Ending::Silent;
        let mut others = Vec::new();
        while let Some(kind) = self.next_kind().await {
            match kind {
                server_frame::Kind::CloseSignal(signal) => {
                    ending = Ending::CloseSignal(CloseCode::from_wire(signal.code));
                }
                server_frame::Kind::LoginRejected(rejected) => {
                    ending = Ending::Rejected(RejectCode::from_wire(rejected.code));
                }
                other => others.push(other),
            }
        }
        (ending, others)
    }

    /// Logs in as `user` (demo password) and returns the grant.
    pub async fn login(&mut self, user: &str, device: &str) -> Grant {
        assert!(self.send_frame(&login_frame(user, device, None)).await);
        self.grant()
            .await
            .unwrap_or_else(|code| panic!("login of {user} rejected: {code:?}"))
    }

    /// Sends a resume of `session` with `token`; returns the grant or the
    /// rejection code (a connection closed without an answer panics).
    pub async fn resume(
        &mut self,
        session: SessionId,
        token: &Bytes,
        last_event_seq: u64,
    ) -> Result<Grant, RejectCode> {
        assert!(
            self.send_frame(&resume_frame(session, token, last_event_seq))
                .await
        );
        self.grant().await
    }

    /// Reads the answer to a login; `None` if the connection closed first.
    pub async fn try_grant(&mut self) -> Option<Result<Grant, RejectCode>> {
        loop {
            match self.next_kind().await {
                Some(server_frame::Kind::LoginOk(ok)) => {
                    return Some(Ok(Grant {
                        session_id: SessionId(ok.session_id),
                        token: ok.resume_token,
                        resumed: ok.resumed,
                    }));
                }
                Some(server_frame::Kind::LoginRejected(rejected)) => {
                    return Some(Err(RejectCode::from_wire(rejected.code)));
                }
                Some(_) => {}
                None => return None,
            }
        }
    }

    /// Reads the answer to a login.
    pub async fn grant(&mut self) -> Result<Grant, RejectCode> {
        loop {
            match self.next_kind().await {
                Some(server_frame::Kind::LoginOk(ok)) => {
                    return Ok(Grant {
                        session_id: SessionId(ok.session_id),
                        token: ok.resume_token,
                        resumed: ok.resumed,
                    });
                }
                Some(server_frame::Kind::LoginRejected(rejected)) => {
                    return Err(RejectCode::from_wire(rejected.code));
                }
                Some(_) => {}
                None => panic!("the connection closed before the login was answered"),
            }
        }
    }

    /// Sends a heartbeat and waits for its answer; false if the connection
    /// ended first.
    pub async fn heartbeat(&mut self, ack_event_seq: u64) -> bool {
        let hb = frame(client_frame::Kind::Heartbeat(v1::Heartbeat {
            ack_event_seq,
            ack_request_id: 0,
        }));
        if !self.send_frame(&hb).await {
            return false;
        }
        loop {
            match self.next_kind().await {
                Some(server_frame::Kind::HeartbeatAck(_)) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }

    /// Aborts the connection with a TCP reset.
    pub fn reset(self) {
        let _ = self.stream.set_zero_linger();
    }
}
