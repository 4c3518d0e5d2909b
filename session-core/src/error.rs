//! Errors: peer misbehaviour (`ProtocolError`) and API misuse (one type per command).

use crate::close::CloseCode;

/// The peer sent something the protocol does not allow. The session that
/// received it is closed with [`ProtocolError::close_code`]; the error is
/// sticky, so every later input returns it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame longer than the current limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The declared or actual length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// A length prefix that is not a valid varint.
    #[error("invalid length prefix")]
    BadLengthPrefix,
    /// The frame is not a valid protobuf message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] session_proto::prost::DecodeError),
    /// The frame's kind is missing or unknown to this version.
    #[error("unknown frame kind")]
    UnknownFrameKind,
    /// A frame the peer may not send in the current state.
    #[error("unexpected {frame} frame while {state}")]
    UnexpectedFrame {
        /// The frame's kind.
        frame: &'static str,
        /// The state of the receiving session.
        state: &'static str,
    },
    /// A login frame with invalid content.
    #[error("invalid login: {0}")]
    InvalidLogin(&'static str),
    /// A request id that is neither a re-send nor the next id.
    #[error("request id {id} out of order, expected at most {expected}")]
    RequestOutOfOrder {
        /// The id received.
        id: u64,
        /// The next new id the receiver expected.
        expected: u64,
    },
    /// More requests outstanding than the negotiated window.
    #[error("more than {limit} requests pending")]
    TooManyPendingRequests {
        /// The window.
        limit: u32,
    },
    /// More frames in one second than the server allows.
    #[error("more than {limit} frames in one second")]
    FrameRateExceeded {
        /// The limit.
        limit: u32,
    },
    /// An acknowledgement of events or responses never sent.
    #[error("acknowledgement {ack} beyond the last {what} {last}")]
    AckOutOfRange {
        /// What is acknowledged: "event" or "request".
        what: &'static str,
        /// The acknowledged number.
        ack: u64,
        /// The highest number that could be acknowledged.
        last: u64,
    },
    /// A pushed event skipped sequence numbers: events were lost.
    #[error("event gap: expected seq {expected}, got {got}")]
    EventGap {
        /// The next sequence number.
        expected: u64,
        /// The sequence number received.
        got: u64,
    },
    /// The server answered a resume for another session.
    #[error("resumed session id does not match")]
    SessionMismatch,
}

impl ProtocolError {
    /// The close code a session closed for this error carries.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::FrameTooLarge { .. }
            | Self::TooManyPendingRequests { .. }
            | Self::FrameRateExceeded { .. } => CloseCode::PolicyViolation,
            _ => CloseCode::ProtocolError,
        }
    }
}

/// Why a client could not start a login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// No connection: call `handle_connected` first.
    #[error("not connected")]
    NotConnected,
    /// A session is in progress (logging in, online or suspended).
    #[error("a session is already in progress")]
    SessionInProgress,
}

/// Why a client could not start a resume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// No connection: call `handle_connected` first.
    #[error("not connected")]
    NotConnected,
    /// Only a suspended session can be resumed.
    #[error("no suspended session to resume")]
    NotSuspended,
}

/// Why a client could not send a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// There is no session (never logged in, or logging in).
    #[error("not logged in")]
    NotLoggedIn,
    /// The session has ended.
    #[error("session closed: {0}")]
    SessionClosed(crate::close::CloseReason),
    /// The negotiated window of pending requests is full.
    #[error("too many pending requests (window {window})")]
    TooManyPending {
        /// The window negotiated at login.
        window: u32,
    },
}

/// Why a client could not acknowledge events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The sequence number was never received.
    #[error("event {seq} not received (last is {last})")]
    NotReceived {
        /// The sequence number given.
        seq: u64,
        /// The last sequence number received.
        last: u64,
    },
}

/// Why a client could not log out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutError {
    /// There is no session to log out of.
    #[error("not logged in")]
    NotLoggedIn,
}

/// Why a server session refused a login decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// No login is awaiting a decision (already decided, or the connection
    /// closed or timed out meanwhile).
    #[error("no login awaiting a decision")]
    NotAuthenticating,
}

/// Why an event could not be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The session is not open (not yet accepted, or closed).
    #[error("session not open")]
    NotOpen,
    /// The unacknowledged buffer overflowed; the session is now closed with
    /// `SLOW_CONSUMER` and this event was not accepted.
    #[error("slow consumer: session closed")]
    SlowConsumer,
}

/// Why a response could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// No request with this id was received.
    #[error("unknown request {0}")]
    UnknownRequest(u64),
    /// This request was already answered.
    #[error("request {0} already answered")]
    AlreadyAnswered(u64),
    /// The session is closed.
    #[error("session closed")]
    Closed,
}

/// Why a server session could not be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// It is already closed.
    #[error("already closed")]
    AlreadyClosed,
}

/// Why a resume was refused. The new connection should be answered with
/// `RejectCode::SessionNotFound` whatever the variant, so that a guesser
/// learns nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeRejected {
    /// The session is closed or was never opened.
    #[error("session not resumable")]
    NotResumable,
    /// The session id or the token does not match.
    #[error("session id or token mismatch")]
    BadToken,
    /// The client claims events that were never published.
    #[error("last event seq {claimed} beyond the last published {last}")]
    SeqOutOfRange {
        /// What the client sent.
        claimed: u64,
        /// The last published sequence number.
        last: u64,
    },
}
