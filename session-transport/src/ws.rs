//! WebSocket: the upgrade on both sides, the configuration of tungstenite,
//! and `WsGuard`, which enforces the live frame limit on frame headers
//! before tungstenite reserves a message's buffer, and refuses close frames
//! RFC 6455 forbids before tungstenite takes them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::Response as ClientResponse;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, Uri, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{ClientRequestBuilder, Error as WsError, Message};
use tokio_tungstenite::tungstenite::{
    error::CapacityError, error::ProtocolError as WsProtocolError,
};

use crate::error::is_disconnect;
use crate::ws_frames::is_valid_close_payload;
use crate::{TransportError, WS_SUBPROTOCOL};

/// A WebSocket connection as a transport holds it.
pub(crate) type WsStream<S> = WebSocketStream<WsGuard<S>>;

/// The tungstenite settings of every connection. `ceiling` is the largest
/// frame ever accepted on the connection (the post-login limit): tungstenite
/// cannot change its limits on a live `WebSocketStream`, so it enforces this
/// fixed ceiling while [`WsGuard`] enforces the limit in force.
pub(crate) fn config(ceiling: usize, read_buffer: usize, write_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        // tungstenite allocates the read buffer up front (128 KiB by default).
        .read_buffer_size(read_buffer.max(MIN_READ_BUFFER))
        // Small frames are batched until this size or the next flush.
        .write_buffer_size(write_buffer.min(usize::MAX - 1))
        // `Sink::poll_ready` flushes before accepting more once a write
        // would block, so the buffer holds at most `write_buffer` plus one
        // frame; no further cap is needed (and tungstenite requires this to
        // be above `write_buffer_size`).
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(ceiling))
        .max_frame_size(Some(ceiling))
        .accept_unmasked_frames(false)
}

/// Below this, tungstenite would read a frame header in several system calls.
const MIN_READ_BUFFER: usize = 256;

/// Performs the server side of the upgrade on `stream`: the request must be
/// for `path` and offer the subprotocol [`WS_SUBPROTOCOL`]. Other paths get
/// 404, a missing subprotocol 400.
pub(crate) async fn accept<S>(
    stream: WsGuard<S>,
    path: &str,
    config: WebSocketConfig,
) -> Result<WsStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The callback's error type is tungstenite's `ErrorResponse`, an HTTP
    // response sent once per rejected upgrade: its size does not matter.
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, mut response: Response| {
        if request.uri().path() != path {
            return Err(rejection(
                StatusCode::NOT_FOUND,
                "no session endpoint at this path",
            ));
        }
        if !offers_subprotocol(request) {
            return Err(rejection(
                StatusCode::BAD_REQUEST,
                "the subprotocol session.v1 is required",
            ));
        }
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(WS_SUBPROTOCOL),
        );
        Ok(response)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config))
        .await
        .map_err(upgrade_error)?;
    ws.get_mut().start_frames();
    Ok(ws)
}

fn rejection(status: StatusCode, body: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body.to_owned()));
    *response.status_mut() = status;
    response
}

fn offers_subprotocol(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|protocol| protocol.trim() == WS_SUBPROTOCOL)
}

/// Performs the client side of the upgrade: asks for `path` at `authority`
/// with the subprotocol [`WS_SUBPROTOCOL`] and checks the server chose it.
pub(crate) async fn connect<S>(
    stream: WsGuard<S>,
    secure: bool,
    authority: &str,
    path: &str,
    config: WebSocketConfig,
) -> Result<WsStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let scheme = if secure { "wss" } else { "ws" };
    let url = format!("{scheme}://{authority}{path}");
    let uri: Uri = url.parse().map_err(|_| TransportError::InvalidUrl {
        url,
        reason: "not a valid WebSocket URL",
    })?;
    let request = ClientRequestBuilder::new(uri).with_sub_protocol(WS_SUBPROTOCOL);
    let (ws, response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(upgrade_error)?;
    check_chosen_subprotocol(&response)?;
    Ok(ws)
}

fn check_chosen_subprotocol(response: &ClientResponse) -> Result<(), TransportError> {
    let chosen = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok());
    if chosen == Some(WS_SUBPROTOCOL) {
        Ok(())
    } else {
        Err(TransportError::Upgrade(
            format!("the server chose subprotocol {chosen:?}, not {WS_SUBPROTOCOL}").into(),
        ))
    }
}

/// Maps an error of the upgrade.
fn upgrade_error(error: WsError) -> TransportError {
    match error {
        WsError::Io(error) if is_disconnect(&error) => TransportError::PeerClosed,
        WsError::Io(error) => TransportError::Io(error),
        WsError::Protocol(WsProtocolError::HandshakeIncomplete) => TransportError::PeerClosed,
        other => TransportError::Upgrade(Box::new(other)),
    }
}

/// Maps an error on an established WebSocket.
pub(crate) fn stream_error(error: WsError) -> TransportError {
    match error {
        WsError::Io(error) => {
            if let Some(violation) = error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<GuardViolation>())
            {
                return violation.clone().into();
            }
            TransportError::from(error)
        }
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            TransportError::FrameTooLarge {
                len: size as u64,
                max: max_size,
            }
        }
        // tungstenite checks UTF-8 in text messages and in close frames'
        // reasons; `WsGuard` fails a close frame whose reason is not UTF-8
        // before tungstenite has all of it, so this is a text message's.
        WsError::Utf8(_) => TransportError::text_message(),
        WsError::Protocol(WsProtocolError::ResetWithoutClosingHandshake) => {
            TransportError::PeerClosed
        }
        WsError::Protocol(WsProtocolError::SendAfterClosing)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => TransportError::Closed,
        other => TransportError::WebSocketViolation(Box::new(other)),
    }
}

/// Takes the next frame (binary message) off a WebSocket: pings and pongs
/// are skipped (tungstenite answers pings), a close ends the stream once the
/// closing handshake is done, a text message is a protocol violation.
pub(crate) fn poll_frame<S>(
    ws: &mut WsStream<S>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Bytes, TransportError>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = match ready!(Pin::new(&mut *ws).poll_next(cx)) {
            None => return Poll::Ready(None),
            Some(Err(error)) => return Poll::Ready(Some(Err(stream_error(error)))),
            Some(Ok(message)) => message,
        };
        match message {
            Message::Binary(frame) => {
                // WsGuard has already checked the header; this is a backstop.
                let max = ws.get_ref().max_message_len();
                ws.get_mut().messages_taken += 1;
                if frame.len() > max {
                    return Poll::Ready(Some(Err(TransportError::FrameTooLarge {
                        len: frame.len() as u64,
                        max,
                    })));
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Message::Text(_) => return Poll::Ready(Some(Err(TransportError::text_message()))),
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
    }
}

/// `Sink::poll_ready` for a WebSocket.
pub(crate) fn poll_ready<S>(
    ws: &mut WsStream<S>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), TransportError>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Pin::new(ws).poll_ready(cx).map_err(stream_error)
}

/// `Sink::start_send` for a WebSocket: one binary message per frame.
pub(crate) fn start_send<S>(ws: &mut WsStream<S>, frame: Bytes) -> Result<(), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Pin::new(ws)
        .start_send(Message::Binary(frame))
        .map_err(stream_error)
}

/// `Sink::poll_flush` for a WebSocket.
pub(crate) fn poll_flush<S>(
    ws: &mut WsStream<S>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), TransportError>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Pin::new(ws).poll_flush(cx).map_err(stream_error)
}

/// `Sink::poll_close` for a WebSocket: sends a close frame, then shuts the
/// connection underneath down (TLS close_notify, TCP FIN).
pub(crate) fn poll_close<S>(
    ws: &mut WsStream<S>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), TransportError>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match ready!(Pin::new(&mut *ws).poll_close(cx)) {
        // Already closed by the closing handshake: shut down all the same.
        Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
        Err(error) => return Poll::Ready(Err(stream_error(error))),
    }
    Pin::new(ws.get_mut())
        .poll_shutdown(cx)
        .map_err(TransportError::from)
}

/// Why [`WsGuard`] stopped a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GuardViolation {
    /// A data frame whose message would exceed the limit.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: usize },
    /// A control frame over the 125 bytes RFC 6455 allows.
    #[error("control frame of {0} bytes (at most 125 allowed)")]
    ControlTooLarge(u64),
    /// A close frame whose payload RFC 6455 forbids: one byte, a code that
    /// is not sent on the wire, or a reason that is not UTF-8.
    #[error("close frame with a payload RFC 6455 forbids")]
    InvalidClose,
}

impl From<GuardViolation> for TransportError {
    fn from(violation: GuardViolation) -> Self {
        match violation {
            GuardViolation::TooLarge { len, max } => TransportError::FrameTooLarge { len, max },
            other => TransportError::WebSocketViolation(Box::new(other)),
        }
    }
}

/// The longest WebSocket frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER_LEN: usize = 14;

/// Where the guard is in the byte stream it reads.
#[derive(Debug, Clone)]
enum Scan {
    /// Server side, during the upgrade: bytes pass unchecked until
    /// [`WsGuard::start_frames`]. tungstenite refuses any byte after the
    /// upgrade request in the reads of the handshake, so once the upgrade is
    /// done, the next byte read is the first byte of the first frame.
    Upgrade,
    /// Client side, in the HTTP response of the upgrade, which frames may
    /// follow in the same read: looking for the empty line that ends its
    /// headers, as httparse does (lines end with `\r\n` or `\n`; empty
    /// lines before the status line are skipped).
    Http { line: LineState, seen_content: bool },
    /// In a frame header: its bytes so far.
    Header {
        bytes: [u8; MAX_HEADER_LEN],
        have: usize,
    },
    /// In a frame's payload: how many bytes are left.
    Payload { left: u64 },
    /// In a close frame's payload, which is kept to be checked whole before
    /// tungstenite has all of it (boxed: close frames are rare, and the box
    /// goes with the frame).
    Close(Box<ClosePayload>),
}

/// A close frame's payload as it goes by.
#[derive(Debug, Clone)]
struct ClosePayload {
    /// The frame's mask (zeros when the frame is not masked).
    mask: [u8; 4],
    /// The payload so far, unmasked.
    bytes: Vec<u8>,
    /// Its declared length (at most 125: the header was checked).
    len: usize,
}

impl ClosePayload {
    /// For the close frame whose complete header is `header`, declaring
    /// `len` bytes of payload.
    fn new(header: &[u8; MAX_HEADER_LEN], len: usize) -> Self {
        let mut mask = [0; 4];
        if header[1] & 0x80 != 0 {
            let end = header_len(header[1]);
            mask.copy_from_slice(&header[end - 4..end]);
        }
        Self {
            mask,
            bytes: Vec::with_capacity(len),
            len,
        }
    }

    /// Takes what `data` holds of the payload; returns how many bytes that
    /// was.
    fn take(&mut self, data: &[u8]) -> usize {
        let take = (self.len - self.bytes.len()).min(data.len());
        for &byte in &data[..take] {
            let i = self.bytes.len();
            self.bytes.push(byte ^ self.mask[i & 3]);
        }
        take
    }

    fn is_complete(&self) -> bool {
        self.bytes.len() == self.len
    }
}

/// Where the HTTP scan is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// Inside a line.
    Within,
    /// Right after a line ended.
    Start,
    /// After a `\r` at the start of a line.
    StartCr,
}

const NEW_HEADER: Scan = Scan::Header {
    bytes: [0; MAX_HEADER_LEN],
    have: 0,
};

/// A pass-through stream under tungstenite that reads every WebSocket frame
/// header as it goes by and fails the connection when a data frame would
/// make its message longer than the limit in force, or a control frame is
/// longer than 125 bytes, **before** tungstenite sees the header; and when
/// a close frame's payload is one RFC 6455 forbids, before tungstenite has
/// the whole frame.
///
/// tungstenite reserves a frame's whole declared length as soon as it has
/// parsed the header, and its limits cannot be changed on a live
/// `WebSocketStream`; so a limit of 1 MiB set for logged-in sessions would
/// let any unauthenticated peer make the server reserve 1 MiB with a
/// 14-byte header. The guard enforces the current (small, before login)
/// limit at that point instead, and can be changed at any time through
/// `WebSocketStream::get_mut`.
///
/// tungstenite itself fails a close frame of one byte, or one whose reason
/// is not UTF-8 (with the error a text message gets), but takes one whose
/// code may not be sent for a clean close and answers it, after which the
/// session's close signal can no longer go out. `ws_frames`, on the
/// reactors, must judge all three alike, so the guard keeps a close frame's
/// payload (at most 125 bytes) and checks it with `ws_frames`' rule.
///
/// The guard skips other payload bytes by counting and parses only headers,
/// so it costs a few instructions per frame. On the server it starts checking
/// frames when the upgrade is done ([`start_frames`](Self::start_frames)); on
/// the client, right after the upgrade response, which frames may follow in
/// the same read.
#[derive(Debug)]
pub(crate) struct WsGuard<S> {
    inner: S,
    max_message_len: usize,
    scan: Scan,
    /// The length of the data message in progress (over its fragments).
    message_len: u64,
    /// Whether a data message is in progress: a data frame without FIN has
    /// gone by, and the frame with FIN has not. Not `message_len != 0`: a
    /// message may begin with empty fragments.
    in_message: bool,
    /// Sticky: once a limit is broken, every read fails.
    failed: Option<GuardViolation>,
    /// Data messages whose last frame header has gone by.
    messages_seen: u64,
    /// Binary messages the transport has taken from tungstenite.
    messages_taken: u64,
    /// Whether a control frame has gone by (tungstenite may owe a pong).
    control_seen: bool,
}

impl<S> WsGuard<S> {
    /// Guards the server side of `inner` with a limit of `max_message_len`
    /// bytes per message, from [`start_frames`](Self::start_frames) on.
    pub(crate) fn server(inner: S, max_message_len: usize) -> Self {
        Self::new(inner, max_message_len, Scan::Upgrade)
    }

    /// Guards the client side of `inner` with a limit of `max_message_len`
    /// bytes per message, from the end of the upgrade response on.
    pub(crate) fn client(inner: S, max_message_len: usize) -> Self {
        let http = Scan::Http {
            line: LineState::Start,
            seen_content: false,
        };
        Self::new(inner, max_message_len, http)
    }

    fn new(inner: S, max_message_len: usize, scan: Scan) -> Self {
        Self {
            inner,
            max_message_len,
            scan,
            message_len: 0,
            in_message: false,
            failed: None,
            messages_seen: 0,
            messages_taken: 0,
            control_seen: false,
        }
    }

    /// Marks the end of the server-side upgrade: the next byte read begins
    /// a frame.
    pub(crate) fn start_frames(&mut self) {
        if matches!(self.scan, Scan::Upgrade) {
            self.scan = NEW_HEADER;
        }
    }

    /// The limit in force.
    pub(crate) fn max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// Changes the limit for frame headers read from now on.
    pub(crate) fn set_max_message_len(&mut self, max: usize) {
        self.max_message_len = max;
    }

    /// The stream underneath, bypassing the guard.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The stream underneath.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Whether every byte read so far belongs to frames whose messages the
    /// transport has taken, with no control frame among them: then nothing
    /// is left in tungstenite's buffer and no pong is owed, and another
    /// driver can take the stream from here.
    pub(crate) fn all_taken(&self) -> bool {
        matches!(self.scan, Scan::Header { have: 0, .. })
            && !self.in_message
            && self.failed.is_none()
            && !self.control_seen
            && self.messages_seen == self.messages_taken
    }

    /// Scans bytes just read. On a violation, returns how many of them may
    /// still be handed on (those before the offending frame's header).
    fn scan(&mut self, data: &[u8]) -> Result<(), (usize, GuardViolation)> {
        let mut at = 0;
        // Where the header being read began within `data` (0 when it began
        // in an earlier read).
        let mut header_start = 0;
        while at < data.len() {
            match &mut self.scan {
                Scan::Upgrade => return Ok(()),
                &mut Scan::Http { line, seen_content } => {
                    let byte = data[at];
                    at += 1;
                    let (line, end) = match (byte, line) {
                        (b'\n', LineState::Start | LineState::StartCr) => (LineState::Start, true),
                        (b'\n', LineState::Within) => (LineState::Start, false),
                        (b'\r', LineState::Start) => (LineState::StartCr, false),
                        _ => (LineState::Within, false),
                    };
                    let seen_content = seen_content || !matches!(byte, b'\r' | b'\n');
                    if end && seen_content {
                        self.scan = NEW_HEADER;
                        header_start = at;
                    } else {
                        self.scan = Scan::Http { line, seen_content };
                    }
                }
                &mut Scan::Payload { left } => {
                    let take = left.min((data.len() - at) as u64);
                    // `take` is at most `data.len() - at`.
                    at += take as usize;
                    if left == take {
                        self.scan = NEW_HEADER;
                        header_start = at;
                    } else {
                        self.scan = Scan::Payload { left: left - take };
                    }
                }
                Scan::Close(close) => {
                    at += close.take(&data[at..]);
                    if close.is_complete() {
                        let valid = is_valid_close_payload(&close.bytes);
                        self.scan = NEW_HEADER;
                        if !valid {
                            // tungstenite never gets the whole frame, so it
                            // starts no closing handshake, and the session's
                            // close signal can still go out.
                            return Err((header_start, GuardViolation::InvalidClose));
                        }
                        header_start = at;
                    }
                }
                &mut Scan::Header {
                    mut bytes,
                    mut have,
                } => {
                    bytes[have] = data[at];
                    have += 1;
                    at += 1;
                    if have < 2 || have < header_len(bytes[1]) {
                        self.scan = Scan::Header { bytes, have };
                        continue;
                    }
                    let payload = self
                        .check_header(&bytes)
                        .map_err(|violation| (header_start, violation))?;
                    if payload == 0 {
                        self.scan = NEW_HEADER;
                        header_start = at;
                    } else if bytes[0] & 0x0f == 8 {
                        // At most 125: `check_header` refuses longer
                        // control frames.
                        self.scan =
                            Scan::Close(Box::new(ClosePayload::new(&bytes, payload as usize)));
                    } else {
                        self.scan = Scan::Payload { left: payload };
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks a complete header; returns its payload length.
    fn check_header(&mut self, header: &[u8; MAX_HEADER_LEN]) -> Result<u64, GuardViolation> {
        let fin = header[0] & 0x80 != 0;
        let opcode = header[0] & 0x0f;
        let len = match header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            127 => u64::from_be_bytes([
                header[2], header[3], header[4], header[5], header[6], header[7], header[8],
                header[9],
            ]),
            short => u64::from(short),
        };
        if opcode >= 8 {
            self.control_seen = true;
            // Control frames may come between the fragments of a message.
            if len > 125 {
                return Err(GuardViolation::ControlTooLarge(len));
            }
            return Ok(len);
        }
        self.message_len = if opcode == 0 {
            self.message_len.saturating_add(len)
        } else {
            len
        };
        if self.message_len > self.max_message_len as u64 {
            return Err(GuardViolation::TooLarge {
                len: self.message_len,
                max: self.max_message_len,
            });
        }
        self.in_message = !fin;
        if fin {
            self.message_len = 0;
            self.messages_seen += 1;
        }
        Ok(len)
    }
}

/// The length of a frame header, from its second byte.
fn header_len(second: u8) -> usize {
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

fn violation_error(violation: GuardViolation) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, violation)
}

impl<S: AsyncRead + Unpin> AsyncRead for WsGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(violation) = &this.failed {
            return Poll::Ready(Err(violation_error(violation.clone())));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Err((keep, violation)) = this.scan(&buf.filled()[before..]) {
            this.failed = Some(violation.clone());
            // Hand on the frames before the offending header, never the header.
            buf.set_filled(before + keep);
            if keep == 0 {
                return Poll::Ready(Err(violation_error(violation)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WsGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE_END: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    fn guard(max: usize) -> WsGuard<()> {
        let mut guard = WsGuard::server((), max);
        assert_eq!(guard.scan(b"GET /session HTTP/1.1\r\n\r\n"), Ok(()));
        guard.start_frames();
        guard
    }

    /// A masked binary frame header with a 64-bit length.
    fn header64(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut header = vec![u8::from(fin) << 7 | opcode, 0x80 | 127];
        header.extend_from_slice(&len.to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        header
    }

    #[test]
    fn passes_frames_within_the_limit_in_any_split() {
        let mut wire = Vec::new();
        for len in [0u64, 5, 300, 4096] {
            wire.extend(header64(true, 2, len));
            wire.extend(std::iter::repeat_n(0xaa, len as usize));
        }
        // Ping between fragments of one message: 2048 + 2048 bytes.
        wire.extend(header64(false, 2, 2048));
        wire.extend(std::iter::repeat_n(0, 2048));
        wire.extend([0x89, 0x80 | 3, 0, 0, 0, 0, 1, 2, 3]);
        wire.extend(header64(true, 0, 2048));
        wire.extend(std::iter::repeat_n(0, 2048));
        for chunk in [1, 7, 13, 4096, wire.len()] {
            let mut guard = guard(4096);
            for piece in wire.chunks(chunk) {
                assert_eq!(guard.scan(piece), Ok(()), "chunk {chunk}");
            }
        }
    }

    #[test]
    fn stops_a_huge_header_before_handing_it_on() {
        let mut guard = guard(4096);
        let mut wire = header64(true, 2, 3);
        wire.extend([1, 2, 3]);
        let keep = wire.len();
        wire.extend(header64(true, 2, 1 << 62));
        assert_eq!(
            guard.scan(&wire),
            Err((
                keep,
                GuardViolation::TooLarge {
                    len: 1 << 62,
                    max: 4096
                }
            ))
        );
    }

    #[test]
    fn counts_a_message_over_its_fragments() {
        let mut guard = guard(4096);
        assert_eq!(guard.scan(&header64(false, 2, 3000)), Ok(()));
        assert_eq!(guard.scan(&[0; 3000]), Ok(()));
        assert_eq!(
            guard.scan(&header64(true, 0, 3000)),
            Err((
                0,
                GuardViolation::TooLarge {
                    len: 6000,
                    max: 4096
                }
            ))
        );
    }

    #[test]
    fn frames_in_the_same_read_as_the_upgrade_are_checked() {
        let mut guard = WsGuard::client((), 16);
        let mut wire = UPGRADE_END.to_vec();
        wire.extend(header64(true, 2, 17));
        assert_eq!(
            guard.scan(&wire),
            Err((
                UPGRADE_END.len(),
                GuardViolation::TooLarge { len: 17, max: 16 }
            ))
        );
    }

    #[test]
    fn finds_the_end_of_the_upgrade_response_as_httparse_does() {
        for response in [
            &b"\r\n\nHTTP/1.1 101 OK\r\nA: b\r\n\r\n"[..],
            b"\nHTTP/1.1 101 OK\nA: b\n\n",
            b"HTTP/1.1 101 OK\r\nA: b\n\r\n",
            b"HTTP/1.1 101 OK\nA: b\r\n\n",
        ] {
            let mut guard = WsGuard::client((), 16);
            let mut wire = response.to_vec();
            wire.extend(header64(true, 2, 17));
            let escaped = response.escape_ascii();
            assert_eq!(
                guard.scan(&wire),
                Err((
                    response.len(),
                    GuardViolation::TooLarge { len: 17, max: 16 }
                )),
                "{escaped}"
            );
        }
    }

    #[test]
    fn the_server_side_checks_nothing_until_the_upgrade_is_done() {
        let mut guard = WsGuard::server((), 16);
        assert_eq!(guard.scan(&header64(true, 2, 1 << 40)), Ok(()));
        guard.start_frames();
        assert!(guard.scan(&header64(true, 2, 1 << 40)).is_err());
    }

    #[test]
    fn a_raised_limit_applies_to_the_next_header() {
        let mut guard = guard(16);
        guard.set_max_message_len(1 << 20);
        assert_eq!(guard.scan(&header64(true, 2, 1 << 20)), Ok(()));
    }

    #[test]
    fn a_message_begun_by_an_empty_fragment_is_in_progress() {
        let mut guard = guard(4096);
        assert!(guard.all_taken());
        assert_eq!(guard.scan(&header64(false, 2, 0)), Ok(()));
        assert!(
            !guard.all_taken(),
            "tungstenite holds an incomplete message"
        );
        assert_eq!(guard.scan(&header64(false, 0, 0)), Ok(()));
        assert!(!guard.all_taken(), "still incomplete");
        let mut last = header64(true, 0, 3);
        last.extend([1, 2, 3]);
        assert_eq!(guard.scan(&last), Ok(()));
        assert!(!guard.all_taken(), "complete, not yet taken");
        guard.messages_taken += 1;
        assert!(guard.all_taken());
    }

    /// A masked frame (key 1, 2, 3, 4) with a 64-bit length.
    fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = header64(fin, opcode, payload.len() as u64);
        frame.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ (i as u8 % 4 + 1)),
        );
        frame
    }

    #[test]
    fn refuses_a_forbidden_close_frame_before_tungstenite_has_it_in_any_split() {
        for close in [
            &[0x03][..],
            &1005u16.to_be_bytes(),
            &5000u16.to_be_bytes(),
            b"\x03\xe8bye \xff",
        ] {
            let mut wire = masked(true, 2, b"before");
            let keep = wire.len();
            wire.extend(masked(true, 8, close));
            let escaped = close.escape_ascii();
            assert_eq!(
                guard(4096).scan(&wire),
                Err((keep, GuardViolation::InvalidClose)),
                "{escaped}"
            );
            for chunk in 1..wire.len() {
                let mut guard = guard(4096);
                let mut handed_on = 0;
                let mut pieces = wire.chunks(chunk).peekable();
                while let Some(piece) = pieces.next() {
                    match guard.scan(piece) {
                        Ok(()) => handed_on += piece.len(),
                        Err((kept, violation)) => {
                            assert_eq!(violation, GuardViolation::InvalidClose, "{escaped}");
                            assert!(pieces.peek().is_none(), "{escaped}: fails on its last byte");
                            handed_on += kept;
                        }
                    }
                }
                assert!(
                    (keep..wire.len()).contains(&handed_on),
                    "{escaped}, chunk {chunk}: {handed_on} bytes handed on"
                );
            }
        }
    }

    #[test]
    fn passes_allowed_close_frames_in_any_split() {
        let mut wire = masked(true, 8, b"");
        wire.extend(masked(true, 8, b"\x03\xe8"));
        let mut with_reason = 4000u16.to_be_bytes().to_vec();
        with_reason.extend("caf\u{e9} \u{2713}".as_bytes());
        wire.extend(masked(true, 8, &with_reason));
        for chunk in 1..=wire.len() {
            let mut guard = guard(4096);
            for piece in wire.chunks(chunk) {
                assert_eq!(guard.scan(piece), Ok(()), "chunk {chunk}");
            }
        }
        // From a server: not masked.
        let mut guard = WsGuard::client((), 16);
        let mut wire = UPGRADE_END.to_vec();
        wire.extend([0x88, 2, 0x03, 0xe8]);
        assert_eq!(guard.scan(&wire), Ok(()));
        assert_eq!(
            guard.scan(&[0x88, 2, 0x03, 0xed]),
            Err((0, GuardViolation::InvalidClose))
        );
    }

    #[test]
    fn rejects_a_long_control_frame() {
        let mut guard = guard(1 << 20);
        assert_eq!(
            guard.scan(&header64(true, 9, 126)),
            Err((0, GuardViolation::ControlTooLarge(126)))
        );
    }
}
