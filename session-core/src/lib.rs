//! Sans-IO session state machines: the client and server sides of a session,
//! the frame codec, close codes, configuration and errors.
//!
//! Nothing here does I/O, reads a clock, spawns a thread or draws OS
//! randomness: time comes in as a `now: Instant` argument, randomness from an
//! [`Entropy`] the caller supplies, bytes in through `handle_frame` and out
//! through `poll_transmit`. Every call is deterministic, so tests drive both
//! sides in memory, step by step, and any transport (TCP, WebSocket, QUIC
//! stream, Unix socket, in-memory) can carry a session.
//!
//! # The drive loop
//!
//! A driver owns the transport and one timer, and keeps this contract:
//!
//! 1. Feed every input: `handle_frame(now, frame)` for each frame received
//!    (use [`FrameDecoder`] on byte streams, with the session's
//!    `max_frame_len()`), `handle_timeout(now)` when the deadline from
//!    `poll_timeout()` passes, `handle_disconnect(now)` when the transport is
//!    lost; and the application's commands.
//! 2. After **every** input or command, drain the outputs until empty:
//!    `poll_transmit` (write each frame; on [`Transmit::CloseConnection`],
//!    flush and close the transport, then call `handle_disconnect`), then
//!    `poll_event` (hand each event to the application).
//! 3. Re-arm the single timer from `poll_timeout()`.
//!
//! ```no_run
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use session_core::{ClientConfig, ClientSession, Credentials, Framing, FrameDecoder, Transmit};
//!
//! # fn read_socket(_: &mut BytesMut) {}
//! # fn write_socket(_: &[u8]) {}
//! # fn close_socket() {}
//! let mut client = ClientSession::new(ClientConfig::default());
//! let mut decoder = FrameDecoder::new(client.max_frame_len());
//! let (mut inbox, mut outbox) = (BytesMut::new(), BytesMut::new());
//! client.handle_connected(Instant::now());
//! client.login(Instant::now(), Credentials { user_id: "alice".into(), ..Default::default() })?;
//! loop {
//!     // 2. Drain outputs.
//!     while let Some(transmit) = client.poll_transmit(&mut outbox, Framing::Delimited) {
//!         match transmit {
//!             Transmit::Frame => {}
//!             Transmit::CloseConnection => {
//!                 write_socket(&outbox.split());
//!                 close_socket();
//!                 client.handle_disconnect(Instant::now());
//!             }
//!         }
//!     }
//!     write_socket(&outbox.split());
//!     while let Some(event) = client.poll_event() {
//!         println!("{event:?}");
//!     }
//!     // 3. Wait for bytes or for `client.poll_timeout()`, then 1. feed them in.
//!     read_socket(&mut inbox);
//!     while let Some(frame) = decoder.decode(&mut inbox)? {
//!         client.handle_frame(Instant::now(), frame)?;
//!     }
//!     if client.poll_timeout().is_some_and(|at| at <= Instant::now()) {
//!         client.handle_timeout(Instant::now());
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Both sides in memory
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use session_core::*;
//!
//! let now = Instant::now();
//! let mut rng = SplitMix64::new(1);
//! let mut client = ClientSession::new(ClientConfig::default());
//! let mut server = ServerSession::new(now, Arc::new(ServerConfig::default()));
//! client.handle_connected(now);
//! client.login(now, Credentials { user_id: "alice".into(), ..Default::default() }).unwrap();
//!
//! let mut wire = BytesMut::new();
//! while client.poll_transmit(&mut wire, Framing::Bare).is_some() {
//!     server.handle_frame(now, wire.split().freeze()).unwrap();
//! }
//! let Some(ServerEvent::LoginRequested(login)) = server.poll_event() else { panic!() };
//! assert_eq!(login.user_id, "alice");
//! server.accept_login(now, login.requested_heartbeat_ms, &mut rng).unwrap();
//! server.publish("hello".into()).unwrap();
//! while server.poll_transmit(&mut wire, Framing::Bare).is_some() {
//!     client.handle_frame(now, wire.split().freeze()).unwrap();
//! }
//! assert_eq!(client.state(), ClientState::Online);
//! assert!(matches!(client.poll_event(), Some(ClientEvent::Connected)));
//! assert!(matches!(client.poll_event(), Some(ClientEvent::Online(_))));
//! assert_eq!(
//!     client.poll_event(),
//!     Some(ClientEvent::Message { seq: 1, body: "hello".into() })
//! );
//! ```

mod client;
mod close;
mod codec;
mod config;
mod conflict;
mod entropy;
mod error;
mod server;
mod timer;

pub use client::{
    ClientEvent, ClientSession, ClientState, Credentials, DisconnectReason, LoginFailure,
    OnlineInfo, RequestFailure,
};
pub use close::{
    APPLICATION_CLOSE_CODES, CloseCode, CloseReason, ErrorCode, RejectCode, ResponseError,
};
pub use codec::{
    DEFAULT_MAX_FRAME_LEN, DEFAULT_PRE_LOGIN_MAX_FRAME_LEN, FrameDecoder, Framing, encode_frame,
};
pub use config::{ClientConfig, DEFAULT_ACK_DELAY, ServerConfig, WallClock};
pub use conflict::{Admission, ConflictPolicy, ConflictRules};
pub use entropy::{Entropy, SplitMix64, constant_time_eq};
pub use error::{
    AcceptError, AckError, CloseError, LoginError, LogoutError, ProtocolError, PublishError,
    RequestError, RespondError, ResumeError, ResumeRejected,
};
pub use server::{
    LoginRequest, RESUME_TOKEN_LEN, ResumeRequest, ServerEvent, ServerSession, ServerState,
};
pub use session_proto as proto;
pub use timer::deadline_after;

/// A session's id, stable across resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What `poll_transmit` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transmit {
    /// One frame was appended to the buffer.
    Frame,
    /// Flush what was written, then close the connection (without waiting
    /// for the peer), then call `handle_disconnect`. Nothing follows.
    CloseConnection,
}
