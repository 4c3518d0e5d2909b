//! Errors, one type per operation: connecting, logging in, requests,
//! logging out and resuming.

use std::time::Duration;

use session_core::{CloseReason, RejectCode, ResponseError};
use session_transport::TransportError;

/// Why [`Client::connect`](crate::Client::connect) or
/// [`Client::reconnect`](crate::Client::reconnect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connection could not be made: a bad URL, refused, timed out, a
    /// TLS or WebSocket upgrade failure (the transport error says which).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The client already has a connection.
    #[error("already connected")]
    AlreadyConnected,
    /// The session is suspended: [`resume`](crate::Client::resume) it, or
    /// [`logout`](crate::Client::logout) first to start afresh.
    #[error("the session is suspended: resume it or log out first")]
    SessionSuspended,
    /// The client's task has ended (a listener panicked, or the runtime is
    /// shutting down).
    #[error("the client has terminated")]
    Terminated,
}

/// Why [`Client::login`](crate::Client::login) did not get the session
/// online.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The server refused the login (the connection is then closed).
    #[error("login rejected: {code}: {message}")]
    Rejected {
        /// Why.
        code: RejectCode,
        /// The server's detail.
        message: String,
    },
    /// No answer within [`ClientOptions::login_timeout`](crate::ClientOptions::login_timeout).
    #[error("no answer to the login in time")]
    TimedOut,
    /// The connection was lost before the answer.
    #[error("connection lost during the login")]
    ConnectionLost,
    /// The server closed the connection before answering (shutting down,
    /// too many connections, ...), with its reason.
    #[error("closed before the login was answered: {0}")]
    Closed(CloseReason),
    /// There is no connection: [`reconnect`](crate::Client::reconnect) first.
    #[error("not connected")]
    NotConnected,
    /// A session is already logging in, online or suspended.
    #[error("a session is already in progress")]
    SessionInProgress,
    /// The client's task has ended.
    #[error("the client has terminated")]
    Terminated,
}

/// Why a request got no response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The server's handler answered with an error.
    #[error("server error: {0}")]
    Server(ResponseError),
    /// No response within the request timeout.
    #[error("request timed out")]
    TimedOut,
    /// The session ended before the response, for this reason (the very
    /// reason `on_offline` reports).
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
    /// There is no session: log in first.
    #[error("not logged in")]
    NotLoggedIn,
    /// The client's task has ended.
    #[error("the client has terminated")]
    Terminated,
}

/// Why [`Client::logout`](crate::Client::logout) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutError {
    /// There is no session to log out of (never logged in, or already over).
    #[error("not logged in")]
    NotLoggedIn,
    /// The client's task has ended.
    #[error("the client has terminated")]
    Terminated,
}

/// Why [`Client::resume`](crate::Client::resume) did not get the session
/// back online.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// There is no suspended session: it is online, already resuming, or
    /// was never logged in.
    #[error("no suspended session to resume")]
    NotSuspended,
    /// The new connection could not be made. The session is still
    /// suspended; try again.
    #[error("cannot connect: {0}")]
    Connect(#[source] TransportError),
    /// The server did not answer in time. Still suspended; try again.
    #[error("no answer to the resume in time")]
    TimedOut,
    /// The new connection was lost before the answer. Still suspended; try
    /// again.
    #[error("connection lost during the resume")]
    ConnectionLost,
    /// The server closed the new connection before answering, with its
    /// reason: it is shutting down, refused the connection at the door, or
    /// saw no login in time. That is about the connection, not the
    /// session: still suspended (no `on_offline`); try again, not before
    /// the reason's `retry_after` if it has one
    /// ([`retry_after`](Self::retry_after)).
    #[error("closed before the resume was answered: {0}")]
    Closed(CloseReason),
    /// The server refused the resume for now, with a code that
    /// [`may_retry`](RejectCode::may_retry) (rate limited, busy, failed):
    /// it may still hold the session. Still suspended (no `on_offline`);
    /// try again later. A refusal for good comes as
    /// [`SessionEnded`](Self::SessionEnded) with
    /// [`CloseReason::ResumeRejected`].
    #[error("resume refused for now: {code}: {message}")]
    Rejected {
        /// Why.
        code: RejectCode,
        /// The server's detail.
        message: String,
    },
    /// The session is over, for this reason: the server refused the resume
    /// for good (it had expired the session), the client gave up waiting,
    /// or the session was closed. `on_offline` reported the same reason.
    #[error("the session is over: {0}")]
    SessionEnded(CloseReason),
    /// The client's task has ended.
    #[error("the client has terminated")]
    Terminated,
}

impl ResumeError {
    /// Whether the session is still suspended and trying again later may
    /// succeed. A [`Closed`](Self::Closed) counts only when the server
    /// said when to come back (`retry_after`) or its code
    /// [`may_reconnect`](session_core::CloseCode::may_reconnect), as
    /// [`CloseReason::may_reconnect`] weighs them: a resume closed for a
    /// protocol error, say, would only be closed again (the session stays
    /// suspended until it expires or the application logs out).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(_) | Self::TimedOut | Self::ConnectionLost | Self::Rejected { .. } => {
                true
            }
            Self::Closed(reason @ CloseReason::Server { .. }) => reason.may_reconnect(),
            Self::Closed(_) => true,
            Self::NotSuspended | Self::SessionEnded(_) | Self::Terminated => false,
        }
    }

    /// How long the server asked the client to wait before trying again,
    /// if it did (the `retry_after` of a close signal that answered the
    /// resume, e.g. `SERVER_SHUTDOWN` during a restart).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Closed(CloseReason::Server { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use session_core::{CloseCode, CloseReason};

    use super::ResumeError;

    fn closed(code: CloseCode, retry_after: Option<Duration>) -> ResumeError {
        ResumeError::Closed(CloseReason::Server {
            code,
            message: String::new(),
            retry_after,
        })
    }

    #[test]
    fn a_resume_closed_is_worth_retrying_only_when_the_server_says_so() {
        let hint = Some(Duration::from_secs(1));
        assert!(closed(CloseCode::ServerShutdown, None).is_retryable());
        assert!(closed(CloseCode::LoginTimeout, None).is_retryable());
        assert!(closed(CloseCode::PolicyViolation, hint).is_retryable());
        assert!(!closed(CloseCode::PolicyViolation, None).is_retryable());
        assert!(!closed(CloseCode::ProtocolError, None).is_retryable());
        assert!(ResumeError::TimedOut.is_retryable());
        assert!(!ResumeError::NotSuspended.is_retryable());
    }
}
