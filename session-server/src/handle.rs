//! `ServerHandle`: what the backend holds to publish, close, look up and
//! watch sessions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use session_core::{CloseCode, PublishError, ServerState, SessionId};
use tokio::sync::broadcast;

use crate::api::SessionInfo;
use crate::registry::Shared;

/// Why a message could not be sent to a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No such session (never existed, or closed).
    #[error("no such session")]
    NoSuchSession,
    /// The session refused the event (closed, or it overflowed and is now
    /// closed with `SLOW_CONSUMER`).
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// A change in a session's life, for subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// The session.
    pub session: SessionInfo,
    /// What happened.
    pub kind: LifecycleKind,
}

/// What happened to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifecycleKind {
    /// It opened.
    Opened,
    /// Its connection was lost; it waits for a resume.
    Detached,
    /// A client resumed it.
    Resumed,
    /// It expired (`Closed` follows).
    Expired,
    /// It is over.
    Closed {
        /// Why.
        code: CloseCode,
        /// Detail.
        reason: String,
    },
}

/// A cheap, cloneable handle to a running server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ServerHandle {
    /// Pushes an event to one session; returns its sequence number. A
    /// detached session buffers it for the resume.
    pub fn publish(&self, session: SessionId, body: Bytes) -> Result<u64, SendError> {
        let cell = self.shared.get(session).ok_or(SendError::NoSuchSession)?;
        Ok(self
            .shared
            .with_session(&cell, |state| state.session.publish(body))?)
    }

    /// Pushes an event to every live session of `user`; returns how many
    /// accepted it.
    pub fn publish_to_user(&self, user: &str, body: Bytes) -> usize {
        self.shared
            .of_user(user)
            .iter()
            .filter(|cell| {
                self.shared
                    .with_session(cell, |state| state.session.publish(body.clone()))
                    .is_ok()
            })
            .count()
    }

    /// Closes a session with `code` and `reason`: the client gets the close
    /// signal, then the connection closes.
    pub fn close(
        &self,
        session: SessionId,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        let cell = self.shared.get(session).ok_or(SendError::NoSuchSession)?;
        self.shared
            .with_session(&cell, |state| state.session.close(code, reason, None))
            .map_err(|_| SendError::NoSuchSession)
    }

    /// Closes a session with `KICKED`.
    pub fn kick(&self, session: SessionId, reason: &str) -> Result<(), SendError> {
        self.close(session, CloseCode::Kicked, reason)
    }

    /// Closes every session of `user` with `code`; returns how many.
    pub fn close_user(&self, user: &str, code: CloseCode, reason: &str) -> usize {
        self.shared
            .of_user(user)
            .iter()
            .filter(|cell| {
                self.shared
                    .with_session(cell, |state| state.session.close(code, reason, None))
                    .is_ok()
            })
            .count()
    }

    /// Closes every session with `SERVER_SHUTDOWN` and the given retry hint.
    pub(crate) fn close_all(&self, retry_after: Duration) {
        for cell in self.shared.all() {
            self.shared.with_session(&cell, |state| {
                let _ = state.session.close(
                    CloseCode::ServerShutdown,
                    "server shutting down",
                    Some(retry_after),
                );
            });
        }
    }

    /// A session by id.
    pub fn session(&self, session: SessionId) -> Option<SessionInfo> {
        self.shared.get(session).map(|cell| cell.info.clone())
    }

    /// Whether a session is open (attached) or detached; `None` if unknown.
    pub fn state(&self, session: SessionId) -> Option<ServerState> {
        self.shared
            .get(session)
            .map(|cell| cell.lock().session.state())
    }

    /// Every live session of `user`.
    pub fn user_sessions(&self, user: &str) -> Vec<SessionInfo> {
        self.shared
            .of_user(user)
            .iter()
            .map(|cell| cell.info.clone())
            .collect()
    }

    /// Every live session.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.shared.all().iter().map(|c| c.info.clone()).collect()
    }

    /// How many sessions are live (open or detached).
    pub fn session_count(&self) -> usize {
        self.shared.count()
    }

    /// How many connections are open, logged in or not.
    pub fn connection_count(&self) -> usize {
        self.shared.limiter.connections()
    }

    /// Lifecycle changes from now on. A subscriber that falls more than 1024
    /// events behind misses the oldest (and is told so by the receiver).
    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.shared.lifecycle.subscribe()
    }
}
