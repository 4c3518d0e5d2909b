//! The async session client that applications use (work in progress).
//!
//! This crate will wrap [`session_core::ClientSession`] in a tokio driver
//! over `session-transport`: `Client::connect(url)`, `login`, `request`,
//! a stream of pushed events, `logout`, the four listeners (connected,
//! disconnected, online, offline) and an explicit `resume`. Until then it
//! re-exports the core, whose client state machine is complete:
//!
//! ```
//! use std::time::Instant;
//! use session_client::core::{ClientConfig, ClientSession, ClientState, Credentials};
//!
//! let mut client = ClientSession::new(ClientConfig::default());
//! client.handle_connected(Instant::now());
//! client.login(Instant::now(), Credentials { user_id: "alice".into(), ..Default::default() })?;
//! assert_eq!(client.state(), ClientState::LoggingIn);
//! # Ok::<(), session_client::core::LoginError>(())
//! ```

pub use session_core as core;
