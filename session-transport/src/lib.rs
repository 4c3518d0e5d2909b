//! Tokio transports for session frames: TCP and WebSocket, client and
//! server side, with optional TLS (`tls://`, `wss://`).
//!
//! A transport carries frames for the session core and nothing else. Every
//! kind is the same [`Transport`]: a `Stream<Item = Result<Bytes,
//! TransportError>>` of incoming frames and a `Sink<Bytes, Error =
//! TransportError>` of outgoing frames, one **bare** protobuf message each,
//! as the core's `poll_transmit(buf, Framing::Bare)` produces them and its
//! `handle_frame` takes them.
//!
//! | kind | URL | on the wire |
//! |---|---|---|
//! | [`TransportKind::Tcp`] | `tcp://host:port` | each frame prefixed by its length as a protobuf varint ([`FrameCodec`]) |
//! | [`TransportKind::Tls`] | `tls://host:port` | the same, inside TLS |
//! | [`TransportKind::Ws`] | `ws://host:port/session` | one binary WebSocket message per frame, subprotocol `session.v1` |
//! | [`TransportKind::Wss`] | `wss://host:port/session` | the same, inside TLS |
//!
//! # Client side
//!
//! [`connect`] a URL with [`ConnectOptions`]; the connect timeout covers the
//! TCP connection, the TLS handshake and the WebSocket upgrade together.
//!
//! # Server side
//!
//! [`Listener::bind`] a [`ListenerConfig`]. [`Listener::accept`] returns each
//! TCP connection at once; [`Accepted::handshake`], in the connection's own
//! task, does the TLS handshake and the WebSocket upgrade before the login
//! deadline, so a peer that stalls there holds up nothing else and is
//! dropped when its deadline passes.
//!
//! # Frame limits
//!
//! A server-side transport starts with `pre_login_max_frame_len` (4 KiB by
//! default) and the driver raises it with [`Transport::set_max_frame_len`]
//! after login. A frame over the limit fails with
//! [`TransportError::FrameTooLarge`] as soon as its length is known — from
//! the varint prefix on TCP, from the frame header on WebSocket — and before
//! any buffer of that size is reserved.
//!
//! tokio-tungstenite cannot change its limits on a live connection, and it
//! reserves a frame's whole declared length as soon as it reads the header.
//! So its `max_message_size` and `max_frame_size` are set to the post-login
//! `max_frame_len` (a fixed ceiling), and a small pass-through reader under
//! it checks each frame header against the limit in force before handing
//! the header on. The WebSocket read buffer is 4 KiB instead of the
//! library's 128 KiB, allocated up front per connection.
//!
//! # Peer misbehaviour
//!
//! An oversized frame, a bad length prefix, a text message or a broken
//! WebSocket frame ends the stream with an error whose
//! [`close_code`](TransportError::close_code) and
//! [`protocol_error`](TransportError::protocol_error) the server hands to
//! `ServerSession::handle_protocol_error`; the sink still works, so the
//! close signal goes out over the same transport before
//! [`Transport::close_with_linger`].
//!
//! # Example
//!
//! A server and a client over loopback WebSocket:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use futures_util::{SinkExt, StreamExt};
//! use session_transport::{ConnectOptions, Listener, ListenerConfig, TransportKind, connect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), session_transport::TransportError> {
//! let listener =
//!     Listener::bind(ListenerConfig::new(TransportKind::Ws, "127.0.0.1:0".parse().unwrap()))
//!         .await?;
//! let url = listener.url()?; // ws://127.0.0.1:PORT/session
//!
//! let server = tokio::spawn(async move {
//!     let accepted = listener.accept().await?;
//!     let login_deadline = Instant::now() + Duration::from_secs(10);
//!     let mut transport = accepted.handshake(login_deadline).await?;
//!     // Echo one frame back.
//!     let frame = transport.next().await.ok_or(session_transport::TransportError::PeerClosed)??;
//!     transport.send(frame).await?;
//!     transport.close_with_linger(Duration::from_secs(1)).await
//! });
//!
//! let mut client = connect(&url, &ConnectOptions::default()).await?;
//! client.send(Bytes::from_static(b"\x0a\x00")).await?;
//! assert_eq!(client.next().await.transpose()?, Some(Bytes::from_static(b"\x0a\x00")));
//! assert!(client.next().await.is_none(), "the server closed");
//! drop(client); // The server lingers until the client has gone too.
//! server.await.expect("server task")?;
//! # Ok(())
//! # }
//! ```

mod codec;
mod connect;
mod error;
mod lean;
mod listen;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
mod url;
mod ws;
pub mod ws_frames;

pub use codec::FrameCodec;
pub use connect::{ConnectOptions, connect, connect_to};
pub use error::{BoxError, TransportError};
pub use listen::{Accepted, Listener, ListenerConfig};
pub use transport::{Transport, TransportKind};
pub use url::Endpoint;

/// The rustls this crate is built with, for its configuration types.
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;

/// The WebSocket subprotocol both sides require.
pub const WS_SUBPROTOCOL: &str = "session.v1";

/// The default WebSocket path, on the server and in URLs without a path.
pub const DEFAULT_WS_PATH: &str = "/session";

/// The default read buffer of a connection.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 4 * 1024;

/// The default write batching threshold of a connection.
pub const DEFAULT_WRITE_BUFFER_SIZE: usize = 4 * 1024;
