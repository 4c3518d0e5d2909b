//! The demo application `sessiond` runs on its defaults: a small user table
//! and a request handler that echoes, or relays a body to a user.
//!
//! Requests are UTF-8 text (bytes that are not are echoed as they are):
//!
//! - `to <user> <text>`: delivers `<from>: <text>` as an event to every live
//!   session of `<user>`, and answers `delivered to <n> sessions`;
//! - anything else is echoed back.
//!
//! So two `session-cli`s can talk, and a load generator can push events
//! across the network like any publisher.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use session_core::{ErrorCode, ResponseError, constant_time_eq};

use crate::api::{Authenticator, Identity, LoginAttempt, Rejection, RequestHandler, SessionInfo};
use crate::handle::ServerHandle;

/// The built-in demo users and their passwords.
pub const DEMO_USERS: &[(&str, &str)] = &[
    ("alice", "alice-secret"),
    ("bob", "bob-secret"),
    ("carol", "carol-secret"),
];

/// Users named `load-<anything>` log in with this password, for load
/// generators (when load users are enabled).
pub const LOAD_PASSWORD: &str = "load";

/// Checks logins against a table of users and passwords.
#[derive(Clone, Default)]
pub struct UserTable {
    users: HashMap<String, Bytes>,
    load_users: bool,
}

impl std::fmt::Debug for UserTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords stay out of logs.
        f.debug_struct("UserTable")
            .field("users", &self.users.len())
            .field("load_users", &self.load_users)
            .finish()
    }
}

impl UserTable {
    /// The demo users of [`DEMO_USERS`], plus `load-*` users.
    pub fn demo() -> Self {
        let mut table = Self::default();
        for (user, password) in DEMO_USERS {
            table.insert(user, password);
        }
        table.load_users = true;
        table
    }

    /// Adds or replaces a user.
    pub fn insert(&mut self, user: &str, password: &str) {
        self.users
            .insert(user.to_owned(), Bytes::copy_from_slice(password.as_bytes()));
    }

    /// Whether `load-*` users may log in with [`LOAD_PASSWORD`].
    pub fn set_load_users(&mut self, enabled: bool) {
        self.load_users = enabled;
    }

    /// Reads `user:password` lines (blank lines and `#` comments skipped).
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let mut table = Self::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}:{}: expected `user:password`",
                        path.display(),
                        number + 1
                    ),
                ));
            };
            table.insert(user.trim(), password.trim());
        }
        Ok(table)
    }

    /// How many users are listed (load users not counted).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is listed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn check(&self, user: &str, credential: &[u8]) -> bool {
        if let Some(password) = self.users.get(user) {
            return constant_time_eq(password, credential);
        }
        self.load_users
            && user.starts_with("load-")
            && constant_time_eq(LOAD_PASSWORD.as_bytes(), credential)
    }
}

impl Authenticator for UserTable {
    async fn authenticate(&self, attempt: &LoginAttempt) -> Result<Identity, Rejection> {
        if self.check(&attempt.user_id, &attempt.credential) {
            Ok(Identity {
                user_id: attempt.user_id.clone(),
            })
        } else {
            Err(Rejection::bad_credentials())
        }
    }
}

/// Echoes requests, or relays `to <user> <text>` to that user's sessions.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoApp;

impl RequestHandler for DemoApp {
    async fn handle(
        &self,
        session: &SessionInfo,
        body: Bytes,
        server: &ServerHandle,
    ) -> Result<Bytes, ResponseError> {
        let Some(rest) = body.strip_prefix(b"to ") else {
            return Ok(body);
        };
        let text = std::str::from_utf8(rest).map_err(|_| ResponseError {
            code: ErrorCode::InvalidRequest,
            message: "`to` requests are UTF-8 text".into(),
        })?;
        let (user, message) = text.split_once(' ').unwrap_or((text, ""));
        if user.is_empty() {
            return Err(ResponseError {
                code: ErrorCode::InvalidRequest,
                message: "usage: to <user> <text>".into(),
            });
        }
        let event = Bytes::from(format!("{}: {message}", session.user_id));
        let delivered = server.publish_to_user(user, event);
        Ok(Bytes::from(format!("delivered to {delivered} sessions")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_users_and_load_users_log_in_with_their_passwords_only() {
        let table = UserTable::demo();
        assert!(table.check("alice", b"alice-secret"));
        assert!(!table.check("alice", b"bob-secret"));
        assert!(!table.check("mallory", b"alice-secret"));
        assert!(table.check("load-17", b"load"));
        assert!(!table.check("load-17", b"loadx"));
        let mut strict = UserTable::demo();
        strict.set_load_users(false);
        assert!(!strict.check("load-17", b"load"));
    }

    #[test]
    fn the_user_file_is_parsed_and_bad_lines_are_reported() {
        let dir = std::env::temp_dir().join(format!("session-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.txt");
        std::fs::write(&good, "# users\n\ndave: pw1\nerin:pw2\n").unwrap();
        let table = UserTable::from_file(&good).unwrap();
        assert_eq!(table.len(), 2);
        assert!(table.check("dave", b"pw1"));
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "dave\n").unwrap();
        let error = UserTable::from_file(&bad).unwrap_err();
        assert!(error.to_string().contains("bad.txt:1"), "{error}");
        let printed = format!("{table:?}");
        assert!(!printed.contains("pw1"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
