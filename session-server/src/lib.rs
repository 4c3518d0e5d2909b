//! The async session server that backends use, and the `sessiond` binary.
//!
//! A [`Server`] binds any number of listeners (TCP, TLS, WebSocket, secure
//! WebSocket) and drives one sans-IO [`session_core::ServerSession`] per
//! session. The backend plugs in three parts:
//!
//! - an [`Authenticator`] that decides logins (async);
//! - a [`SessionListener`] with `on_open`, `on_expire`, `on_close`, with the
//!   Atomix guarantees: `on_open` first and once, `on_expire` always followed
//!   by `on_close`, nothing after `on_close`;
//! - a [`RequestHandler`] that answers client requests (async; each request
//!   is executed once, even when re-sent after a resume).
//!
//! It drives the server through a [`ServerHandle`]: publish to a session or
//! to every session of a user, close or kick, look up, list and count
//! sessions, and subscribe to lifecycle changes. The server negotiates the
//! heartbeat, enforces the login deadline, the login-conflict policy, the
//! frame, buffer, request and per-IP limits, keeps detached sessions for a
//! resume until they expire, and shuts down gracefully.
//!
//! ```
//! use bytes::Bytes;
//! use session_server::{Listen, Server, demo::{DemoApp, UserTable}};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let server = Server::builder()
//!     .listen(Listen::Tcp { addr: "127.0.0.1:0".parse().unwrap() })
//!     .authenticator(UserTable::demo())
//!     .request_handler(DemoApp)
//!     .start()
//!     .await
//!     .expect("binds");
//! let handle = server.handle();
//! assert_eq!(handle.session_count(), 0);
//! assert_eq!(handle.publish_to_user("alice", Bytes::from("hi")), 0, "nobody online yet");
//! let report = server.shutdown().await;
//! assert_eq!(report.connections_left, 0);
//! # });
//! ```
//!
//! How the work is split between tasks, and how timers are driven from the
//! core's `poll_timeout`, is written down in `docs/server.md`.

mod api;
mod clock;
mod connection;
pub mod demo;
mod descriptors;
mod dispatch;
mod entropy;
mod handle;
mod limits;
mod options;
mod reactor;
mod registry;
mod server;
mod wire;

pub use api::{
    Authenticator, DenyAll, Identity, LoginAttempt, NoopListener, NotFound, Rejection,
    RequestHandler, SessionInfo, SessionListener,
};
pub use descriptors::{raise_open_file_limit, reserve_descriptors};
pub use handle::{LifecycleEvent, LifecycleKind, SendError, ServerHandle};
pub use limits::LimitExceeded;
pub use options::{Rate, ServerOptions};
pub use server::{Listen, Server, ServerBuilder, ShutdownReport, StartError, TlsFiles};
pub use session_core as core;
