//! Close, rejection and error codes, and the reasons a session ended.

use std::fmt;
use std::time::Duration;

use session_proto::v1;

use crate::error::ProtocolError;

/// Why the server closed a session, as carried by a `CloseSignal`.
///
/// Unknown wire values decode as [`CloseCode::Unspecified`], never as an
/// error; values 4000 to 4999 are the application's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// Unknown or not given.
    Unspecified,
    /// The client logged out.
    LoggedOut,
    /// Nothing was heard from the client for the session timeout.
    Expired,
    /// The backend or an operator ended the session.
    Kicked,
    /// Another login of the same user and device replaced this session.
    LoginConflict,
    /// The server is shutting down.
    ServerShutdown,
    /// The connection did not log in within the login deadline.
    LoginTimeout,
    /// The peer broke the protocol.
    ProtocolError,
    /// The peer broke a policy (frame too large, rate limit, too many requests).
    PolicyViolation,
    /// The client did not acknowledge events fast enough.
    SlowConsumer,
    /// The credential that opened the session is no longer valid.
    AuthRevoked,
    /// The server failed.
    InternalError,
    /// An application code in `4000..=4999`: `4000..=4499` allow the client to
    /// reconnect, `4500..=4999` do not. One outside that range goes on the
    /// wire as `UNSPECIFIED` (see [`CloseCode::application`]).
    Application(u16),
}

/// The first application close code.
pub const APPLICATION_CLOSE_CODES: std::ops::RangeInclusive<u16> = 4000..=4999;

/// The application code a wire value carries, if it is in `4000..=4999`.
fn application_code(raw: i32) -> Option<u16> {
    u16::try_from(raw)
        .ok()
        .filter(|code| APPLICATION_CLOSE_CODES.contains(code))
}

impl CloseCode {
    /// Decodes a wire value; unknown values are [`CloseCode::Unspecified`].
    pub fn from_wire(raw: i32) -> Self {
        use v1::CloseCode as W;
        if let Some(app) = application_code(raw) {
            return Self::Application(app);
        }
        match W::try_from(raw).unwrap_or(W::Unspecified) {
            W::Unspecified => Self::Unspecified,
            W::LoggedOut => Self::LoggedOut,
            W::Expired => Self::Expired,
            W::Kicked => Self::Kicked,
            W::LoginConflict => Self::LoginConflict,
            W::ServerShutdown => Self::ServerShutdown,
            W::LoginTimeout => Self::LoginTimeout,
            W::ProtocolError => Self::ProtocolError,
            W::PolicyViolation => Self::PolicyViolation,
            W::SlowConsumer => Self::SlowConsumer,
            W::AuthRevoked => Self::AuthRevoked,
            W::InternalError => Self::InternalError,
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> i32 {
        use v1::CloseCode as W;
        let w = match self {
            // Outside 4000..=4999 it would read as another code.
            Self::Application(code) => {
                return application_code(i32::from(code)).map_or(0, i32::from);
            }
            Self::Unspecified => W::Unspecified,
            Self::LoggedOut => W::LoggedOut,
            Self::Expired => W::Expired,
            Self::Kicked => W::Kicked,
            Self::LoginConflict => W::LoginConflict,
            Self::ServerShutdown => W::ServerShutdown,
            Self::LoginTimeout => W::LoginTimeout,
            Self::ProtocolError => W::ProtocolError,
            Self::PolicyViolation => W::PolicyViolation,
            Self::SlowConsumer => W::SlowConsumer,
            Self::AuthRevoked => W::AuthRevoked,
            Self::InternalError => W::InternalError,
        };
        w as i32
    }

    /// An application code, if `code` is in `4000..=4999`.
    pub fn application(code: u16) -> Option<Self> {
        APPLICATION_CLOSE_CODES
            .contains(&code)
            .then_some(Self::Application(code))
    }

    /// Whether the client may connect and log in again after this code (the
    /// `reconnect` advice of Centrifugo). A logged-out, kicked, replaced or
    /// revoked session, or one that broke the protocol, should not come back
    /// on its own.
    ///
    /// This is the code's advice alone. A close signal that also says when
    /// to come back (`retry_after`: a rate limit sends `POLICY_VIOLATION`
    /// with one) may be followed after that wait whatever its code:
    /// [`CloseReason::may_reconnect`] weighs both.
    pub fn may_reconnect(self) -> bool {
        match self {
            Self::Expired
            | Self::ServerShutdown
            | Self::LoginTimeout
            | Self::SlowConsumer
            | Self::InternalError
            | Self::Unspecified => true,
            Self::LoggedOut
            | Self::Kicked
            | Self::LoginConflict
            | Self::ProtocolError
            | Self::PolicyViolation
            | Self::AuthRevoked => false,
            Self::Application(code) => code < 4500,
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Unspecified => "unspecified",
            Self::LoggedOut => "logged out",
            Self::Expired => "expired",
            Self::Kicked => "kicked",
            Self::LoginConflict => "login conflict",
            Self::ServerShutdown => "server shutdown",
            Self::LoginTimeout => "login timeout",
            Self::ProtocolError => "protocol error",
            Self::PolicyViolation => "policy violation",
            Self::SlowConsumer => "slow consumer",
            Self::AuthRevoked => "auth revoked",
            Self::InternalError => "internal error",
            Self::Application(code) => return write!(f, "application code {code}"),
        };
        f.write_str(name)
    }
}

/// Why a login (or resume) was refused, as carried by `LoginRejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectCode {
    /// Unknown or not given.
    Unspecified,
    /// The credential does not prove the user's identity.
    BadCredentials,
    /// The server does not speak the client's protocol version.
    UnsupportedVersion,
    /// Too many logins or failed logins; retry later.
    RateLimited,
    /// The session to resume does not exist, has expired, or the token is wrong.
    SessionNotFound,
    /// The server is overloaded or shutting down; retry later.
    ServerBusy,
    /// Another session of this user and device exists and the policy keeps it.
    LoginConflict,
    /// The login frame is invalid (empty user id, ...).
    InvalidLogin,
    /// The server failed.
    InternalError,
    /// An application code in `4000..=4999`; one outside it goes on the
    /// wire as `UNSPECIFIED`.
    Application(u16),
}

impl RejectCode {
    /// Decodes a wire value; unknown values are [`RejectCode::Unspecified`].
    pub fn from_wire(raw: i32) -> Self {
        use v1::RejectCode as W;
        if let Some(app) = application_code(raw) {
            return Self::Application(app);
        }
        match W::try_from(raw).unwrap_or(W::Unspecified) {
            W::Unspecified => Self::Unspecified,
            W::BadCredentials => Self::BadCredentials,
            W::UnsupportedVersion => Self::UnsupportedVersion,
            W::RateLimited => Self::RateLimited,
            W::SessionNotFound => Self::SessionNotFound,
            W::ServerBusy => Self::ServerBusy,
            W::LoginConflict => Self::LoginConflict,
            W::InvalidLogin => Self::InvalidLogin,
            W::InternalError => Self::InternalError,
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> i32 {
        use v1::RejectCode as W;
        let w = match self {
            // Outside 4000..=4999 it would read as another code.
            Self::Application(code) => {
                return application_code(i32::from(code)).map_or(0, i32::from);
            }
            Self::Unspecified => W::Unspecified,
            Self::BadCredentials => W::BadCredentials,
            Self::UnsupportedVersion => W::UnsupportedVersion,
            Self::RateLimited => W::RateLimited,
            Self::SessionNotFound => W::SessionNotFound,
            Self::ServerBusy => W::ServerBusy,
            Self::LoginConflict => W::LoginConflict,
            Self::InvalidLogin => W::InvalidLogin,
            Self::InternalError => W::InternalError,
        };
        w as i32
    }

    /// Whether retrying the same login later may succeed.
    pub fn may_retry(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::ServerBusy | Self::InternalError | Self::Unspecified
        )
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Unspecified => "unspecified",
            Self::BadCredentials => "bad credentials",
            Self::UnsupportedVersion => "unsupported version",
            Self::RateLimited => "rate limited",
            Self::SessionNotFound => "session not found",
            Self::ServerBusy => "server busy",
            Self::LoginConflict => "login conflict",
            Self::InvalidLogin => "invalid login",
            Self::InternalError => "internal error",
            Self::Application(code) => return write!(f, "application code {code}"),
        };
        f.write_str(name)
    }
}

/// The code of a failed request's `Error`. Values from 1000 up are the
/// application's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Unknown or not given.
    Unspecified,
    /// The handler failed.
    Internal,
    /// The request is malformed for the application.
    InvalidRequest,
    /// Nothing handles this request.
    NotFound,
    /// The caller may not do this.
    Forbidden,
    /// The server cannot take the request now; retry later.
    Unavailable,
    /// An application code, 1000 or more.
    Application(u32),
}

impl ErrorCode {
    /// Decodes a wire value; unknown values are [`ErrorCode::Unspecified`].
    pub fn from_wire(raw: i32) -> Self {
        use v1::ErrorCode as W;
        if raw >= 1000 {
            return Self::Application(raw.unsigned_abs());
        }
        match W::try_from(raw).unwrap_or(W::Unspecified) {
            W::Unspecified => Self::Unspecified,
            W::Internal => Self::Internal,
            W::InvalidRequest => Self::InvalidRequest,
            W::NotFound => Self::NotFound,
            W::Forbidden => Self::Forbidden,
            W::Unavailable => Self::Unavailable,
        }
    }

    /// The wire value (application codes above `i32::MAX` saturate).
    pub fn to_wire(self) -> i32 {
        use v1::ErrorCode as W;
        let w = match self {
            Self::Application(code) => return i32::try_from(code.max(1000)).unwrap_or(i32::MAX),
            Self::Unspecified => W::Unspecified,
            Self::Internal => W::Internal,
            Self::InvalidRequest => W::InvalidRequest,
            Self::NotFound => W::NotFound,
            Self::Forbidden => W::Forbidden,
            Self::Unavailable => W::Unavailable,
        };
        w as i32
    }
}

/// A request's failure as reported by the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ResponseError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

/// Why a client's session ended, as the client reports it in `Offline`.
///
/// A session closed by the server carries exactly the code the server sent,
/// even when the socket closed right after.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The server sent a close signal.
    Server {
        /// The server's code.
        code: CloseCode,
        /// The server's reason.
        message: String,
        /// When the server suggests trying again.
        retry_after: Option<Duration>,
    },
    /// The application logged out.
    LoggedOut,
    /// The session stayed suspended past its timeout, so the server has
    /// expired it.
    Expired,
    /// The server refused to resume the session.
    ResumeRejected {
        /// The server's code.
        code: RejectCode,
        /// The server's reason.
        message: String,
    },
    /// The server broke the protocol; the client ended the session.
    ProtocolViolation(ProtocolError),
}

impl CloseReason {
    /// The close code that best describes this reason.
    pub fn code(&self) -> CloseCode {
        match self {
            Self::Server { code, .. } => *code,
            Self::LoggedOut => CloseCode::LoggedOut,
            Self::Expired => CloseCode::Expired,
            Self::ResumeRejected { code, .. } => match code {
                RejectCode::SessionNotFound => CloseCode::Expired,
                _ => CloseCode::Unspecified,
            },
            Self::ProtocolViolation(_) => CloseCode::ProtocolError,
        }
    }

    /// Whether the application may connect and log in again, on its own,
    /// after this: when the server said when to come back (`retry_after`,
    /// after that wait), or when [`code`](Self::code)
    /// [`may_reconnect`](CloseCode::may_reconnect). So a rate limit's
    /// `POLICY_VIOLATION` with a hint may come back and a too-large frame's
    /// without one may not; nor may a logout or a kick.
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_core::{CloseCode, CloseReason};
    ///
    /// let limited = CloseReason::Server {
    ///     code: CloseCode::PolicyViolation,
    ///     message: "too many connections from your address".into(),
    ///     retry_after: Some(Duration::from_secs(1)),
    /// };
    /// assert!(limited.may_reconnect());
    /// assert!(!CloseReason::LoggedOut.may_reconnect());
    /// ```
    pub fn may_reconnect(&self) -> bool {
        match self {
            Self::Server {
                code, retry_after, ..
            } => retry_after.is_some() || code.may_reconnect(),
            other => other.code().may_reconnect(),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server { code, message, .. } if message.is_empty() => {
                write!(f, "closed by server: {code}")
            }
            Self::Server { code, message, .. } => write!(f, "closed by server: {code}: {message}"),
            Self::LoggedOut => f.write_str("logged out"),
            Self::Expired => f.write_str("expired while suspended"),
            Self::ResumeRejected { code, .. } => write!(f, "resume rejected: {code}"),
            Self::ProtocolViolation(e) => write!(f, "server broke the protocol: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CloseCode, RejectCode};

    #[test]
    fn a_hint_to_come_back_outweighs_the_code() {
        use std::time::Duration;

        use super::CloseReason;

        let server = |code, retry_after| CloseReason::Server {
            code,
            message: String::new(),
            retry_after,
        };
        let hint = Some(Duration::from_millis(500));
        assert!(server(CloseCode::PolicyViolation, hint).may_reconnect());
        assert!(!server(CloseCode::PolicyViolation, None).may_reconnect());
        assert!(server(CloseCode::ServerShutdown, None).may_reconnect());
        assert!(!server(CloseCode::Kicked, None).may_reconnect());
        assert!(!CloseReason::LoggedOut.may_reconnect());
        // Expired while suspended: a new login may follow.
        assert!(CloseReason::Expired.may_reconnect());
    }

    #[test]
    fn application_codes_outside_their_range_do_not_pose_as_others() {
        for code in [0, 3, 999, 3999, 5000, u16::MAX] {
            assert_eq!(CloseCode::Application(code).to_wire(), 0, "{code}");
            assert_eq!(RejectCode::Application(code).to_wire(), 0, "{code}");
            assert_eq!(CloseCode::application(code), None);
        }
        for code in [4000, 4499, 4500, 4999] {
            let close = CloseCode::Application(code);
            assert_eq!(CloseCode::from_wire(close.to_wire()), close);
            let reject = RejectCode::Application(code);
            assert_eq!(RejectCode::from_wire(reject.to_wire()), reject);
        }
    }
}
