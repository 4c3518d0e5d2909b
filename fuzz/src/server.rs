//! The `server_session` target: one `ServerSession` driven by a sequence of
//! operations (frames from the client, raw or through the frame decoder,
//! time steps, the application's commands, disconnects, resumes with real or
//! forged tokens), with its outputs drained after every operation as the
//! drive loop requires.
//!
//! Invariants (`assert!`), checked while draining:
//! - no panic, and `poll_transmit` runs dry;
//! - every frame decodes as a `ServerFrame` (in the framing it was written in);
//! - Atomix ordering: `Opened` at most once and before any other lifecycle
//!   event or request; `Expired` immediately followed by `Closed` with
//!   `EXPIRED`; nothing at all after `Closed`; at most one `LoginRequested`;
//! - after `Transmit::CloseConnection` or `handle_disconnect`, no frame until a
//!   successful `resume`; nothing but the close order after a close signal or
//!   a rejection;
//! - on each connection: `LoginOk` first (resumed exactly after a `resume`),
//!   then events in order without gaps, from 1 or from the resume point (the
//!   later of the claimed seq and the highest ack the session accepted), each
//!   with the body published under its number; responses only as answered,
//!   each at most once per connection;
//! - request ids reported to the application strictly increase (each request
//!   executes once); a response to a request never reported is the core's
//!   own `UNAVAILABLE`, given only while the window's worth of reported
//!   requests were still unanswered, and the same every time it goes out;
//! - `resume` succeeds exactly when the session is Open or Detached, the id
//!   is the session's, the seq was published, and the token is the current
//!   one or the one presented at the last resume (until a frame from the
//!   client shows it got the new one): no forged or stale token works, and no
//!   valid claim is refused;
//! - `state()` never leaves `Closed`; a closed session has no deadline;
//!   `handle_timeout(now)` leaves no deadline at or before `now`;
//! - a `handle_frame` error is sticky and leaves the session closed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use session_core::proto::prost::Message;
use session_core::proto::v1::{self, client_frame, server_frame};
use session_core::{
    AcceptError, CloseCode, ErrorCode, FrameDecoder, LoginRequest, PublishError, RESUME_TOKEN_LEN,
    RejectCode, ResponseError, ResumeRequest, ServerConfig, ServerEvent, ServerSession,
    ServerState, SessionId, SplitMix64, Transmit, WallClock,
};

use crate::wire::{Blob, Encode, MAX_BURST, Pick, Step, Text, TransportError, variant};

/// The session's configuration, small enough that every limit is reachable.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct ServerSetup {
    /// Seed of the session's entropy (ids and tokens).
    pub seed: u64,
    /// Default heartbeat interval, ms.
    pub heartbeat_ms: u16,
    /// Bounds of the negotiated interval, ms (sorted before use).
    pub heartbeat_bounds_ms: (u16, u16),
    /// Session timeout in heartbeats.
    pub timeout_heartbeats: u8,
    /// Login deadline, ms.
    pub login_timeout_ms: u16,
    /// Frame limit before login.
    pub pre_login_max_frame_len: u16,
    /// Frame limit after login.
    pub max_frame_len: u16,
    /// Unacknowledged events allowed.
    pub max_unacked_events: u8,
    /// Unacknowledged payload bytes allowed.
    pub max_unacked_bytes: u16,
    /// Request window.
    pub max_pending_requests: u8,
    /// Frame-rate limit per second (0: none).
    pub max_frames_per_second: u8,
    /// Unix ms of the wall clock at the start, if the driver set one.
    pub wall_clock_ms: Option<u64>,
    /// Whether the driver calls `handle_disconnect` right after
    /// `Transmit::CloseConnection`, as the drive loop says; if not, only
    /// [`ServerOp::Disconnect`] does.
    pub follow_close: bool,
}

impl ServerSetup {
    // The struct update is a no-op today; it keeps the fuzz build working
    // when a setting is added, until that setting is fuzzed here too.
    #[allow(clippy::needless_update)]
    fn config(&self, start: Instant) -> ServerConfig {
        let (a, b) = self.heartbeat_bounds_ms;
        let ms = |ms: u16| Duration::from_millis(u64::from(ms));
        ServerConfig {
            heartbeat: ms(self.heartbeat_ms),
            min_heartbeat: ms(a.min(b)),
            max_heartbeat: ms(a.max(b)),
            timeout_heartbeats: u32::from(self.timeout_heartbeats % 6),
            login_timeout: ms(self.login_timeout_ms),
            pre_login_max_frame_len: usize::from(self.pre_login_max_frame_len),
            max_frame_len: usize::from(self.max_frame_len),
            max_unacked_events: u32::from(self.max_unacked_events),
            max_unacked_bytes: u32::from(self.max_unacked_bytes),
            max_pending_requests: u32::from(self.max_pending_requests),
            max_frames_per_second: u32::from(self.max_frames_per_second),
            wall_clock: self
                .wall_clock_ms
                .map(|unix_ms| WallClock { at: start, unix_ms }),
            ..ServerConfig::default()
        }
    }
}

impl Encode for ServerSetup {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        self.seed.write_arbitrary(out);
        self.heartbeat_ms.write_arbitrary(out);
        self.heartbeat_bounds_ms.write_arbitrary(out);
        self.timeout_heartbeats.write_arbitrary(out);
        self.login_timeout_ms.write_arbitrary(out);
        self.pre_login_max_frame_len.write_arbitrary(out);
        self.max_frame_len.write_arbitrary(out);
        self.max_unacked_events.write_arbitrary(out);
        self.max_unacked_bytes.write_arbitrary(out);
        self.max_pending_requests.write_arbitrary(out);
        self.max_frames_per_second.write_arbitrary(out);
        self.wall_clock_ms.write_arbitrary(out);
        self.follow_close.write_arbitrary(out);
    }
}

/// Which resume token to present.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum TokenPick {
    /// The token of the last `LoginOk` sent.
    Current,
    /// The token before that (already replaced).
    Previous,
    /// Any bytes.
    Raw(Blob),
}

impl Encode for TokenPick {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        match self {
            Self::Current => variant(out, 0, 3),
            Self::Previous => variant(out, 1, 3),
            Self::Raw(blob) => {
                variant(out, 2, 3);
                blob.write_arbitrary(out);
            }
        }
    }
}

/// A claim to the session, as a `Login` with `Resume` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct ResumeSpec {
    /// The session id; `None` for the real one.
    pub session_id: Option<u64>,
    /// The token.
    pub token: TokenPick,
    /// The last event seq received, near the last one sent on the wire.
    pub last_event_seq: Pick,
}

impl Encode for ResumeSpec {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        self.session_id.write_arbitrary(out);
        self.token.write_arbitrary(out);
        self.last_event_seq.write_arbitrary(out);
    }
}

/// A `Login` frame built from parts.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct LoginSpec {
    /// The protocol version; `None` for the right one.
    pub version: Option<u32>,
    /// User id.
    pub user_id: Text,
    /// Credential.
    pub credential: Blob,
    /// Device.
    pub device: Text,
    /// Requested heartbeat, ms.
    pub requested_heartbeat_ms: u32,
    /// A resume claim.
    pub resume: Option<ResumeSpec>,
    /// One property.
    pub property: Option<(Text, Text)>,
}

impl Encode for LoginSpec {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        self.version.write_arbitrary(out);
        self.user_id.write_arbitrary(out);
        self.credential.write_arbitrary(out);
        self.device.write_arbitrary(out);
        self.requested_heartbeat_ms.write_arbitrary(out);
        self.resume.write_arbitrary(out);
        self.property.write_arbitrary(out);
    }
}

/// A structurally valid `ClientFrame`, with numbers picked near the ones the
/// session would accept.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum ClientFrameSpec {
    /// `Login`.
    Login(LoginSpec),
    /// `Heartbeat`: acks near the last event and response seen on the wire.
    Heartbeat {
        /// Event ack.
        ack_event_seq: Pick,
        /// Response ack.
        ack_request_id: Pick,
    },
    /// `Request`: the id near the last one sent.
    Request {
        /// Id.
        request_id: Pick,
        /// Body.
        body: Blob,
        /// Response ack.
        ack_request_id: Pick,
    },
    /// `Ack`.
    Ack {
        /// Event ack.
        event_seq: Pick,
        /// Response ack.
        ack_request_id: Pick,
    },
    /// `Logout`.
    Logout(Text),
    /// A frame with no kind.
    Empty,
}

impl Encode for ClientFrameSpec {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        const N: u32 = 6;
        match self {
            Self::Login(login) => {
                variant(out, 0, N);
                login.write_arbitrary(out);
            }
            Self::Heartbeat {
                ack_event_seq,
                ack_request_id,
            } => {
                variant(out, 1, N);
                ack_event_seq.write_arbitrary(out);
                ack_request_id.write_arbitrary(out);
            }
            Self::Request {
                request_id,
                body,
                ack_request_id,
            } => {
                variant(out, 2, N);
                request_id.write_arbitrary(out);
                body.write_arbitrary(out);
                ack_request_id.write_arbitrary(out);
            }
            Self::Ack {
                event_seq,
                ack_request_id,
            } => {
                variant(out, 3, N);
                event_seq.write_arbitrary(out);
                ack_request_id.write_arbitrary(out);
            }
            Self::Logout(reason) => {
                variant(out, 4, N);
                reason.write_arbitrary(out);
            }
            Self::Empty => variant(out, 5, N),
        }
    }
}

/// One thing that happens to the session.
// Operations are decoded and run one at a time: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum ServerOp {
    /// A structured frame from the client.
    Frame(ClientFrameSpec),
    /// Any bytes, as one frame.
    Raw(Blob),
    /// Bytes from the stream, through a `FrameDecoder` with the session's limit.
    Stream(Blob),
    /// Time passes.
    Time(Step),
    /// `accept_login`, with this heartbeat or (`None`) the one requested.
    Accept(Option<u32>),
    /// `reject_login`.
    Reject {
        /// Wire code.
        code: i32,
        /// Message.
        message: Text,
    },
    /// `publish`.
    Publish(Blob),
    /// `respond`, to an id near the last request reported.
    Respond {
        /// Id.
        id: Pick,
        /// An error (code, message) instead of `body`.
        error: Option<(i32, Text)>,
        /// Body.
        body: Blob,
    },
    /// `close`.
    Close {
        /// Wire code.
        code: i32,
        /// Reason.
        reason: Text,
        /// Retry-after hint, ms.
        retry_after_ms: Option<u32>,
    },
    /// `handle_disconnect`.
    Disconnect,
    /// `resume` over a new connection.
    Resume(ResumeSpec),
    /// `handle_protocol_error`.
    ProtocolError(TransportError),
    /// `frame` this many times, then `then`, with no draining in between: a
    /// driver that reads a large buffer and handles every frame in it first.
    Burst {
        /// How many times (modulo [`MAX_BURST`] + 1).
        times: u16,
        /// The repeated frame (a new request id each time for `Near(1)`).
        frame: ClientFrameSpec,
        /// A last frame.
        then: Option<ClientFrameSpec>,
    },
}

impl Encode for ServerOp {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        const N: u32 = 13;
        match self {
            Self::Frame(frame) => {
                variant(out, 0, N);
                frame.write_arbitrary(out);
            }
            Self::Raw(blob) => {
                variant(out, 1, N);
                blob.write_arbitrary(out);
            }
            Self::Stream(blob) => {
                variant(out, 2, N);
                blob.write_arbitrary(out);
            }
            Self::Time(step) => {
                variant(out, 3, N);
                step.write_arbitrary(out);
            }
            Self::Accept(heartbeat) => {
                variant(out, 4, N);
                heartbeat.write_arbitrary(out);
            }
            Self::Reject { code, message } => {
                variant(out, 5, N);
                code.write_arbitrary(out);
                message.write_arbitrary(out);
            }
            Self::Publish(blob) => {
                variant(out, 6, N);
                blob.write_arbitrary(out);
            }
            Self::Respond { id, error, body } => {
                variant(out, 7, N);
                id.write_arbitrary(out);
                error.write_arbitrary(out);
                body.write_arbitrary(out);
            }
            Self::Close {
                code,
                reason,
                retry_after_ms,
            } => {
                variant(out, 8, N);
                code.write_arbitrary(out);
                reason.write_arbitrary(out);
                retry_after_ms.write_arbitrary(out);
            }
            Self::Disconnect => variant(out, 9, N),
            Self::Resume(resume) => {
                variant(out, 10, N);
                resume.write_arbitrary(out);
            }
            Self::ProtocolError(error) => {
                variant(out, 11, N);
                error.write_arbitrary(out);
            }
            Self::Burst { times, frame, then } => {
                variant(out, 12, N);
                times.write_arbitrary(out);
                frame.write_arbitrary(out);
                then.write_arbitrary(out);
            }
        }
    }
}

/// Runs one `server_session` input.
pub fn run(data: &[u8]) {
    if let Some((setup, ops)) = crate::wire::parse_script::<ServerSetup, ServerOp>(data) {
        execute(&setup, &ops);
    }
}

/// Runs a script, checking every invariant.
pub fn execute(setup: &ServerSetup, ops: &[ServerOp]) {
    let mut harness = Harness::new(setup);
    for (turn, op) in ops.iter().enumerate() {
        harness.turn = turn;
        crate::trace!("#{turn} {op:?}");
        harness.apply(op);
        harness.drain();
    }
}

/// What the harness knows of the current connection.
#[derive(Debug, Default)]
struct Connection {
    /// A connection is attached: no close order and no disconnect since it came.
    attached: bool,
    /// The next event seq expected on it, once its `LoginOk` went out.
    next_event: Option<u64>,
    /// A close signal or rejection went out: only the close order may follow.
    farewell_sent: bool,
    /// The responses that went out on it, by request id.
    responses: BTreeSet<u64>,
}

struct Harness {
    config: Arc<ServerConfig>,
    session: ServerSession,
    rng: SplitMix64,
    now: Instant,
    turn: usize,
    follow_close: bool,
    inbox: BytesMut,
    out: BytesMut,
    conn: Connection,
    // What the application saw.
    login: Option<Box<LoginRequest>>,
    accepted: Option<SessionId>,
    opened: bool,
    closed_event: bool,
    expect_closed: bool,
    was_closed: bool,
    last_request_event: u64,
    /// Requests reported and not answered by the application yet.
    executing: BTreeSet<u64>,
    /// Requests the core answered itself (`UNAVAILABLE`), with that answer.
    refused: BTreeMap<u64, (i32, String)>,
    // What the client saw and sent.
    token: Option<Bytes>,
    previous_token: Option<Bytes>,
    /// The token presented at the last resume, which the session still
    /// accepts until a frame from the client shows it got the new one.
    presented: Option<Bytes>,
    pending_resume: Option<u64>,
    /// The highest event ack the session accepted (or a resume implied).
    client_acked: u64,
    wire_seq: u64,
    wire_response: u64,
    sent_request: u64,
    // What was published and answered.
    published: Vec<Bytes>,
    answered: BTreeMap<u64, Result<Bytes, ResponseError>>,
}

impl Harness {
    fn new(setup: &ServerSetup) -> Self {
        let now = Instant::now();
        let config = Arc::new(setup.config(now));
        Self {
            session: ServerSession::new(now, config.clone()),
            config,
            rng: SplitMix64::new(setup.seed),
            now,
            turn: 0,
            follow_close: setup.follow_close,
            inbox: BytesMut::new(),
            out: BytesMut::new(),
            conn: Connection {
                attached: true,
                ..Connection::default()
            },
            login: None,
            accepted: None,
            opened: false,
            closed_event: false,
            expect_closed: false,
            was_closed: false,
            last_request_event: 0,
            executing: BTreeSet::new(),
            refused: BTreeMap::new(),
            token: None,
            previous_token: None,
            presented: None,
            pending_resume: None,
            client_acked: 0,
            wire_seq: 0,
            wire_response: 0,
            sent_request: 0,
            published: Vec::new(),
            answered: BTreeMap::new(),
        }
    }

    fn apply(&mut self, op: &ServerOp) {
        let before = self.session.state();
        match op {
            ServerOp::Frame(spec) => {
                let frame = self.build_frame(spec);
                self.feed(Bytes::from(frame.encode_to_vec()));
            }
            ServerOp::Raw(Blob(bytes)) => self.feed(bytes.clone()),
            ServerOp::Burst { times, frame, then } => {
                for _ in 0..times % (MAX_BURST + 1) {
                    let frame = self.build_frame(frame);
                    self.feed(Bytes::from(frame.encode_to_vec()));
                }
                if let Some(then) = then {
                    let frame = self.build_frame(then);
                    self.feed(Bytes::from(frame.encode_to_vec()));
                }
            }
            ServerOp::Stream(Blob(bytes)) => {
                self.inbox.extend_from_slice(bytes);
                loop {
                    let mut decoder = FrameDecoder::new(self.session.max_frame_len());
                    match decoder.decode(&mut self.inbox) {
                        Ok(Some(frame)) => self.feed(frame),
                        Ok(None) => break,
                        Err(error) => {
                            self.session.handle_protocol_error(self.now, error);
                            assert_eq!(self.session.state(), ServerState::Closed);
                            self.inbox.clear();
                            break;
                        }
                    }
                }
            }
            ServerOp::Time(step) => self.time(*step),
            ServerOp::Accept(heartbeat) => {
                let requested = heartbeat
                    .or(self.login.as_ref().map(|l| l.requested_heartbeat_ms))
                    .unwrap_or(0);
                match self
                    .session
                    .accept_login(self.now, requested, &mut self.rng)
                {
                    Ok(id) => {
                        assert_eq!(
                            before,
                            ServerState::Authenticating,
                            "accepted while {before:?}"
                        );
                        assert_eq!(self.session.state(), ServerState::Open);
                        assert_eq!(self.session.session_id(), Some(id));
                        self.accepted = Some(id);
                    }
                    Err(AcceptError::NotAuthenticating) => {}
                    Err(e) => panic!("unexpected accept error {e:?}"),
                }
            }
            ServerOp::Reject { code, message } => {
                if self
                    .session
                    .reject_login(RejectCode::from_wire(*code), &message.0)
                    .is_ok()
                {
                    assert_eq!(
                        before,
                        ServerState::Authenticating,
                        "rejected while {before:?}"
                    );
                    assert_eq!(self.session.state(), ServerState::Closed);
                }
            }
            ServerOp::Publish(Blob(body)) => match self.session.publish(body.clone()) {
                Ok(seq) => {
                    assert_eq!(seq, self.published.len() as u64 + 1, "publish seq");
                    self.published.push(body.clone());
                }
                Err(PublishError::SlowConsumer) => {
                    assert_eq!(self.session.state(), ServerState::Closed);
                }
                Err(PublishError::NotOpen) => {
                    assert!(!matches!(before, ServerState::Open | ServerState::Detached));
                }
                Err(e) => panic!("unexpected publish error {e:?}"),
            },
            ServerOp::Respond { id, error, body } => {
                let id = id.resolve(self.last_request_event);
                let result = match error {
                    Some((code, message)) => Err(ResponseError {
                        code: ErrorCode::from_wire(*code),
                        message: message.0.clone(),
                    }),
                    None => Ok(body.0.clone()),
                };
                if self.session.respond(id, result.clone()).is_ok() {
                    self.executing.remove(&id);
                    // Ok for a request the client gave up on too (dropped);
                    // `on_frame` checks that only reported ones go out.
                    self.answered.entry(id).or_insert(result);
                }
            }
            ServerOp::Close {
                code,
                reason,
                retry_after_ms,
            } => {
                let retry = retry_after_ms.map(|ms| Duration::from_millis(u64::from(ms)));
                match self
                    .session
                    .close(CloseCode::from_wire(*code), &reason.0, retry)
                {
                    Ok(()) => assert_ne!(before, ServerState::Closed),
                    Err(_) => assert_eq!(before, ServerState::Closed),
                }
                assert_eq!(self.session.state(), ServerState::Closed);
            }
            ServerOp::Disconnect => {
                self.session.handle_disconnect(self.now);
                self.disconnected();
                if before == ServerState::Open {
                    assert_eq!(self.session.state(), ServerState::Detached);
                }
            }
            ServerOp::Resume(spec) => {
                let request = self.resume_request(spec);
                let id_ok = Some(request.session_id) == self.accepted;
                let token_ok = Some(&request.resume_token) == self.token.as_ref()
                    || Some(&request.resume_token) == self.presented.as_ref();
                let seq_ok = request.last_event_seq <= self.published.len() as u64;
                let resumable = matches!(before, ServerState::Open | ServerState::Detached);
                match self.session.resume(self.now, &request, &mut self.rng) {
                    Ok(()) => {
                        assert!(resumable, "resumed while {before:?}");
                        assert!(id_ok, "resumed with a wrong id");
                        assert!(
                            token_ok,
                            "resumed with a token neither current nor presented at the last resume"
                        );
                        assert!(seq_ok, "resumed claiming events never published");
                        assert_eq!(self.session.state(), ServerState::Open);
                        // A new connection.
                        self.inbox.clear();
                        self.conn = Connection {
                            attached: true,
                            ..Connection::default()
                        };
                        // Events up to the claim are acknowledged by it; the
                        // replay starts after the claim or after an earlier
                        // ack, whichever is later.
                        self.client_acked = self.client_acked.max(request.last_event_seq);
                        self.pending_resume = Some(self.client_acked);
                        self.presented = Some(request.resume_token);
                    }
                    Err(error) => assert!(
                        !(resumable && id_ok && token_ok && seq_ok),
                        "a valid resume was refused: {error:?}"
                    ),
                }
            }
            ServerOp::ProtocolError(error) => {
                let error = error.to_error(self.session.max_frame_len());
                self.session.handle_protocol_error(self.now, error);
                assert_eq!(self.session.state(), ServerState::Closed);
            }
        }
    }

    fn build_frame(&mut self, spec: &ClientFrameSpec) -> v1::ClientFrame {
        let kind = match spec {
            ClientFrameSpec::Login(login) => client_frame::Kind::Login(v1::Login {
                protocol_version: login
                    .version
                    .unwrap_or(session_core::proto::PROTOCOL_VERSION),
                user_id: login.user_id.0.clone(),
                credential: login.credential.0.clone(),
                device: login.device.0.clone(),
                requested_heartbeat_ms: login.requested_heartbeat_ms,
                resume: login.resume.as_ref().map(|spec| {
                    let request = self.resume_request(spec);
                    v1::Resume {
                        session_id: request.session_id.0,
                        resume_token: request.resume_token,
                        last_event_seq: request.last_event_seq,
                    }
                }),
                properties: login
                    .property
                    .iter()
                    .map(|(k, v)| (k.0.clone(), v.0.clone()))
                    .collect(),
            }),
            ClientFrameSpec::Heartbeat {
                ack_event_seq,
                ack_request_id,
            } => client_frame::Kind::Heartbeat(v1::Heartbeat {
                ack_event_seq: ack_event_seq.resolve(self.wire_seq),
                ack_request_id: ack_request_id.resolve(self.wire_response),
            }),
            ClientFrameSpec::Request {
                request_id,
                body,
                ack_request_id,
            } => {
                let id = request_id.resolve(self.sent_request);
                self.sent_request = self.sent_request.max(id);
                client_frame::Kind::Request(v1::Request {
                    request_id: id,
                    body: body.0.clone(),
                    ack_request_id: ack_request_id.resolve(self.wire_response),
                })
            }
            ClientFrameSpec::Ack {
                event_seq,
                ack_request_id,
            } => client_frame::Kind::Ack(v1::Ack {
                event_seq: event_seq.resolve(self.wire_seq),
                ack_request_id: ack_request_id.resolve(self.wire_response),
            }),
            ClientFrameSpec::Logout(reason) => client_frame::Kind::Logout(v1::Logout {
                reason: reason.0.clone(),
            }),
            ClientFrameSpec::Empty => return v1::ClientFrame { kind: None },
        };
        v1::ClientFrame { kind: Some(kind) }
    }

    fn resume_request(&self, spec: &ResumeSpec) -> ResumeRequest {
        let session_id = spec
            .session_id
            .map(SessionId)
            .or(self.accepted)
            .unwrap_or(SessionId(0));
        let resume_token = match &spec.token {
            TokenPick::Current => self.token.clone().unwrap_or_default(),
            TokenPick::Previous => self.previous_token.clone().unwrap_or_default(),
            TokenPick::Raw(Blob(bytes)) => bytes.clone(),
        };
        ResumeRequest {
            session_id,
            resume_token,
            last_event_seq: spec.last_event_seq.resolve(self.wire_seq),
        }
    }

    /// `handle_frame`, checking that errors are sticky and close the session,
    /// and noting the event acks it accepted.
    fn feed(&mut self, frame: Bytes) {
        let sticky = self.session.error().cloned();
        let open = self.session.state() == ServerState::Open;
        let ack = match v1::ClientFrame::decode(frame.clone()).map(|f| f.kind) {
            Ok(Some(client_frame::Kind::Heartbeat(hb))) => Some(hb.ack_event_seq),
            Ok(Some(client_frame::Kind::Ack(ack))) => Some(ack.event_seq),
            _ => None,
        };
        let result = self.session.handle_frame(self.now, frame);
        if let (true, Ok(()), Some(ack)) = (open, &result, ack) {
            self.client_acked = self.client_acked.max(ack);
        }
        if open {
            // The client got its `LoginOk`: only the new token works now.
            self.presented = None;
        }
        if let Some(error) = sticky {
            assert_eq!(result, Err(error), "the error is not sticky");
        }
        if let Err(error) = &result {
            assert_eq!(
                self.session.state(),
                ServerState::Closed,
                "failed but not closed"
            );
            assert_eq!(self.session.error(), Some(error));
        }
    }

    fn time(&mut self, step: Step) {
        crate::wire::step_time(&mut self.session, &mut self.now, step);
    }

    fn disconnected(&mut self) {
        self.conn = Connection::default();
        self.inbox.clear();
    }

    fn drain(&mut self) {
        let framing = crate::wire::framing_for(self.turn);
        let mut polls = 0usize;
        while let Some(transmit) = self.session.poll_transmit(&mut self.out, framing) {
            polls += 1;
            assert!(polls < 100_000, "poll_transmit does not run dry");
            match transmit {
                Transmit::Frame => {
                    let bytes = self.out.split().freeze();
                    let frame: v1::ServerFrame = crate::wire::decode_written(bytes, framing);
                    let kind = frame.kind.expect("a frame without a kind");
                    crate::trace!("  -> {kind:?}");
                    self.on_frame(kind);
                }
                Transmit::CloseConnection => {
                    crate::trace!("  -> close connection");
                    assert!(self.out.is_empty(), "the close order wrote bytes");
                    assert!(
                        self.conn.attached,
                        "a close order with no connection attached"
                    );
                    self.conn.attached = false;
                    if self.follow_close {
                        self.session.handle_disconnect(self.now);
                        self.disconnected();
                    }
                }
            }
        }
        while let Some(event) = self.session.poll_event() {
            crate::trace!("  event {event:?}");
            self.on_event(event);
        }
        assert!(!self.expect_closed, "Expired was not followed by Closed");
        let state = self.session.state();
        crate::trace!(
            "  state {state:?}, deadline {:?}",
            self.session.poll_timeout().map(|at| at - self.now)
        );
        if self.was_closed || self.closed_event {
            assert_eq!(state, ServerState::Closed, "left Closed");
        }
        if state == ServerState::Closed {
            self.was_closed = true;
            assert_eq!(
                self.session.poll_timeout(),
                None,
                "a closed session has a deadline"
            );
        }
        assert_eq!(
            self.session.session_id().is_some(),
            matches!(state, ServerState::Open | ServerState::Detached)
        );
        assert!(self.session.unacked_events() as u64 <= u64::from(self.config.max_unacked_events));
    }

    fn on_frame(&mut self, kind: server_frame::Kind) {
        assert!(
            self.conn.attached,
            "frame {kind:?} after the close order or a disconnect"
        );
        assert!(
            !self.conn.farewell_sent,
            "frame {kind:?} after the close signal"
        );
        match kind {
            server_frame::Kind::LoginOk(ok) => {
                assert!(
                    self.conn.next_event.is_none(),
                    "a second LoginOk on one connection"
                );
                let first = if ok.resumed {
                    self.pending_resume
                        .take()
                        .expect("a resumed LoginOk without a resume")
                } else {
                    assert!(
                        self.pending_resume.is_none(),
                        "a fresh LoginOk after a resume"
                    );
                    0
                };
                self.conn.next_event = Some(first + 1);
                assert_eq!(Some(SessionId(ok.session_id)), self.accepted);
                assert_eq!(ok.resume_token.len(), RESUME_TOKEN_LEN);
                assert_eq!(ok.next_event_seq, self.published.len() as u64 + 1);
                self.previous_token = self.token.replace(ok.resume_token);
            }
            server_frame::Kind::Event(event) => {
                let expected = self
                    .conn
                    .next_event
                    .expect("an event before LoginOk on this connection");
                assert_eq!(event.seq, expected, "events out of order or with a gap");
                let published = usize::try_from(event.seq - 1)
                    .ok()
                    .and_then(|i| self.published.get(i))
                    .expect("an event never published");
                assert_eq!(
                    &event.body, published,
                    "event {} with another body",
                    event.seq
                );
                self.conn.next_event = Some(expected + 1);
                self.wire_seq = self.wire_seq.max(event.seq);
            }
            server_frame::Kind::Response(response) => {
                assert!(self.conn.next_event.is_some(), "a response before LoginOk");
                assert!(
                    self.conn.responses.insert(response.request_id),
                    "response {} twice on one connection",
                    response.request_id
                );
                let sent = match response.result {
                    Some(v1::response::Result::Body(body)) => Ok(body),
                    Some(v1::response::Result::Error(e)) => Err((e.code, e.message)),
                    None => panic!("a response without a result"),
                };
                let Some(answered) = self.answered.get(&response.request_id) else {
                    // Not the application's: the core refused the request.
                    let id = response.request_id;
                    let Err(refusal) = sent else {
                        panic!("a response to request {id} never reported");
                    };
                    match self.refused.get(&id) {
                        Some(earlier) => assert_eq!(&refusal, earlier, "refusal {id} differs"),
                        None => {
                            let window = self.config.max_pending_requests as usize;
                            assert!(
                                self.executing.len() >= window,
                                "request {id} refused with {} of {window} executing",
                                self.executing.len()
                            );
                            assert_eq!(refusal.0, ErrorCode::Unavailable.to_wire());
                            assert!(refusal.1.ends_with("still executing"), "{}", refusal.1);
                            self.refused.insert(id, refusal);
                        }
                    }
                    self.wire_response = self.wire_response.max(id);
                    return;
                };
                let expected = answered.clone().map_err(|e| (e.code.to_wire(), e.message));
                assert_eq!(sent, expected, "response {} differs", response.request_id);
                self.wire_response = self.wire_response.max(response.request_id);
            }
            server_frame::Kind::HeartbeatAck(_) => {
                assert!(
                    self.conn.next_event.is_some(),
                    "a heartbeat ack before LoginOk"
                );
            }
            server_frame::Kind::CloseSignal(_) | server_frame::Kind::LoginRejected(_) => {
                self.conn.farewell_sent = true;
            }
        }
    }

    fn on_event(&mut self, event: ServerEvent) {
        assert!(!self.closed_event, "{event:?} after Closed");
        if std::mem::take(&mut self.expect_closed) {
            assert!(
                matches!(
                    event,
                    ServerEvent::Closed {
                        code: CloseCode::Expired,
                        ..
                    }
                ),
                "Expired followed by {event:?}"
            );
        }
        match event {
            ServerEvent::LoginRequested(login) => {
                assert!(self.login.is_none(), "a second LoginRequested");
                assert!(!self.opened, "LoginRequested after Opened");
                self.login = Some(login);
            }
            ServerEvent::Opened { session_id } => {
                assert!(!self.opened, "Opened twice");
                assert_eq!(Some(session_id), self.accepted);
                self.opened = true;
            }
            other => {
                assert!(self.opened, "{other:?} before Opened");
                match other {
                    ServerEvent::Expired => self.expect_closed = true,
                    ServerEvent::Closed { .. } => self.closed_event = true,
                    ServerEvent::Request { id, .. } => {
                        assert!(
                            id > self.last_request_event,
                            "request {id} reported again or out of order"
                        );
                        self.last_request_event = id;
                        self.executing.insert(id);
                    }
                    _ => {}
                }
            }
        }
    }
}
