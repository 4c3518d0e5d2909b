//! The async session server that backends use, and the `sessiond` binary
//! (work in progress).
//!
//! This crate will drive many [`session_core::ServerSession`]s over
//! `session-transport` listeners, with a `SessionListener` (`on_open`,
//! `on_expire`, `on_close`), publish to a session or user, kick, the
//! login-conflict policy ([`session_core::ConflictRules`]), expiry and
//! graceful shutdown. Until then it re-exports the core, whose server state
//! machine is complete:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use session_server::core::{ServerConfig, ServerSession, ServerState};
//!
//! let session = ServerSession::new(Instant::now(), Arc::new(ServerConfig::default()));
//! assert_eq!(session.state(), ServerState::Accepted);
//! assert_eq!(session.max_frame_len(), 4096, "small until login");
//! ```

pub use session_core as core;
