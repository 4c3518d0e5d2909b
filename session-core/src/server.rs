//! The server side of one session: `ServerSession`, its events and states.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use session_proto::prost::Message;
use session_proto::v1::{self, client_frame, server_frame};

use crate::close::{CloseCode, ErrorCode, RejectCode, ResponseError};
use crate::codec::{Framing, encode_frame};
use crate::config::ServerConfig;
use crate::entropy::{Entropy, constant_time_eq};
use crate::error::{
    AcceptError, CloseError, ProtocolError, PublishError, RespondError, ResumeRejected,
};
use crate::timer::deadline_after;
use crate::{SessionId, Transmit};

/// The length of a resume token.
pub const RESUME_TOKEN_LEN: usize = 32;

/// Where a server session is in its lifecycle (as in Atomix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerState {
    /// A connection arrived; no `Login` yet.
    Accepted,
    /// A `Login` arrived and awaits `accept_login` or `reject_login`.
    Authenticating,
    /// Logged in, with a connection.
    Open,
    /// Logged in, connection lost: events are buffered until a resume or expiry.
    Detached,
    /// Over. Nothing more happens.
    Closed,
}

/// What a `Login` asked for, handed to the application to decide.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// The protocol version the client speaks.
    pub protocol_version: u32,
    /// Who is logging in.
    pub user_id: String,
    /// Opaque proof of identity. Never log it.
    pub credential: Bytes,
    /// The kind of device.
    pub device: String,
    /// The heartbeat interval the client asked for (0: no preference).
    pub requested_heartbeat_ms: u32,
    /// Present when the client wants to resume an existing session: look that
    /// session up and call [`ServerSession::resume`] on it.
    pub resume: Option<ResumeRequest>,
    /// Free-form properties.
    pub properties: BTreeMap<String, String>,
}

/// A client's claim to an existing session.
#[derive(Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The session to resume.
    pub session_id: SessionId,
    /// The token proving ownership. Never log it.
    pub resume_token: Bytes,
    /// The highest event sequence number the client received.
    pub last_event_seq: u64,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("protocol_version", &self.protocol_version)
            .field("user_id", &self.user_id)
            .field("credential", &"<redacted>")
            .field("device", &self.device)
            .field("requested_heartbeat_ms", &self.requested_heartbeat_ms)
            .field("resume", &self.resume)
            .field("properties", &self.properties)
            .finish()
    }
}

impl std::fmt::Debug for ResumeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeRequest")
            .field("session_id", &self.session_id)
            .field("resume_token", &"<redacted>")
            .field("last_event_seq", &self.last_event_seq)
            .finish()
    }
}

/// What a server session reports to the application, drained with
/// [`ServerSession::poll_event`].
///
/// Ordering guarantees (Atomix): `Opened` comes first and once; `Expired` is
/// always followed by `Closed`; nothing comes after `Closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A `Login` arrived: answer with `accept_login` or `reject_login`, or for
    /// a resume, `resume` the existing session and drop this one. (Boxed:
    /// it is large, rare, and would otherwise size every event.)
    LoginRequested(Box<LoginRequest>),
    /// The session is open (`on_open`).
    Opened {
        /// Its id.
        session_id: SessionId,
    },
    /// The connection was lost; the session waits for a resume or expiry.
    Detached,
    /// A client re-attached the session over a new connection.
    Resumed,
    /// A new request to execute; answer with `respond`.
    Request {
        /// The client's request id.
        id: u64,
        /// The application payload.
        body: Bytes,
    },
    /// Nothing was heard for the session timeout (`on_expire`); `Closed` follows.
    Expired,
    /// The session is over (`on_close`).
    Closed {
        /// Why.
        code: CloseCode,
        /// Detail (the client's logout reason, the kick reason, ...).
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Accepted,
    Authenticating,
    Open,
    Detached,
    Closed,
}

/// The final frame before the connection closes.
#[derive(Debug, Clone)]
enum Farewell {
    Close {
        code: CloseCode,
        reason: String,
        retry_after_ms: Option<u32>,
    },
    Reject {
        code: RejectCode,
        message: String,
    },
}

/// Control output waiting for `poll_transmit`. Events are not copied here:
/// they wait in the unacknowledged buffer and `sent_seq` says how far the
/// current connection got; responses due wait in the [`Backlog`].
#[derive(Debug, Default)]
struct Outbox {
    /// The server time for the queued `LoginOk` or `HeartbeatAck`: the time
    /// of the latest input that queued one (both carry it if both wait).
    server_time_ms: u64,
    /// `LoginOk` to send, and whether it resumed.
    login_ok: Option<bool>,
    /// `HeartbeatAck` to send.
    heartbeat_ack: bool,
    close_connection: bool,
}

/// What a session holds only while something is in flight: events and
/// responses the client has not acknowledged, responses due on the current
/// connection, and events the application has not taken. Boxed and dropped
/// once empty, so an idle session carries one pointer for all of it.
#[derive(Debug, Default)]
struct Backlog {
    /// Events published and not yet acknowledged, oldest first.
    unacked: VecDeque<Bytes>,
    unacked_bytes: usize,
    /// Responses not yet acknowledged, by request id.
    responses: BTreeMap<u64, Cached>,
    /// Responses to send on the current connection, by request id; each id
    /// at most once (its [`Cached::delivery`] is `Due`).
    responses_due: VecDeque<u64>,
    /// Requests handed to the application and not answered yet, in order.
    /// Bounded by the window even when the client acknowledges past them.
    executing: VecDeque<u64>,
    /// Lifecycle events and requests for [`ServerSession::poll_event`].
    events: VecDeque<ServerEvent>,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.unacked.is_empty()
            && self.responses.is_empty()
            && self.responses_due.is_empty()
            && self.executing.is_empty()
            && self.events.is_empty()
    }

    /// Takes `id` off the requests executing; whether it was there.
    fn finish(&mut self, id: u64) -> bool {
        match self.executing.binary_search(&id) {
            Ok(at) => {
                self.executing.remove(at);
                release_if_drained(&mut self.executing);
                true
            }
            Err(_) => false,
        }
    }
}

/// A response kept until the client acknowledges it.
#[derive(Debug)]
struct Cached {
    result: Result<Bytes, ResponseError>,
    delivery: Delivery,
}

/// Where a cached response stands on the current connection: it goes out
/// at most once per connection, however often the client re-sends its
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Not sent on this connection (answered while detached, or sent on
    /// one that is gone): a re-send of the request queues it.
    Waiting,
    /// In `responses_due`.
    Due,
    /// Sent on this connection.
    Sent,
}

/// The server side of one session, sans IO.
///
/// A driver creates one per accepted connection and feeds it:
///
/// - **getters** (`&self`): [`state`](Self::state),
///   [`session_id`](Self::session_id), [`max_frame_len`](Self::max_frame_len),
///   [`heartbeat`](Self::heartbeat), ...
/// - **input**: [`handle_frame`](Self::handle_frame) for each frame received,
///   [`handle_protocol_error`](Self::handle_protocol_error) for bad input the
///   transport caught, [`handle_timeout`](Self::handle_timeout) when
///   [`poll_timeout`](Self::poll_timeout) passes,
///   [`handle_disconnect`](Self::handle_disconnect) when the transport is lost;
/// - **commands** from the application: [`accept_login`](Self::accept_login),
///   [`reject_login`](Self::reject_login), [`publish`](Self::publish),
///   [`respond`](Self::respond), [`close`](Self::close), and
///   [`resume`](Self::resume) to re-attach this session to a new connection;
/// - **output**, drained after every input or command until empty:
///   [`poll_transmit`](Self::poll_transmit) (frames, then possibly the order to
///   close the connection), [`poll_event`](Self::poll_event) (lifecycle and
///   requests), then [`poll_timeout`](Self::poll_timeout) (the next deadline).
///
/// Peer misbehaviour does not need handling by the caller: the session closes
/// itself with the matching code, queues the close signal and reports
/// `Closed`. `handle_frame` also returns the error, and keeps returning it.
#[derive(Debug)]
pub struct ServerSession {
    config: Arc<ServerConfig>,
    phase: Phase,
    /// The one deadline: the login deadline until the session opens
    /// (Accepted, Authenticating), then expiry, `session_timeout` after the
    /// client was last heard (Open, Detached); none once Closed.
    deadline: Option<Instant>,
    session_id: SessionId,
    resume_token: Token,
    heartbeat_ms: u32,
    timeout_ms: u32,
    /// The sequence number of the oldest event in the backlog's `unacked`
    /// minus one: every event up to here was acknowledged.
    acked_seq: u64,
    /// The highest event sequence number written to the current connection.
    sent_seq: u64,
    /// Every response up to this request id was received by the client.
    acked_request: u64,
    /// The highest request id received.
    highest_request: u64,
    /// The start of the current one-second window of the frame-rate limit,
    /// and the frames counted in it.
    rate_window: Option<Instant>,
    rate_frames: u32,
    out: Outbox,
    /// Present only while something is in flight.
    backlog: Option<Box<Backlog>>,
    /// Present only after a resume, while closing, or after a failure.
    rare: Option<Box<Rare>>,
}

/// A resume token as the server keeps it; `Debug` leaves its bytes out.
#[derive(Clone, Copy, Default)]
struct Token([u8; RESUME_TOKEN_LEN]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What few sessions have, boxed together: one pointer in every session.
#[derive(Debug, Default)]
struct Rare {
    /// The token the client presented at its last resume, still accepted
    /// until a frame from the client shows it received the new one: if that
    /// `LoginOk` is lost with the connection, the client still holds this
    /// one and must not be locked out.
    previous_token: Option<Token>,
    /// The final frame to send before the connection closes.
    farewell: Option<Farewell>,
    /// The protocol error that closed the session (sticky).
    error: Option<ProtocolError>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.previous_token.is_none() && self.farewell.is_none() && self.error.is_none()
    }
}

impl ServerSession {
    /// A session for a connection accepted at `now`; it must log in before
    /// `now + login_timeout`.
    pub fn new(now: Instant, config: Arc<ServerConfig>) -> Self {
        Self {
            deadline: Some(deadline_after(now, config.login_timeout)),
            config,
            phase: Phase::Accepted,
            session_id: SessionId(0),
            resume_token: Token::default(),
            heartbeat_ms: 0,
            timeout_ms: 0,
            acked_seq: 0,
            sent_seq: 0,
            acked_request: 0,
            highest_request: 0,
            rate_window: None,
            rate_frames: 0,
            out: Outbox::default(),
            backlog: None,
            rare: None,
        }
    }

    // ---- getters ----

    /// The lifecycle state.
    pub fn state(&self) -> ServerState {
        match self.phase {
            Phase::Accepted => ServerState::Accepted,
            Phase::Authenticating => ServerState::Authenticating,
            Phase::Open => ServerState::Open,
            Phase::Detached => ServerState::Detached,
            Phase::Closed => ServerState::Closed,
        }
    }

    /// The session id, once accepted.
    pub fn session_id(&self) -> Option<SessionId> {
        matches!(self.phase, Phase::Open | Phase::Detached).then_some(self.session_id)
    }

    /// The largest frame the peer may send now: small before login.
    pub fn max_frame_len(&self) -> usize {
        match self.phase {
            Phase::Open | Phase::Detached => self.config.max_frame_len,
            _ => self.config.pre_login_max_frame_len,
        }
    }

    /// The negotiated heartbeat interval, once accepted.
    pub fn heartbeat(&self) -> Option<Duration> {
        (self.heartbeat_ms > 0).then(|| Duration::from_millis(u64::from(self.heartbeat_ms)))
    }

    /// The negotiated session timeout, once accepted.
    pub fn session_timeout(&self) -> Option<Duration> {
        (self.timeout_ms > 0).then(|| Duration::from_millis(u64::from(self.timeout_ms)))
    }

    /// The sequence number of the last published event (0: none).
    pub fn last_event_seq(&self) -> u64 {
        self.acked_seq + self.unacked_events() as u64
    }

    /// How many published events await acknowledgement.
    pub fn unacked_events(&self) -> usize {
        self.backlog
            .as_ref()
            .map_or(0, |backlog| backlog.unacked.len())
    }

    /// Whether the session keeps nothing beyond its inline state: no event
    /// or response awaits an acknowledgement, the application or the
    /// connection, no close is under way, and no previous resume token or
    /// error is kept. An open session between exchanges is idle, and then
    /// holds no heap memory at all (see `docs/core.md`).
    pub fn is_idle(&self) -> bool {
        self.backlog.is_none() && self.rare.is_none()
    }

    /// The protocol error that closed this session, if one did.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.rare.as_ref().and_then(|rare| rare.error.as_ref())
    }

    // ---- input ----

    /// Handles one frame from the client, received at `now`.
    pub fn handle_frame(&mut self, now: Instant, frame: Bytes) -> Result<(), ProtocolError> {
        if let Some(error) = self.error() {
            return Err(error.clone());
        }
        match self.phase {
            // No connection is attached, or it is being closed: late frames
            // are ignored (a logout racing a kick, say).
            Phase::Closed | Phase::Detached => return Ok(()),
            _ if self.out.close_connection => return Ok(()),
            _ => {}
        }
        if frame.len() > self.max_frame_len() {
            return self.fail(
                now,
                ProtocolError::FrameTooLarge {
                    len: frame.len() as u64,
                    max: self.max_frame_len(),
                },
            );
        }
        let kind = match v1::ClientFrame::decode(frame) {
            Ok(v1::ClientFrame { kind: Some(kind) }) => kind,
            Ok(v1::ClientFrame { kind: None }) => {
                return self.fail(now, ProtocolError::UnknownFrameKind);
            }
            Err(e) => return self.fail(now, ProtocolError::Malformed(e)),
        };
        match (self.phase, kind) {
            (Phase::Accepted, client_frame::Kind::Login(login)) => {
                self.on_login(now, login);
                Ok(())
            }
            (Phase::Open, kind) => self.on_open_frame(now, kind),
            (_, kind) => {
                let state = self.state_name();
                self.fail(
                    now,
                    ProtocolError::UnexpectedFrame {
                        frame: client_frame_name(&kind),
                        state,
                    },
                )
            }
        }
    }

    /// Reports bad input the transport found before a frame could be handed
    /// over (a length prefix over [`max_frame_len`](Self::max_frame_len), an
    /// invalid prefix, a text WebSocket message): the session closes as if
    /// `handle_frame` had found it, with the close signal queued.
    pub fn handle_protocol_error(&mut self, now: Instant, error: ProtocolError) {
        if self.error().is_none() && self.phase != Phase::Closed {
            let _ = self.fail(now, error);
        }
    }

    /// Handles the passing of deadlines: call when `poll_timeout` is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|at| at > now) {
            return;
        }
        self.deadline = None;
        match self.phase {
            Phase::Accepted | Phase::Authenticating => {
                self.close_with(CloseCode::LoginTimeout, "login timeout".into());
            }
            Phase::Open | Phase::Detached => {
                self.push_event(ServerEvent::Expired);
                self.close_with(CloseCode::Expired, "session expired".into());
            }
            Phase::Closed => {}
        }
    }

    /// The connection was lost (or the driver closed it). An open session is
    /// detached and waits for a resume until it expires.
    pub fn handle_disconnect(&mut self, _now: Instant) {
        match self.phase {
            Phase::Accepted | Phase::Authenticating => {
                self.phase = Phase::Closed;
                self.deadline = None;
                self.clear_outbox();
            }
            Phase::Open => self.detach(),
            Phase::Detached | Phase::Closed => self.clear_outbox(),
        }
    }

    // ---- commands ----

    /// Accepts the pending login: the session opens, `LoginOk` is queued
    /// (with a fresh id and resume token from `entropy`), then any event
    /// published from now on.
    pub fn accept_login(
        &mut self,
        now: Instant,
        requested_heartbeat_ms: u32,
        entropy: &mut dyn Entropy,
    ) -> Result<SessionId, AcceptError> {
        if self.phase != Phase::Authenticating || self.out.close_connection {
            return Err(AcceptError::NotAuthenticating);
        }
        let mut id = [0u8; 8];
        entropy.fill_bytes(&mut id);
        // Zero means "none" in the getters' eyes; avoid it.
        self.session_id = SessionId(u64::from_le_bytes(id).max(1));
        entropy.fill_bytes(&mut self.resume_token.0);
        let heartbeat = self.config.negotiate_heartbeat(requested_heartbeat_ms);
        let timeout = self.config.session_timeout(heartbeat);
        self.heartbeat_ms = duration_ms(heartbeat);
        self.timeout_ms = duration_ms(timeout);
        self.phase = Phase::Open;
        self.touch(now);
        self.queue_login_ok(now, false);
        self.push_event(ServerEvent::Opened {
            session_id: self.session_id,
        });
        Ok(self.session_id)
    }

    /// Refuses the pending login: `LoginRejected` is queued, then the order
    /// to close the connection. No lifecycle event follows (the session never
    /// opened).
    pub fn reject_login(&mut self, code: RejectCode, message: &str) -> Result<(), AcceptError> {
        if self.phase != Phase::Authenticating || self.out.close_connection {
            return Err(AcceptError::NotAuthenticating);
        }
        self.phase = Phase::Closed;
        self.deadline = None;
        self.rare_mut().farewell = Some(Farewell::Reject {
            code: RejectCode::from_wire(code.to_wire()),
            message: message.to_owned(),
        });
        self.out.close_connection = true;
        Ok(())
    }

    /// Re-attaches this session (Open or Detached) for a client that proved
    /// ownership with `request`, over a new connection. Replays every event
    /// after `request.last_event_seq`, in order, after a `LoginOk` with a
    /// fresh resume token.
    ///
    /// If the session was still Open (the server had not noticed the old
    /// connection die), the old connection is forgotten: the driver must
    /// close it without writing to it, and route the new connection here.
    pub fn resume(
        &mut self,
        now: Instant,
        request: &ResumeRequest,
        entropy: &mut dyn Entropy,
    ) -> Result<(), ResumeRejected> {
        if !matches!(self.phase, Phase::Open | Phase::Detached) {
            return Err(ResumeRejected::NotResumable);
        }
        let id_ok = request.session_id == self.session_id;
        let current_ok = constant_time_eq(&request.resume_token, &self.resume_token.0);
        let previous_token = self.rare.as_ref().and_then(|rare| rare.previous_token);
        let previous_ok = previous_token
            .is_some_and(|previous| constant_time_eq(&request.resume_token, &previous.0));
        if !(id_ok & (current_ok | previous_ok)) {
            return Err(ResumeRejected::BadToken);
        }
        let last = self.last_event_seq();
        if request.last_event_seq > last {
            return Err(ResumeRejected::SeqOutOfRange {
                claimed: request.last_event_seq,
                last,
            });
        }
        if self.phase == Phase::Open {
            self.detach();
        }
        self.ack_events(request.last_event_seq);
        self.sent_seq = self.acked_seq;
        // The client provably holds the token it presented; keep accepting
        // that one until it shows it received the new one.
        let presented = if current_ok {
            self.resume_token
        } else {
            previous_token.unwrap_or(self.resume_token)
        };
        self.rare_mut().previous_token = Some(presented);
        entropy.fill_bytes(&mut self.resume_token.0);
        self.phase = Phase::Open;
        self.touch(now);
        self.queue_login_ok(now, true);
        self.push_event(ServerEvent::Resumed);
        Ok(())
    }

    /// Publishes an event to the client; returns its sequence number. Allowed
    /// while Open or Detached (buffered for a resume). When the buffer of
    /// unacknowledged events would overflow, the session is closed with
    /// `SLOW_CONSUMER` instead and this event is refused.
    pub fn publish(&mut self, body: Bytes) -> Result<u64, PublishError> {
        if !matches!(self.phase, Phase::Open | Phase::Detached) {
            return Err(PublishError::NotOpen);
        }
        let unacked = self.unacked_events();
        let bytes = self
            .backlog
            .as_ref()
            .map_or(0, |backlog| backlog.unacked_bytes)
            + body.len();
        if unacked + 1 > self.config.max_unacked_events as usize
            || bytes > self.config.max_unacked_bytes as usize
        {
            self.close_with(
                CloseCode::SlowConsumer,
                format!("{unacked} events unacknowledged"),
            );
            return Err(PublishError::SlowConsumer);
        }
        let backlog = self.backlog_mut();
        backlog.unacked.push_back(body);
        backlog.unacked_bytes = bytes;
        Ok(self.last_event_seq())
    }

    /// Answers request `id`. The response is kept until the client
    /// acknowledges it, so that a re-send after a resume gets it again
    /// instead of a second execution. A response to a request the client has
    /// already given up on is dropped.
    pub fn respond(
        &mut self,
        id: u64,
        result: Result<Bytes, ResponseError>,
    ) -> Result<(), RespondError> {
        if !matches!(self.phase, Phase::Open | Phase::Detached) {
            return Err(RespondError::Closed);
        }
        if id > self.highest_request || id == 0 {
            return Err(RespondError::UnknownRequest(id));
        }
        let was_executing = self.backlog.as_mut().is_some_and(|b| b.finish(id));
        if id <= self.acked_request {
            self.tidy();
            return Ok(());
        }
        if !was_executing {
            return Err(RespondError::AlreadyAnswered(id));
        }
        self.cache_response(id, result);
        Ok(())
    }

    /// Keeps the response to `id` until acknowledged, and queues it if the
    /// session is open.
    fn cache_response(&mut self, id: u64, result: Result<Bytes, ResponseError>) {
        let open = self.phase == Phase::Open;
        let backlog = self.backlog_mut();
        let delivery = if open {
            backlog.responses_due.push_back(id);
            Delivery::Due
        } else {
            Delivery::Waiting
        };
        backlog.responses.insert(id, Cached { result, delivery });
    }

    /// Closes the session with `code` (kick, conflict, shutdown, ...): the
    /// close signal is queued after anything already queued (with
    /// `retry_after` as a hint for the client), then the order to close the
    /// connection; `Closed` is reported if the session was open.
    pub fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> Result<(), CloseError> {
        if self.phase == Phase::Closed {
            return Err(CloseError::AlreadyClosed);
        }
        // The code as the client will read it (an application code out of
        // its range goes out as UNSPECIFIED), so that both sides report
        // the same one.
        let code = CloseCode::from_wire(code.to_wire());
        self.close_inner(code, reason.to_owned(), retry_after.map(duration_ms));
        Ok(())
    }

    // ---- output ----

    /// Appends the next frame to `buf` (in `framing`) and returns
    /// `Some(Transmit::Frame)`; after the last frame of a closing session,
    /// returns `Some(Transmit::CloseConnection)` once; `None` when idle.
    pub fn poll_transmit(&mut self, buf: &mut BytesMut, framing: Framing) -> Option<Transmit> {
        let server_time_ms = self.out.server_time_ms;
        let kind = if let Some(resumed) = self.out.login_ok.take() {
            server_frame::Kind::LoginOk(v1::LoginOk {
                session_id: self.session_id.0,
                resume_token: Bytes::copy_from_slice(&self.resume_token.0),
                heartbeat_ms: self.heartbeat_ms,
                session_timeout_ms: self.timeout_ms,
                resumed,
                next_event_seq: self.last_event_seq() + 1,
                server_time_ms,
                max_pending_requests: self.config.max_pending_requests,
                max_unacked_events: self.config.max_unacked_events,
                max_unacked_bytes: self.config.max_unacked_bytes,
            })
        } else if std::mem::take(&mut self.out.heartbeat_ack) {
            server_frame::Kind::HeartbeatAck(v1::HeartbeatAck { server_time_ms })
        } else if let Some(response) = self.next_response() {
            server_frame::Kind::Response(response)
        } else if let Some(event) = self.next_event() {
            server_frame::Kind::Event(event)
        } else if let Some(farewell) = self.take_farewell() {
            match farewell {
                Farewell::Close {
                    code,
                    reason,
                    retry_after_ms,
                } => server_frame::Kind::CloseSignal(v1::CloseSignal {
                    code: code.to_wire(),
                    reason,
                    retry_after_ms,
                }),
                Farewell::Reject { code, message } => {
                    server_frame::Kind::LoginRejected(v1::LoginRejected {
                        code: code.to_wire(),
                        message,
                    })
                }
            }
        } else if std::mem::take(&mut self.out.close_connection) {
            return Some(Transmit::CloseConnection);
        } else {
            return None;
        };
        encode_frame(&v1::ServerFrame { kind: Some(kind) }, framing, buf);
        Some(Transmit::Frame)
    }

    /// The next lifecycle event or request for the application.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        let backlog = self.backlog.as_mut()?;
        let event = backlog.events.pop_front();
        release_if_drained(&mut backlog.events);
        self.tidy();
        event
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    // ---- internals ----

    /// The next queued response still unacknowledged. Those acknowledged
    /// since they were queued are skipped in a loop: the peer controls how
    /// many there are (a re-send queues one each), so no recursion.
    fn next_response(&mut self) -> Option<v1::Response> {
        let backlog = self.backlog.as_mut()?;
        while let Some(id) = backlog.responses_due.pop_front() {
            release_if_drained(&mut backlog.responses_due);
            let Some(cached) = backlog.responses.get_mut(&id) else {
                continue;
            };
            cached.delivery = Delivery::Sent;
            let result = match &cached.result {
                Ok(body) => v1::response::Result::Body(body.clone()),
                Err(e) => v1::response::Result::Error(v1::Error {
                    code: e.code.to_wire(),
                    message: e.message.clone(),
                }),
            };
            return Some(v1::Response {
                request_id: id,
                result: Some(result),
            });
        }
        self.tidy();
        None
    }

    /// The next event for the current connection, if it is open, or closing
    /// with the connection still attached: events published before the
    /// close go out ahead of the close signal.
    fn next_event(&mut self) -> Option<v1::Event> {
        if self.sent_seq >= self.last_event_seq()
            || !(self.phase == Phase::Open || self.out.close_connection)
        {
            return None;
        }
        let index = (self.sent_seq - self.acked_seq) as usize;
        let body = self.backlog.as_ref()?.unacked.get(index)?.clone();
        self.sent_seq += 1;
        Some(v1::Event {
            seq: self.sent_seq,
            body,
        })
    }

    fn backlog_mut(&mut self) -> &mut Backlog {
        self.backlog.get_or_insert_with(Box::default)
    }

    /// Drops the backlog once nothing is in it.
    fn tidy(&mut self) {
        if self
            .backlog
            .as_ref()
            .is_some_and(|backlog| backlog.is_empty())
        {
            self.backlog = None;
        }
    }

    fn push_event(&mut self, event: ServerEvent) {
        self.backlog_mut().events.push_back(event);
    }

    fn queue_login_ok(&mut self, now: Instant, resumed: bool) {
        self.out.login_ok = Some(resumed);
        self.out.server_time_ms = self.server_time_ms(now);
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Drops the rare state once nothing is in it.
    fn tidy_rare(&mut self) {
        if self.rare.as_ref().is_some_and(|rare| rare.is_empty()) {
            self.rare = None;
        }
    }

    fn take_farewell(&mut self) -> Option<Farewell> {
        let farewell = self.rare.as_mut()?.farewell.take();
        self.tidy_rare();
        farewell
    }

    /// Forgets what was meant for a connection that is gone.
    fn clear_outbox(&mut self) {
        self.out = Outbox::default();
        if let Some(rare) = &mut self.rare {
            rare.farewell = None;
            self.tidy_rare();
        }
        if let Some(backlog) = self.backlog.as_mut() {
            backlog.responses_due = VecDeque::new();
            // The next connection gets each response again, on request.
            for cached in backlog.responses.values_mut() {
                cached.delivery = Delivery::Waiting;
            }
        }
        self.tidy();
    }

    fn server_time_ms(&self, now: Instant) -> u64 {
        self.config
            .wall_clock
            .map_or(0, |clock| clock.unix_ms_at(now))
    }

    fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Accepted => "awaiting login",
            Phase::Authenticating => "authenticating",
            Phase::Open => "open",
            Phase::Detached => "detached",
            Phase::Closed => "closed",
        }
    }

    fn touch(&mut self, now: Instant) {
        let timeout = Duration::from_millis(u64::from(self.timeout_ms));
        self.deadline = Some(now + timeout);
    }

    fn on_login(&mut self, _now: Instant, login: v1::Login) {
        if login.protocol_version != session_proto::PROTOCOL_VERSION {
            self.phase = Phase::Authenticating;
            let _ = self.reject_login(
                RejectCode::UnsupportedVersion,
                "this server speaks protocol version 1",
            );
            return;
        }
        let resume = login.resume.map(|r| ResumeRequest {
            session_id: SessionId(r.session_id),
            resume_token: r.resume_token,
            last_event_seq: r.last_event_seq,
        });
        if login.user_id.is_empty() && resume.is_none() {
            self.phase = Phase::Authenticating;
            let _ = self.reject_login(RejectCode::InvalidLogin, "empty user id");
            return;
        }
        self.phase = Phase::Authenticating;
        self.push_event(ServerEvent::LoginRequested(Box::new(LoginRequest {
            protocol_version: login.protocol_version,
            user_id: login.user_id,
            credential: login.credential,
            device: login.device,
            requested_heartbeat_ms: login.requested_heartbeat_ms,
            resume,
            properties: login.properties,
        })));
    }

    fn on_open_frame(
        &mut self,
        now: Instant,
        kind: client_frame::Kind,
    ) -> Result<(), ProtocolError> {
        self.count_frame(now)?;
        // A client sends nothing before its `LoginOk`: this frame shows it
        // holds the current token, so the previous one stops working.
        if let Some(rare) = &mut self.rare {
            rare.previous_token = None;
            self.tidy_rare();
        }
        // Any frame is liveness, not only heartbeats.
        self.touch(now);
        match kind {
            client_frame::Kind::Heartbeat(hb) => {
                self.check_event_ack(now, hb.ack_event_seq)?;
                self.check_request_ack(now, hb.ack_request_id)?;
                self.out.heartbeat_ack = true;
                self.out.server_time_ms = self.server_time_ms(now);
                Ok(())
            }
            client_frame::Kind::Ack(ack) => {
                self.check_event_ack(now, ack.event_seq)?;
                self.check_request_ack(now, ack.ack_request_id)
            }
            client_frame::Kind::Request(request) => {
                self.check_request_ack(now, request.ack_request_id)?;
                self.on_request(now, request.request_id, request.body)
            }
            client_frame::Kind::Logout(logout) => {
                // The client has closed its side: no close signal, just close.
                self.finish(CloseCode::LoggedOut, logout.reason);
                self.clear_outbox();
                self.sent_seq = self.last_event_seq();
                self.out.close_connection = true;
                Ok(())
            }
            client_frame::Kind::Login(_) => self.fail(
                now,
                ProtocolError::UnexpectedFrame {
                    frame: "login",
                    state: "open",
                },
            ),
        }
    }

    /// The frame-rate limit: a fixed one-second window, cheap enough for
    /// every frame.
    fn count_frame(&mut self, now: Instant) -> Result<(), ProtocolError> {
        let limit = self.config.max_frames_per_second;
        if limit == 0 {
            return Ok(());
        }
        match self.rate_window {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => {
                self.rate_frames += 1;
                if self.rate_frames > limit {
                    return self.fail(now, ProtocolError::FrameRateExceeded { limit });
                }
            }
            _ => {
                self.rate_window = Some(now);
                self.rate_frames = 1;
            }
        }
        Ok(())
    }

    fn on_request(&mut self, now: Instant, id: u64, body: Bytes) -> Result<(), ProtocolError> {
        if Some(id) == self.highest_request.checked_add(1) {
            let window = self.config.max_pending_requests;
            if id - self.acked_request > u64::from(window) {
                return self.fail(now, ProtocolError::TooManyPendingRequests { limit: window });
            }
            self.highest_request = id;
            let executing = self.backlog.as_ref().map_or(0, |b| b.executing.len());
            if executing >= window as usize {
                // The client acknowledged past requests that still run (it
                // gave up on them): their slots stay taken until they end,
                // so this one fails at once instead of running.
                let busy = ResponseError {
                    code: ErrorCode::Unavailable,
                    message: format!("{executing} requests of this session are still executing"),
                };
                self.cache_response(id, Err(busy));
                return Ok(());
            }
            let backlog = self.backlog_mut();
            backlog.executing.push_back(id);
            backlog.events.push_back(ServerEvent::Request { id, body });
        } else if id > self.highest_request || id == 0 {
            return self.fail(
                now,
                ProtocolError::RequestOutOfOrder {
                    id,
                    expected: self.highest_request.saturating_add(1),
                },
            );
        } else if let Some(backlog) = self.backlog.as_mut() {
            // A re-send (after a resume) of a request already answered gets
            // the cached response, once per connection.
            if let Some(cached) = backlog.responses.get_mut(&id)
                && cached.delivery == Delivery::Waiting
            {
                cached.delivery = Delivery::Due;
                backlog.responses_due.push_back(id);
            }
        }
        // Otherwise: acknowledged already, or still executing; its response
        // goes out when ready.
        Ok(())
    }

    fn check_event_ack(&mut self, now: Instant, ack: u64) -> Result<(), ProtocolError> {
        if ack > self.sent_seq.max(self.acked_seq) {
            return self.fail(
                now,
                ProtocolError::AckOutOfRange {
                    what: "event",
                    ack,
                    last: self.sent_seq,
                },
            );
        }
        self.ack_events(ack);
        Ok(())
    }

    fn ack_events(&mut self, ack: u64) {
        if ack <= self.acked_seq {
            return;
        }
        if let Some(backlog) = self.backlog.as_mut() {
            let n = usize::try_from(ack - self.acked_seq)
                .unwrap_or(usize::MAX)
                .min(backlog.unacked.len());
            for body in backlog.unacked.drain(..n) {
                backlog.unacked_bytes -= body.len();
            }
            if backlog.unacked.is_empty() && backlog.unacked.capacity() > 64 {
                // Give back the memory a burst took, should anything else
                // keep the backlog.
                backlog.unacked = VecDeque::new();
            }
        }
        self.acked_seq = ack;
        self.sent_seq = self.sent_seq.max(self.acked_seq);
        self.tidy();
    }

    fn check_request_ack(&mut self, now: Instant, ack: u64) -> Result<(), ProtocolError> {
        if ack == u64::MAX {
            // No request could follow: every id would be taken.
            return self.fail(
                now,
                ProtocolError::AckOutOfRange {
                    what: "request",
                    ack,
                    last: self.highest_request,
                },
            );
        }
        if ack > self.highest_request {
            // The client gave up on requests this session never received
            // (lost with a connection, then timed out): they are finished on
            // both sides, so the next new id follows `ack`.
            self.highest_request = ack;
        }
        if ack > self.acked_request {
            self.acked_request = ack;
            // Drop every cached response up to `ack`.
            if let Some(backlog) = self.backlog.as_mut() {
                backlog.responses = backlog.responses.split_off(&ack.saturating_add(1));
            }
            self.tidy();
        }
        Ok(())
    }

    fn detach(&mut self) {
        self.phase = Phase::Detached;
        self.clear_outbox();
        self.sent_seq = self.acked_seq;
        self.push_event(ServerEvent::Detached);
    }

    /// Moves to Closed with `code` and reports it; nothing is queued.
    fn finish(&mut self, code: CloseCode, reason: String) {
        let was_open = matches!(self.phase, Phase::Open | Phase::Detached);
        self.phase = Phase::Closed;
        self.deadline = None;
        if was_open {
            self.push_event(ServerEvent::Closed { code, reason });
        }
    }

    /// Closes: queues the close signal (if a connection is attached) and the
    /// order to close, and reports `Closed` if the session was open.
    fn close_with(&mut self, code: CloseCode, reason: String) {
        self.close_inner(code, reason, None);
    }

    fn close_inner(&mut self, code: CloseCode, reason: String, retry_after_ms: Option<u32>) {
        let attached = matches!(
            self.phase,
            Phase::Accepted | Phase::Authenticating | Phase::Open
        );
        if attached && !self.out.close_connection {
            self.rare_mut().farewell = Some(Farewell::Close {
                code,
                reason: reason.clone(),
                retry_after_ms,
            });
            self.out.close_connection = true;
        }
        self.finish(code, reason);
    }

    fn fail(&mut self, _now: Instant, error: ProtocolError) -> Result<(), ProtocolError> {
        self.rare_mut().error = Some(error.clone());
        self.close_with(error.close_code(), error.to_string());
        Err(error)
    }
}

/// Frees a drained queue's buffer, so that idle sessions hold no queue
/// memory (the heartbeat and event paths never use these queues).
fn release_if_drained<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() != 0 {
        *queue = VecDeque::new();
    }
}

fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn client_frame_name(kind: &client_frame::Kind) -> &'static str {
    match kind {
        client_frame::Kind::Login(_) => "login",
        client_frame::Kind::Heartbeat(_) => "heartbeat",
        client_frame::Kind::Request(_) => "request",
        client_frame::Kind::Ack(_) => "ack",
        client_frame::Kind::Logout(_) => "logout",
    }
}
