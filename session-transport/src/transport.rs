//! `Transport`: one established connection of any kind, as a `Stream` of
//! incoming frames and a `Sink` of outgoing frames.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
#[cfg(feature = "tls")]
use tokio::io::AsyncWrite;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
#[cfg(feature = "tls")]
use tokio_util::codec::Framed;

use crate::FrameCodec;
use crate::TransportError;
use crate::lean::LeanFramed;
use crate::ws::{self, WsStream};

#[cfg(feature = "tls")]
pub(crate) type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// The four kinds of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Varint-delimited frames over TCP (`tcp://`).
    Tcp,
    /// Varint-delimited frames over TLS over TCP (`tls://`).
    Tls,
    /// One binary WebSocket message per frame (`ws://`).
    Ws,
    /// One binary WebSocket message per frame, over TLS (`wss://`).
    Wss,
}

impl TransportKind {
    /// All four, for tests and listings.
    pub const ALL: [TransportKind; 4] = [Self::Tcp, Self::Tls, Self::Ws, Self::Wss];

    /// The URL scheme: `tcp`, `tls`, `ws` or `wss`.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// Whether the kind runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// Whether the kind is WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// The connection underneath, one variant per kind; TLS variants are boxed
/// because rustls' state is large (one allocation per connection, none per
/// frame).
#[derive(Debug)]
enum Inner {
    Tcp(LeanFramed),
    #[cfg(feature = "tls")]
    Tls(Box<Framed<TlsStream, FrameCodec>>),
    Ws(Box<WsStream<TcpStream>>),
    #[cfg(feature = "tls")]
    Wss(Box<WsStream<TlsStream>>),
}

/// An established connection of any kind, carrying bare frames (one
/// protobuf message each, as `poll_transmit(buf, Framing::Bare)` produces
/// them): a [`Stream`] of incoming frames and a [`Sink`] of outgoing ones.
///
/// Made by [`connect`](crate::connect) on the client side and by
/// [`Accepted::handshake`](crate::Accepted::handshake) on the server side.
///
/// - Reading yields `Ok(frame)` per frame, `None` when the peer closed
///   cleanly, and at most one `Err`: after an error the stream ends, while
///   the sink still works, so a close signal can be written.
/// - Incoming frames over [`max_frame_len`](Self::max_frame_len) fail with
///   [`TransportError::FrameTooLarge`] before their bytes are reserved. The
///   limit changes at any time with
///   [`set_max_frame_len`](Self::set_max_frame_len).
/// - Writing buffers small frames; `flush` sends them. `close` flushes,
///   sends a WebSocket close frame where there is one, and shuts the
///   connection down; [`close_with_linger`](Self::close_with_linger) also
///   waits for the peer to read it.
#[derive(Debug)]
pub struct Transport {
    inner: Inner,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    read_done: bool,
    write_closed: bool,
}

impl Transport {
    pub(crate) fn tcp(stream: TcpStream, codec: FrameCodec, buffers: Buffers) -> Self {
        Self::new(
            Inner::Tcp(LeanFramed::new(stream, codec, buffers.read, buffers.write)),
            buffers.addrs,
        )
    }

    #[cfg(feature = "tls")]
    pub(crate) fn tls(stream: TlsStream, codec: FrameCodec, buffers: Buffers) -> Self {
        Self::new(
            Inner::Tls(Box::new(framed(stream, codec, buffers))),
            buffers.addrs,
        )
    }

    pub(crate) fn ws(stream: WsStream<TcpStream>, addrs: (SocketAddr, SocketAddr)) -> Self {
        Self::new(Inner::Ws(Box::new(stream)), addrs)
    }

    #[cfg(feature = "tls")]
    pub(crate) fn wss(stream: WsStream<TlsStream>, addrs: (SocketAddr, SocketAddr)) -> Self {
        Self::new(Inner::Wss(Box::new(stream)), addrs)
    }

    fn new(inner: Inner, (peer_addr, local_addr): (SocketAddr, SocketAddr)) -> Self {
        Self {
            inner,
            peer_addr,
            local_addr,
            read_done: false,
            write_closed: false,
        }
    }

    /// The kind of transport.
    pub fn kind(&self) -> TransportKind {
        match self.inner {
            Inner::Tcp(_) => TransportKind::Tcp,
            #[cfg(feature = "tls")]
            Inner::Tls(_) => TransportKind::Tls,
            Inner::Ws(_) => TransportKind::Ws,
            #[cfg(feature = "tls")]
            Inner::Wss(_) => TransportKind::Wss,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// This side's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The largest incoming frame accepted now.
    pub fn max_frame_len(&self) -> usize {
        match &self.inner {
            Inner::Tcp(framed) => framed.codec().max_frame_len(),
            #[cfg(feature = "tls")]
            Inner::Tls(framed) => framed.codec().max_frame_len(),
            Inner::Ws(ws) => ws.get_ref().max_message_len(),
            #[cfg(feature = "tls")]
            Inner::Wss(ws) => ws.get_ref().max_message_len(),
        }
    }

    /// Changes the largest incoming frame accepted from the next frame on:
    /// small before login, the session's `max_frame_len()` after.
    ///
    /// On WebSocket, the library underneath also enforces the
    /// `max_frame_len` the transport was made with (the post-login limit of
    /// [`ListenerConfig`](crate::ListenerConfig) or
    /// [`ConnectOptions`](crate::ConnectOptions)) and cannot change it on a
    /// live connection, so a limit raised above that has no effect.
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        match &mut self.inner {
            Inner::Tcp(framed) => framed.codec_mut().set_max_frame_len(max_frame_len),
            #[cfg(feature = "tls")]
            Inner::Tls(framed) => framed.codec_mut().set_max_frame_len(max_frame_len),
            Inner::Ws(ws) => ws.get_mut().set_max_message_len(max_frame_len),
            #[cfg(feature = "tls")]
            Inner::Wss(ws) => ws.get_mut().set_max_message_len(max_frame_len),
        }
    }

    /// For a plain TCP transport with nothing left to write: the socket and
    /// the bytes already read from it but not yet taken as frames, so that a
    /// driver of its own (a server's reactor, say) can carry on where this
    /// transport stops. `None` (and the connection dropped) for any other
    /// kind, or with unflushed output: check [`kind`](Self::kind) first.
    pub fn into_tcp(self) -> Option<(TcpStream, bytes::BytesMut)> {
        match self.inner {
            Inner::Tcp(framed) if framed.write_is_empty() && !self.write_closed => {
                Some(framed.into_parts())
            }
            _ => None,
        }
    }

    /// For a WebSocket transport over plain TCP whose every message read so
    /// far has been taken, with no message begun and unfinished, no control
    /// frame among them and nothing left to write: the socket, so that a driver of its own can carry on
    /// with the framing of [`ws_frames`](crate::ws_frames) (the upgrade is
    /// done). `None` (and the connection dropped) otherwise: check
    /// [`ws_ready_to_hand_on`](Self::ws_ready_to_hand_on) first.
    pub fn into_ws_tcp(self) -> Option<TcpStream> {
        if !self.ws_ready_to_hand_on() {
            return None;
        }
        match self.inner {
            Inner::Ws(ws) => Some((*ws).into_inner().into_inner()),
            _ => None,
        }
    }

    /// Whether [`into_ws_tcp`](Self::into_ws_tcp) would give the socket.
    pub fn ws_ready_to_hand_on(&self) -> bool {
        matches!(&self.inner, Inner::Ws(ws) if ws.get_ref().all_taken()) && !self.write_closed
    }

    /// Closes the transport (as [`SinkExt::close`]: flush, WebSocket close
    /// frame, shutdown of the write side), then reads and discards what the
    /// peer still sends until it closes too or `linger` has passed.
    ///
    /// Dropping a socket with unread incoming data makes the kernel send a
    /// reset, which can destroy data the peer has not read yet: the close
    /// signal a server just wrote to a misbehaving peer. Lingering lets it
    /// arrive.
    pub async fn close_with_linger(mut self, linger: Duration) -> Result<(), TransportError> {
        let now = tokio::time::Instant::now().into_std();
        let deadline: tokio::time::Instant = session_core::deadline_after(now, linger).into();
        let closed = tokio::time::timeout_at(deadline, SinkExt::close(&mut self))
            .await
            .unwrap_or(Err(TransportError::TimedOut { stage: "close" }));
        let _ = tokio::time::timeout_at(deadline, self.discard_input()).await;
        closed
    }

    /// Reads raw input until the end of the stream or an error.
    async fn discard_input(&mut self) {
        async fn drain(stream: &mut (impl AsyncRead + Unpin)) {
            let mut scratch = [0u8; 1024];
            while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
        }
        match &mut self.inner {
            Inner::Tcp(framed) => drain(framed.get_mut()).await,
            #[cfg(feature = "tls")]
            Inner::Tls(framed) => drain(framed.get_mut()).await,
            Inner::Ws(ws) => drain(ws.get_mut().get_mut()).await,
            #[cfg(feature = "tls")]
            Inner::Wss(ws) => drain(ws.get_mut().get_mut()).await,
        }
    }
}

/// Read buffer, write buffer and addresses of a new byte-stream transport.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buffers {
    pub(crate) read: usize,
    pub(crate) write: usize,
    pub(crate) addrs: (SocketAddr, SocketAddr),
}

#[cfg(feature = "tls")]
fn framed<S>(stream: S, codec: FrameCodec, buffers: Buffers) -> Framed<S, FrameCodec>
where
    S: AsyncRead + AsyncWrite,
{
    let mut framed = Framed::with_capacity(stream, codec, buffers.read);
    framed.set_backpressure_boundary(buffers.write);
    framed
}

/// Errors of a TLS record layer come as `InvalidData` I/O errors.
#[cfg(feature = "tls")]
fn tls_error(error: TransportError) -> TransportError {
    match error {
        TransportError::Io(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            TransportError::Tls(error)
        }
        other => other,
    }
}

impl Stream for Transport {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.read_done {
            return Poll::Ready(None);
        }
        let item = match &mut this.inner {
            Inner::Tcp(framed) => ready!(framed.poll_next_unpin(cx)),
            #[cfg(feature = "tls")]
            Inner::Tls(framed) => ready!(framed.poll_next_unpin(cx)).map(|r| r.map_err(tls_error)),
            Inner::Ws(ws) => ready!(ws::poll_frame(ws, cx)),
            #[cfg(feature = "tls")]
            Inner::Wss(ws) => ready!(ws::poll_frame(ws, cx)).map(|r| r.map_err(tls_error)),
        };
        if !matches!(item, Some(Ok(_))) {
            this.read_done = true;
        }
        Poll::Ready(item)
    }
}

impl Sink<Bytes> for Transport {
    type Error = TransportError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Err(TransportError::Closed));
        }
        match &mut this.inner {
            Inner::Tcp(framed) => framed.poll_ready_unpin(cx),
            #[cfg(feature = "tls")]
            Inner::Tls(framed) => framed.poll_ready_unpin(cx).map_err(tls_error),
            Inner::Ws(ws) => ws::poll_ready(ws, cx),
            #[cfg(feature = "tls")]
            Inner::Wss(ws) => ws::poll_ready(ws, cx).map_err(tls_error),
        }
    }

    fn start_send(self: Pin<&mut Self>, frame: Bytes) -> Result<(), TransportError> {
        let this = self.get_mut();
        if this.write_closed {
            return Err(TransportError::Closed);
        }
        match &mut this.inner {
            Inner::Tcp(framed) => framed.start_send_unpin(frame),
            #[cfg(feature = "tls")]
            Inner::Tls(framed) => framed.start_send_unpin(frame),
            Inner::Ws(ws) => ws::start_send(ws, frame),
            #[cfg(feature = "tls")]
            Inner::Wss(ws) => ws::start_send(ws, frame).map_err(tls_error),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Ok(()));
        }
        match &mut this.inner {
            Inner::Tcp(framed) => framed.poll_flush_unpin(cx),
            #[cfg(feature = "tls")]
            Inner::Tls(framed) => framed.poll_flush_unpin(cx).map_err(tls_error),
            Inner::Ws(ws) => ws::poll_flush(ws, cx),
            #[cfg(feature = "tls")]
            Inner::Wss(ws) => ws::poll_flush(ws, cx).map_err(tls_error),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Ok(()));
        }
        let result = ready!(match &mut this.inner {
            Inner::Tcp(framed) => framed.poll_close_unpin(cx),
            #[cfg(feature = "tls")]
            Inner::Tls(framed) => framed.poll_close_unpin(cx).map_err(tls_error),
            Inner::Ws(ws) => ws::poll_close(ws, cx),
            #[cfg(feature = "tls")]
            Inner::Wss(ws) => ws::poll_close(ws, cx).map_err(tls_error),
        });
        this.write_closed = true;
        Poll::Ready(result)
    }
}
