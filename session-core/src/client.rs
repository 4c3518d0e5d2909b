//! The client side of a session: `ClientSession`, its events and states.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use session_proto::prost::Message;
use session_proto::v1::{self, client_frame, server_frame};

use crate::close::{CloseCode, CloseReason, ErrorCode, RejectCode, ResponseError};
use crate::codec::{Framing, encode_frame};
use crate::config::ClientConfig;
use crate::error::{AckError, LoginError, LogoutError, ProtocolError, RequestError, ResumeError};
use crate::timer::{TimerKind, TimerTable, deadline_after};
use crate::{SessionId, Transmit};

/// Where a client is, network and session layers together (as in Turms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientState {
    /// No connection, no session.
    Disconnected,
    /// A connection, no session yet.
    Connected,
    /// `Login` sent, awaiting the answer.
    LoggingIn,
    /// Logged in.
    Online,
    /// The connection was lost; the session can be resumed until it expires.
    Suspended,
    /// `Login` with `Resume` sent over a new connection, awaiting the answer.
    Resuming,
    /// The session is over (the connection may still be closing).
    Closed,
}

/// Who logs in, and how.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The user.
    pub user_id: String,
    /// Opaque proof of identity, checked by the server. Never logged.
    pub credential: Bytes,
    /// The kind of device ("web", "ios", ...).
    pub device: String,
    /// Free-form properties for the application.
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user_id", &self.user_id)
            .field("credential", &"<redacted>")
            .field("device", &self.device)
            .field("properties", &self.properties)
            .finish()
    }
}

/// What the server granted at login or resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineInfo {
    /// The session's id.
    pub session_id: SessionId,
    /// The heartbeat interval in force.
    pub heartbeat: Duration,
    /// How long the server keeps the session without hearing from us.
    pub session_timeout: Duration,
    /// Whether an existing session was resumed.
    pub resumed: bool,
    /// The server's clock at login, Unix milliseconds (0 if unknown).
    pub server_time_ms: u64,
}

/// Why a login or resume attempt did not get the session online. The
/// session, if there was one, is not over (see `Offline` for that).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginFailure {
    /// The server refused the login. For a resume, only with a code that
    /// [`may_retry`](RejectCode::may_retry) (rate limited, busy, failed):
    /// the session stays suspended. Any other refusal of a resume ends the
    /// session with `Offline(ResumeRejected)`.
    Rejected {
        /// Why.
        code: RejectCode,
        /// The server's detail.
        message: String,
    },
    /// The server closed the connection before answering (for a resume,
    /// the session stays suspended).
    Closed(CloseReason),
    /// No answer within the login timeout.
    TimedOut,
    /// The connection was lost before the answer.
    ConnectionLost,
}

/// Why a connection ended, as the network layer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The transport closed or failed.
    Lost,
    /// The session asked for the close (after a logout, a close signal, a
    /// rejection or a timeout).
    Closed,
    /// Nothing was heard from the server for too long.
    ServerSilent,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// The server answered with an error.
    #[error("server error: {0}")]
    Server(ResponseError),
    /// No response within the request timeout.
    #[error("request timed out")]
    TimedOut,
    /// The session ended before the response.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
}

/// What a client session reports, drained with [`ClientSession::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection is up (`on_connected`).
    Connected,
    /// The connection is gone (`on_disconnected`).
    Disconnected(DisconnectReason),
    /// The session is online, after a login or a resume (`on_online`).
    Online(OnlineInfo),
    /// A login or resume attempt failed without ending a session.
    LoginFailed(LoginFailure),
    /// The session is over (`on_offline`): once per session.
    Offline(CloseReason),
    /// A pushed event, delivered once and in order.
    Message {
        /// Its sequence number (contiguous from 1).
        seq: u64,
        /// The application payload.
        body: Bytes,
    },
    /// A request completed.
    Response {
        /// The id `request` returned.
        id: u64,
        /// The answer or the failure.
        result: Result<Bytes, RequestFailure>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    LoggingIn,
    Online,
    Suspended,
    Resuming,
    Closed,
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    /// The answer to a login or resume is due.
    Login,
    /// Send a heartbeat.
    Heartbeat,
    /// The server has been silent too long.
    Silence,
    /// A suspended session has surely expired on the server.
    Expiry,
    /// A delayed acknowledgement is due.
    Ack,
}

impl TimerKind for Timer {
    const ALL: &'static [Self] = &[
        Self::Login,
        Self::Heartbeat,
        Self::Silence,
        Self::Expiry,
        Self::Ack,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// What the server granted, kept for heartbeats and resumes.
#[derive(Clone)]
struct Grant {
    session_id: SessionId,
    resume_token: Bytes,
    heartbeat: Duration,
    timeout: Duration,
    window: u32,
    /// The server's window of unacknowledged events and payload bytes, if
    /// it announced one.
    unacked: Option<(u32, u32)>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("session_id", &self.session_id)
            .field("resume_token", &"<redacted>")
            .field("heartbeat", &self.heartbeat)
            .field("timeout", &self.timeout)
            .field("window", &self.window)
            .field("unacked", &self.unacked)
            .finish()
    }
}

#[derive(Debug)]
struct Pending {
    body: Bytes,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct Outbox {
    login: Option<v1::Login>,
    heartbeat: bool,
    ack: bool,
    requests: VecDeque<u64>,
    logout: Option<String>,
    close_connection: bool,
}

/// The client side of a session, sans IO.
///
/// - **getters** (`&self`): [`state`](Self::state), [`session_id`](Self::session_id),
///   [`last_event_seq`](Self::last_event_seq), [`max_frame_len`](Self::max_frame_len);
/// - **input**: [`handle_connected`](Self::handle_connected) when a transport
///   is up, [`handle_frame`](Self::handle_frame) for each frame received,
///   [`handle_timeout`](Self::handle_timeout) when
///   [`poll_timeout`](Self::poll_timeout) passes, and
///   [`handle_disconnect`](Self::handle_disconnect) when the transport is lost
///   or closed (also after the session itself asked for the close);
/// - **commands**: [`login`](Self::login), [`logout`](Self::logout),
///   [`request`](Self::request), [`ack`](Self::ack), [`resume`](Self::resume);
/// - **output**, drained after every input or command until empty:
///   [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
///   then [`poll_timeout`](Self::poll_timeout).
///
/// Nothing reconnects on its own: after a connection loss the session is
/// Suspended until the application connects again and calls `resume`.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    phase: Phase,
    connected: bool,
    timers: TimerTable<Timer, 5>,
    credentials: Option<Credentials>,
    grant: Option<Grant>,
    /// The highest event sequence number delivered.
    last_event_seq: u64,
    /// The highest event sequence number the application acknowledged.
    acked_seq: u64,
    /// The highest acknowledgement sent to the server.
    sent_ack: u64,
    /// Since when the oldest event that no acknowledgement sent covers has
    /// been here (kept, to err early, when one covered only part of them).
    unsent_since: Option<Instant>,
    /// Payload bytes of the events received since an acknowledgement last
    /// covered everything received (an over-estimate otherwise).
    unsent_bytes: u64,
    next_request_id: u64,
    pending: BTreeMap<u64, Pending>,
    out: Outbox,
    /// Why the core asked for the connection to close, for `Disconnected`.
    closing: Option<DisconnectReason>,
    events: VecDeque<ClientEvent>,
    close_reason: Option<CloseReason>,
    error: Option<ProtocolError>,
}

impl ClientSession {
    /// A client with no connection and no session.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            phase: Phase::Idle,
            connected: false,
            timers: TimerTable::new(),
            credentials: None,
            grant: None,
            last_event_seq: 0,
            acked_seq: 0,
            sent_ack: 0,
            unsent_since: None,
            unsent_bytes: 0,
            next_request_id: 1,
            pending: BTreeMap::new(),
            out: Outbox::default(),
            closing: None,
            events: VecDeque::new(),
            close_reason: None,
            error: None,
        }
    }

    // ---- getters ----

    /// The state, network and session layers together.
    pub fn state(&self) -> ClientState {
        match self.phase {
            Phase::Idle if self.connected => ClientState::Connected,
            Phase::Idle => ClientState::Disconnected,
            Phase::LoggingIn => ClientState::LoggingIn,
            Phase::Online => ClientState::Online,
            Phase::Suspended => ClientState::Suspended,
            Phase::Resuming => ClientState::Resuming,
            Phase::Closed => ClientState::Closed,
        }
    }

    /// Whether a transport is attached.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The session's id, once logged in.
    pub fn session_id(&self) -> Option<SessionId> {
        self.grant.as_ref().map(|g| g.session_id)
    }

    /// The highest event sequence number delivered.
    pub fn last_event_seq(&self) -> u64 {
        self.last_event_seq
    }

    /// Why the last session ended, if it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.as_ref()
    }

    /// The largest frame the server may send.
    pub fn max_frame_len(&self) -> usize {
        self.config.max_frame_len
    }

    /// How many requests await a response.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    // ---- input ----

    /// A transport is up.
    pub fn handle_connected(&mut self, _now: Instant) {
        if self.connected {
            return;
        }
        self.connected = true;
        self.closing = None;
        self.events.push_back(ClientEvent::Connected);
    }

    /// The transport is gone. An online session becomes Suspended; a login
    /// in progress fails.
    pub fn handle_disconnect(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        self.connected = false;
        self.out = Outbox::default();
        let reason = self.closing.take().unwrap_or(DisconnectReason::Lost);
        self.events.push_back(ClientEvent::Disconnected(reason));
        match self.phase {
            Phase::LoggingIn => {
                self.timers.stop_all();
                self.phase = Phase::Idle;
                self.events
                    .push_back(ClientEvent::LoginFailed(LoginFailure::ConnectionLost));
            }
            Phase::Online => self.suspend(now),
            Phase::Resuming => self.resume_failed(LoginFailure::ConnectionLost),
            Phase::Idle | Phase::Suspended | Phase::Closed => {}
        }
    }

    /// Handles one frame from the server, received at `now`.
    pub fn handle_frame(&mut self, now: Instant, frame: Bytes) -> Result<(), ProtocolError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if !self.connected || self.closing.is_some() {
            // Frames after we decided to close are not processed.
            return Ok(());
        }
        if frame.len() > self.config.max_frame_len {
            return self.fail(
                now,
                ProtocolError::FrameTooLarge {
                    len: frame.len() as u64,
                    max: self.config.max_frame_len,
                },
            );
        }
        let kind = match v1::ServerFrame::decode(frame) {
            Ok(v1::ServerFrame { kind: Some(kind) }) => kind,
            Ok(v1::ServerFrame { kind: None }) => {
                return self.fail(now, ProtocolError::UnknownFrameKind);
            }
            Err(e) => return self.fail(now, ProtocolError::Malformed(e)),
        };
        if self.phase == Phase::Online {
            self.heard(now);
        }
        match (self.phase, kind) {
            (Phase::LoggingIn | Phase::Resuming, server_frame::Kind::LoginOk(ok)) => {
                self.on_login_ok(now, ok)
            }
            (Phase::LoggingIn, server_frame::Kind::LoginRejected(rejected)) => {
                self.timers.stop_all();
                self.phase = Phase::Idle;
                self.credentials = None;
                self.events
                    .push_back(ClientEvent::LoginFailed(LoginFailure::Rejected {
                        code: RejectCode::from_wire(rejected.code),
                        message: rejected.message,
                    }));
                self.close_connection(DisconnectReason::Closed);
                Ok(())
            }
            (Phase::Resuming, server_frame::Kind::LoginRejected(rejected)) => {
                let code = RejectCode::from_wire(rejected.code);
                let message = rejected.message;
                if code.may_retry() {
                    // Refused for now (rate limited, busy, failed), not
                    // because the session is gone: the server may still
                    // hold it, so it stays suspended until a retry or our
                    // own expiry.
                    self.resume_failed(LoginFailure::Rejected { code, message });
                } else {
                    self.end(CloseReason::ResumeRejected { code, message });
                }
                self.close_connection(DisconnectReason::Closed);
                Ok(())
            }
            (_, server_frame::Kind::CloseSignal(signal)) => {
                let reason = CloseReason::Server {
                    code: CloseCode::from_wire(signal.code),
                    message: signal.reason,
                    retry_after: signal
                        .retry_after_ms
                        .map(|ms| Duration::from_millis(u64::from(ms))),
                };
                if self.phase == Phase::LoggingIn {
                    self.timers.stop_all();
                    self.phase = Phase::Idle;
                    self.events
                        .push_back(ClientEvent::LoginFailed(LoginFailure::Closed(reason)));
                } else if self.phase == Phase::Resuming {
                    // Before the server answered the resume, a close signal
                    // is about this connection (refused at the door, login
                    // timeout, shutdown), not the session: a refused resume
                    // is a `LoginRejected`. The session stays suspended.
                    self.resume_failed(LoginFailure::Closed(reason));
                } else if self.phase != Phase::Idle {
                    self.end(reason);
                }
                // No reply to a close signal: just close.
                self.close_connection(DisconnectReason::Closed);
                Ok(())
            }
            (Phase::Online, server_frame::Kind::HeartbeatAck(_)) => Ok(()),
            (Phase::Online, server_frame::Kind::Event(event)) => self.on_event(now, event),
            (Phase::Online, server_frame::Kind::Response(response)) => {
                self.on_response(response);
                Ok(())
            }
            (phase, kind) => self.fail(
                now,
                ProtocolError::UnexpectedFrame {
                    frame: server_frame_name(&kind),
                    state: phase_name(phase),
                },
            ),
        }
    }

    /// Reports bad input the transport found before a frame could be handed
    /// over (an oversized length prefix, say): handled as if `handle_frame`
    /// had found it.
    pub fn handle_protocol_error(&mut self, now: Instant, error: ProtocolError) {
        if self.error.is_none() && self.connected && self.closing.is_none() {
            let _ = self.fail(now, error);
        }
    }

    /// Handles the passing of deadlines: call when `poll_timeout` is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.take_expired(now) {
            match (timer, self.phase) {
                (Timer::Login, Phase::LoggingIn) => {
                    self.timers.stop_all();
                    self.phase = Phase::Idle;
                    self.events
                        .push_back(ClientEvent::LoginFailed(LoginFailure::TimedOut));
                    self.close_connection(DisconnectReason::Closed);
                }
                (Timer::Login, Phase::Resuming) => {
                    self.resume_failed(LoginFailure::TimedOut);
                    self.close_connection(DisconnectReason::Closed);
                }
                (Timer::Heartbeat, Phase::Online) => {
                    self.out.heartbeat = true;
                    if let Some(grant) = &self.grant {
                        self.timers.set(Timer::Heartbeat, now + grant.heartbeat);
                    }
                }
                (Timer::Silence, Phase::Online) => {
                    self.suspend(now);
                    self.close_connection(DisconnectReason::ServerSilent);
                }
                (Timer::Ack, Phase::Online) => {
                    self.out.ack |= self.acked_seq > self.sent_ack;
                }
                (Timer::Expiry, Phase::Suspended | Phase::Resuming) => {
                    if self.phase == Phase::Resuming {
                        self.close_connection(DisconnectReason::Closed);
                    }
                    self.end(CloseReason::Expired);
                }
                _ => {}
            }
        }
        // Requests past their deadline, oldest first (ids and deadlines grow together).
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let id = *entry.key();
            entry.remove();
            self.out.requests.retain(|&queued| queued != id);
            self.events.push_back(ClientEvent::Response {
                id,
                result: Err(RequestFailure::TimedOut),
            });
        }
    }

    // ---- commands ----

    /// Starts a login over the current connection.
    pub fn login(&mut self, now: Instant, credentials: Credentials) -> Result<(), LoginError> {
        if !self.connected {
            return Err(LoginError::NotConnected);
        }
        if !matches!(self.phase, Phase::Idle | Phase::Closed) || self.closing.is_some() {
            return Err(LoginError::SessionInProgress);
        }
        // A fresh session: forget the last one.
        self.grant = None;
        self.last_event_seq = 0;
        self.acked_seq = 0;
        self.sent_ack = 0;
        self.unsent_since = None;
        self.unsent_bytes = 0;
        self.next_request_id = 1;
        self.pending.clear();
        self.close_reason = None;
        self.error = None;
        self.out.login = Some(self.login_frame(&credentials, None));
        self.credentials = Some(credentials);
        self.phase = Phase::LoggingIn;
        self.timers.stop_all();
        self.timers
            .set(Timer::Login, deadline_after(now, self.config.login_timeout));
        Ok(())
    }

    /// Resumes the suspended session over the current connection. Pending
    /// requests are re-sent once the server accepts; missed events follow.
    pub fn resume(&mut self, now: Instant) -> Result<(), ResumeError> {
        if !self.connected {
            return Err(ResumeError::NotConnected);
        }
        if self.phase != Phase::Suspended || self.closing.is_some() {
            return Err(ResumeError::NotSuspended);
        }
        let (Some(grant), Some(credentials)) = (&self.grant, &self.credentials) else {
            return Err(ResumeError::NotSuspended);
        };
        let resume = v1::Resume {
            session_id: grant.session_id.0,
            resume_token: grant.resume_token.clone(),
            last_event_seq: self.last_event_seq,
        };
        self.out.login = Some(self.login_frame(credentials, Some(resume)));
        self.phase = Phase::Resuming;
        self.timers
            .set(Timer::Login, deadline_after(now, self.config.login_timeout));
        Ok(())
    }

    /// Logs out: sends `Logout`, then asks for the connection to close. The
    /// session ends at once with `LoggedOut`. While suspended there is no
    /// connection to tell the server; the session just ends here.
    pub fn logout(&mut self, _now: Instant, reason: &str) -> Result<(), LogoutError> {
        match self.phase {
            Phase::Online => {
                self.out.logout = Some(reason.to_owned());
                self.end(CloseReason::LoggedOut);
                self.close_connection(DisconnectReason::Closed);
            }
            Phase::Suspended | Phase::Resuming => {
                if self.phase == Phase::Resuming {
                    self.close_connection(DisconnectReason::Closed);
                }
                self.end(CloseReason::LoggedOut);
            }
            Phase::Idle | Phase::LoggingIn | Phase::Closed => {
                return Err(LogoutError::NotLoggedIn);
            }
        }
        Ok(())
    }

    /// Sends a request; returns its id, which the `Response` event carries.
    /// While suspended the request waits and is sent after a resume.
    pub fn request(&mut self, now: Instant, body: Bytes) -> Result<u64, RequestError> {
        match self.phase {
            Phase::Online | Phase::Suspended | Phase::Resuming => {}
            Phase::Closed => {
                let reason = self.close_reason.clone().unwrap_or(CloseReason::LoggedOut);
                return Err(RequestError::SessionClosed(reason));
            }
            Phase::Idle | Phase::LoggingIn => return Err(RequestError::NotLoggedIn),
        }
        let window = self.grant.as_ref().map_or(u32::MAX, |g| g.window);
        let id = self.next_request_id;
        if id - self.response_floor() > u64::from(window) {
            return Err(RequestError::TooManyPending { window });
        }
        self.next_request_id += 1;
        let deadline = deadline_after(now, self.config.request_timeout);
        self.pending.insert(id, Pending { body, deadline });
        if self.phase == Phase::Online {
            self.out.requests.push_back(id);
        }
        Ok(id)
    }

    /// Acknowledges every event up to `seq`, so the server may forget them.
    ///
    /// Acknowledgements are cumulative and coalesced: one goes out at most
    /// [`ack_delay`](ClientConfig::ack_delay) after the oldest event it
    /// covers arrived, or with the next heartbeat if that is sooner, or at
    /// once when half the server's window of unacknowledged events or bytes
    /// is in use (or the server announced no window).
    pub fn ack(&mut self, seq: u64) -> Result<(), AckError> {
        if seq > self.last_event_seq {
            return Err(AckError::NotReceived {
                seq,
                last: self.last_event_seq,
            });
        }
        if seq > self.acked_seq {
            self.acked_seq = seq;
            if self.phase == Phase::Online {
                self.schedule_ack();
            }
        }
        Ok(())
    }

    // ---- output ----

    /// Appends the next frame to `buf` (in `framing`) and returns
    /// `Some(Transmit::Frame)`; returns `Some(Transmit::CloseConnection)` once
    /// when the session wants the connection closed; `None` when idle.
    pub fn poll_transmit(&mut self, buf: &mut BytesMut, framing: Framing) -> Option<Transmit> {
        if !self.connected {
            return None;
        }
        let kind = if let Some(login) = self.out.login.take() {
            client_frame::Kind::Login(login)
        } else if std::mem::take(&mut self.out.heartbeat) {
            self.ack_sent();
            client_frame::Kind::Heartbeat(v1::Heartbeat {
                ack_event_seq: self.acked_seq,
                ack_request_id: self.response_floor(),
            })
        } else if let Some(request) = self.next_request() {
            client_frame::Kind::Request(request)
        } else if self.out.ack {
            self.ack_sent();
            client_frame::Kind::Ack(v1::Ack {
                event_seq: self.acked_seq,
                ack_request_id: self.response_floor(),
            })
        } else if let Some(reason) = self.out.logout.take() {
            client_frame::Kind::Logout(v1::Logout { reason })
        } else if std::mem::take(&mut self.out.close_connection) {
            return Some(Transmit::CloseConnection);
        } else {
            return None;
        };
        encode_frame(&v1::ClientFrame { kind: Some(kind) }, framing, buf);
        Some(Transmit::Frame)
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let request = self.pending.first_key_value().map(|(_, p)| p.deadline);
        match (self.timers.next_timeout(), request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals ----

    fn login_frame(&self, credentials: &Credentials, resume: Option<v1::Resume>) -> v1::Login {
        v1::Login {
            protocol_version: session_proto::PROTOCOL_VERSION,
            user_id: credentials.user_id.clone(),
            credential: credentials.credential.clone(),
            device: credentials.device.clone(),
            requested_heartbeat_ms: self
                .config
                .requested_heartbeat
                .map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
            resume,
            properties: credentials.properties.clone(),
        }
    }

    /// The next queued request still pending. Those answered since they were
    /// queued are skipped in a loop (after a resume every pending request is
    /// queued, and the server may answer them all before the next drain), so
    /// no recursion.
    fn next_request(&mut self) -> Option<v1::Request> {
        while let Some(id) = self.out.requests.pop_front() {
            if let Some(pending) = self.pending.get(&id) {
                return Some(v1::Request {
                    request_id: id,
                    body: pending.body.clone(),
                    ack_request_id: self.response_floor(),
                });
            }
        }
        None
    }

    /// Sends the acknowledgement of `acked_seq` now, or arms the timer for
    /// it (see [`ack`](Self::ack)).
    fn schedule_ack(&mut self) {
        let delay = self.config.ack_delay;
        let window = self.grant.as_ref().and_then(|g| g.unacked);
        let since = self.unsent_since.filter(|_| !delay.is_zero());
        let (Some((events, bytes)), Some(since)) = (window, since) else {
            self.out.ack = true;
            return;
        };
        let half_full = self.last_event_seq - self.sent_ack >= u64::from(events / 2).max(1)
            || self.unsent_bytes >= u64::from(bytes / 2).max(1);
        if half_full {
            self.out.ack = true;
        } else if self.timers.get(Timer::Ack).is_none() {
            self.timers.set(Timer::Ack, since + delay);
        }
    }

    /// A frame carrying `acked_seq` is going out.
    fn ack_sent(&mut self) {
        self.out.ack = false;
        self.sent_ack = self.acked_seq;
        self.timers.stop(Timer::Ack);
        if self.acked_seq == self.last_event_seq {
            self.unsent_since = None;
            self.unsent_bytes = 0;
        }
    }

    /// Every request up to this id has its response (or was given up on).
    fn response_floor(&self) -> u64 {
        self.pending
            .first_key_value()
            .map_or(self.next_request_id - 1, |(&id, _)| id - 1)
    }

    fn heard(&mut self, now: Instant) {
        if let Some(grant) = &self.grant {
            let silence = grant.heartbeat * self.config.silence_heartbeats.max(1);
            self.timers
                .set(Timer::Silence, deadline_after(now, silence));
        }
    }

    fn on_login_ok(&mut self, now: Instant, ok: v1::LoginOk) -> Result<(), ProtocolError> {
        let session_id = SessionId(ok.session_id);
        let resumed = self.phase == Phase::Resuming;
        if resumed && self.grant.as_ref().map(|g| g.session_id) != Some(session_id) {
            return self.fail(now, ProtocolError::SessionMismatch);
        }
        // Guard against a zero interval from a broken server: it would spin.
        let heartbeat = Duration::from_millis(u64::from(ok.heartbeat_ms.max(100)));
        let grant = Grant {
            session_id,
            resume_token: ok.resume_token,
            heartbeat,
            timeout: Duration::from_millis(u64::from(ok.session_timeout_ms)).max(heartbeat),
            window: ok.max_pending_requests.max(1),
            unacked: (ok.max_unacked_events > 0 && ok.max_unacked_bytes > 0)
                .then_some((ok.max_unacked_events, ok.max_unacked_bytes)),
        };
        self.phase = Phase::Online;
        self.timers.stop_all();
        self.timers.set(Timer::Heartbeat, now + grant.heartbeat);
        self.grant = Some(grant);
        self.heard(now);
        if resumed {
            // Re-send every request still waiting, in order: the server
            // answers those it executed from its cache.
            self.out.requests = self.pending.keys().copied().collect();
            self.out.ack = self.acked_seq > 0;
        }
        self.events.push_back(ClientEvent::Online(OnlineInfo {
            session_id,
            heartbeat,
            session_timeout: self.grant.as_ref().map_or(heartbeat, |g| g.timeout),
            resumed,
            server_time_ms: ok.server_time_ms,
        }));
        Ok(())
    }

    fn on_event(&mut self, now: Instant, event: v1::Event) -> Result<(), ProtocolError> {
        let expected = self.last_event_seq + 1;
        if event.seq < expected {
            // A replay of something already delivered: drop it.
            return Ok(());
        }
        if event.seq > expected {
            return self.fail(
                now,
                ProtocolError::EventGap {
                    expected,
                    got: event.seq,
                },
            );
        }
        self.last_event_seq = event.seq;
        self.unsent_since.get_or_insert(now);
        self.unsent_bytes += event.body.len() as u64;
        self.events.push_back(ClientEvent::Message {
            seq: event.seq,
            body: event.body,
        });
        Ok(())
    }

    fn on_response(&mut self, response: v1::Response) {
        // Unknown ids are responses to requests given up on: ignore them.
        if self.pending.remove(&response.request_id).is_none() {
            return;
        }
        let result = match response.result {
            Some(v1::response::Result::Body(body)) => Ok(body),
            Some(v1::response::Result::Error(e)) => Err(RequestFailure::Server(ResponseError {
                code: ErrorCode::from_wire(e.code),
                message: e.message,
            })),
            None => Ok(Bytes::new()),
        };
        self.events.push_back(ClientEvent::Response {
            id: response.request_id,
            result,
        });
    }

    /// A resume failed without ending the session: it is Suspended again,
    /// its expiry still running, and the attempt is reported as failed.
    fn resume_failed(&mut self, failure: LoginFailure) {
        self.timers.stop(Timer::Login);
        self.phase = Phase::Suspended;
        self.events.push_back(ClientEvent::LoginFailed(failure));
    }

    fn suspend(&mut self, now: Instant) {
        self.phase = Phase::Suspended;
        self.out.heartbeat = false;
        self.out.ack = false;
        self.out.requests.clear();
        // The server expires the session `timeout` after it last heard from
        // us; our last heartbeat went out one interval before the next one
        // was due. Giving up then is safe: resuming later would be refused.
        let deadline = match (&self.grant, self.timers.get(Timer::Heartbeat)) {
            (Some(grant), Some(next)) => (next + grant.timeout)
                .checked_sub(grant.heartbeat)
                .unwrap_or(now)
                .max(now),
            (Some(grant), None) => now + grant.timeout,
            (None, _) => now,
        };
        self.timers.stop_all();
        self.timers.set(Timer::Expiry, deadline);
    }

    /// The session is over: report `Offline` once, fail pending requests.
    fn end(&mut self, reason: CloseReason) {
        if matches!(self.phase, Phase::Closed | Phase::Idle) {
            return;
        }
        self.phase = Phase::Closed;
        self.timers.stop_all();
        self.out.heartbeat = false;
        self.out.ack = false;
        self.out.requests.clear();
        self.events.push_back(ClientEvent::Offline(reason.clone()));
        for (id, _) in std::mem::take(&mut self.pending) {
            self.events.push_back(ClientEvent::Response {
                id,
                result: Err(RequestFailure::SessionClosed(reason.clone())),
            });
        }
        self.close_reason = Some(reason);
    }

    fn close_connection(&mut self, reason: DisconnectReason) {
        if self.connected {
            self.out.close_connection = true;
            self.closing.get_or_insert(reason);
        }
    }

    fn fail(&mut self, _now: Instant, error: ProtocolError) -> Result<(), ProtocolError> {
        self.error = Some(error.clone());
        let reason = CloseReason::ProtocolViolation(error.clone());
        match self.phase {
            Phase::LoggingIn => {
                self.timers.stop_all();
                self.phase = Phase::Idle;
                self.events
                    .push_back(ClientEvent::LoginFailed(LoginFailure::Closed(reason)));
            }
            Phase::Online => {
                // Tell the server we are leaving so it does not keep the
                // session for a resume that will never come.
                self.out.logout = Some(format!("protocol error: {error}"));
                self.end(reason);
            }
            _ => self.end(reason),
        }
        self.close_connection(DisconnectReason::Closed);
        Err(error)
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Idle => "not logged in",
        Phase::LoggingIn => "logging in",
        Phase::Online => "online",
        Phase::Suspended => "suspended",
        Phase::Resuming => "resuming",
        Phase::Closed => "closed",
    }
}

fn server_frame_name(kind: &server_frame::Kind) -> &'static str {
    match kind {
        server_frame::Kind::LoginOk(_) => "login ok",
        server_frame::Kind::LoginRejected(_) => "login rejected",
        server_frame::Kind::HeartbeatAck(_) => "heartbeat ack",
        server_frame::Kind::Response(_) => "response",
        server_frame::Kind::Event(_) => "event",
        server_frame::Kind::CloseSignal(_) => "close signal",
    }
}
