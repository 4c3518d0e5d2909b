//! The async session client that applications use.
//!
//! A [`Client`] wraps the sans-IO [`session_core::ClientSession`] in one
//! tokio task over a `session-transport` connection (`tcp://`, `tls://`,
//! `ws://`, `wss://`). It keeps the two layers of the Turms lifecycle apart:
//!
//! - the **network layer**: [`Client::connect`] opens a connection;
//!   `on_connected` and `on_disconnected` report it;
//! - the **session layer**: [`Client::login`] opens a session,
//!   [`Client::logout`] ends it; `on_online` and `on_offline` report it.
//!   `on_offline` fires once per session, with the server's reason when the
//!   server ended it (`KICKED`, `LOGIN_CONFLICT`, `EXPIRED`,
//!   `SERVER_SHUTDOWN`, ...), never a generic "connection closed".
//!
//! In between: [`Client::request`] (many at once, each with a timeout),
//! pushed events from [`Client::take_events`], acknowledged as the
//! application takes them ([`AckPolicy`]), and the lifecycle as a
//! [`ClientListener`] or a [`Client::lifecycle`] stream.
//!
//! Nothing reconnects behind the application's back. After a connection
//! loss the session is *suspended*; [`Client::resume`] re-attaches it, the
//! server replays every event the client missed, once and in order, and
//! requests still unanswered are sent again without being executed twice.
//! [`Client::resume_with_backoff`] retries with backoff and jitter when the
//! application asks for it. When a session ends, every request still
//! pending fails at once with [`RequestError::SessionClosed`] and the
//! reason.
//!
//! # Example
//!
//! Against a server started in the same program (any `sessiond` will do,
//! e.g. `tcp://127.0.0.1:7700`):
//!
//! ```
//! use futures_util::StreamExt;
//! use session_client::{Client, ClientOptions, core::Credentials};
//! use session_server::{Listen, Server, demo::{DemoApp, UserTable}};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = Server::builder()
//! #     .listen(Listen::Tcp { addr: "127.0.0.1:0".parse()? })
//! #     .authenticator(UserTable::demo())
//! #     .request_handler(DemoApp)
//! #     .start()
//! #     .await?;
//! # let url = format!("tcp://{}", server.local_addr("tcp").unwrap());
//! let client = Client::connect(&url, ClientOptions::default()).await?;
//! let online = client
//!     .login(Credentials {
//!         user_id: "alice".into(),
//!         credential: "alice-secret".into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! println!("online: session {}", online.session_id);
//!
//! // The demo server echoes requests, and relays `to <user> <text>`.
//! assert_eq!(client.request("hello").await?, "hello");
//! client.request("to alice hi, me").await?;
//!
//! let mut events = client.take_events().expect("taken once");
//! let event = events.next().await.expect("an event");
//! assert_eq!(event.body, "alice: hi, me");
//!
//! client.logout().await?;
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/chat.rs` is a complete small program, and the `session-cli`
//! binary of this crate (feature `cli`, on by default) a complete tool:
//! `session-cli tcp://127.0.0.1:7700 alice alice-secret`.
//!
//! # The lifecycle, in order
//!
//! Changes are reported in the order the session core produces them; see
//! [`Lifecycle`] for the sequence of each case. `docs/client.md` records
//! the decisions behind this crate: acknowledgements, listener order,
//! resume semantics and timeouts.

mod client;
mod driver;
mod error;
mod events;
mod listener;
mod options;
mod retry;

pub use client::Client;
pub use error::{ConnectError, LoginError, LogoutError, RequestError, ResumeError};
pub use events::{AckPolicy, Event, Events};
pub use listener::{ClientListener, Lifecycle, LifecycleStream};
pub use options::ClientOptions;
pub use retry::RetryPolicy;
/// The sans-IO core this crate drives, for the types it shares.
pub use session_core as core;
pub use session_core::{
    ClientState, CloseCode, CloseReason, Credentials, DisconnectReason, ErrorCode, OnlineInfo,
    RejectCode, ResponseError, SessionId,
};
/// The transports underneath, for TLS configuration beyond
/// [`ClientOptions::with_tls_roots`].
pub use session_transport as transport;
pub use session_transport::{Endpoint, TransportError};
