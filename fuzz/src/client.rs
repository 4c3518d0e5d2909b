//! The `client_session` target: one `ClientSession` driven by a sequence of
//! operations (connects and disconnects, logins, resumes, logouts, requests,
//! acks, server frames raw, structured or through the frame decoder, time
//! steps), with its outputs drained after every operation.
//!
//! Invariants (`assert!`):
//! - no panic, and `poll_transmit` runs dry;
//! - every frame decodes as a `ClientFrame` (in the framing it was written
//!   in), and only goes out on a connection that was not told to close;
//! - `Connected` and `Disconnected` alternate;
//! - `Offline` at most once per login, and only after that login's `Online`;
//!   a resumed `Online` only after a first one; `Closed` state only after
//!   `Offline`;
//! - delivered `Message` seqs are contiguous from 1 within a session (no
//!   gaps, no duplicates), each with the body of the event frame that
//!   carried it;
//! - each request completes at most once, and none is dropped by a new login;
//!   request frames carry only ids still pending; acks never exceed what was
//!   delivered;
//! - a `Login` frame carries `Resume` exactly when resuming, with the
//!   session's id and the last seq delivered;
//! - a `handle_frame` error is sticky until the next login;
//!   `handle_timeout(now)` leaves no deadline at or before `now`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use session_core::proto::prost::Message;
use session_core::proto::v1::{self, client_frame, server_frame};
use session_core::{
    ClientConfig, ClientEvent, ClientSession, ClientState, Credentials, FrameDecoder,
    ProtocolError, Transmit,
};

use crate::wire::{Blob, Encode, MAX_BURST, Pick, Step, Text, TransportError, variant};

/// The client's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct ClientSetup {
    /// Heartbeat to ask for, ms.
    pub requested_heartbeat_ms: Option<u16>,
    /// Login deadline, ms.
    pub login_timeout_ms: u16,
    /// Request deadline, ms.
    pub request_timeout_ms: u16,
    /// Silent heartbeats before the connection counts as dead.
    pub silence_heartbeats: u8,
    /// Largest frame accepted.
    pub max_frame_len: u16,
    /// Whether the driver calls `handle_disconnect` right after
    /// `Transmit::CloseConnection`, as the drive loop says.
    pub follow_close: bool,
    /// How long an acknowledgement may wait, ms (0: at once).
    pub ack_delay_ms: u16,
}

impl ClientSetup {
    fn config(&self) -> ClientConfig {
        let ms = |ms: u16| Duration::from_millis(u64::from(ms));
        ClientConfig {
            requested_heartbeat: self.requested_heartbeat_ms.map(ms),
            login_timeout: ms(self.login_timeout_ms),
            request_timeout: ms(self.request_timeout_ms),
            silence_heartbeats: u32::from(self.silence_heartbeats),
            max_frame_len: usize::from(self.max_frame_len),
            ack_delay: ms(self.ack_delay_ms),
        }
    }
}

impl Encode for ClientSetup {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        self.requested_heartbeat_ms.write_arbitrary(out);
        self.login_timeout_ms.write_arbitrary(out);
        self.request_timeout_ms.write_arbitrary(out);
        self.silence_heartbeats.write_arbitrary(out);
        self.max_frame_len.write_arbitrary(out);
        self.follow_close.write_arbitrary(out);
        self.ack_delay_ms.write_arbitrary(out);
    }
}

/// A `Response` result.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum ResultSpec {
    /// No result field.
    Missing,
    /// A body.
    Body(Blob),
    /// An error code and message.
    Error(i32, Text),
}

impl Encode for ResultSpec {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        match self {
            Self::Missing => variant(out, 0, 3),
            Self::Body(body) => {
                variant(out, 1, 3);
                body.write_arbitrary(out);
            }
            Self::Error(code, message) => {
                variant(out, 2, 3);
                code.write_arbitrary(out);
                message.write_arbitrary(out);
            }
        }
    }
}

/// A structurally valid `ServerFrame`, with numbers picked near the ones the
/// client would accept.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum ServerFrameSpec {
    /// `LoginOk`.
    LoginOk {
        /// Session id; `None` for the client's current one (or 1).
        session_id: Option<u64>,
        /// Resume token.
        resume_token: Blob,
        /// Heartbeat, ms.
        heartbeat_ms: u32,
        /// Session timeout, ms.
        session_timeout_ms: u32,
        /// Whether it says "resumed".
        resumed: bool,
        /// Next event seq, near the last delivered.
        next_event_seq: Pick,
        /// Server time.
        server_time_ms: u64,
        /// Request window.
        max_pending_requests: u32,
        /// The server's window of unacknowledged events (0: none announced).
        max_unacked_events: u32,
        /// The same in payload bytes.
        max_unacked_bytes: u32,
    },
    /// `LoginRejected`.
    LoginRejected {
        /// Wire code.
        code: i32,
        /// Message.
        message: Text,
    },
    /// `HeartbeatAck`.
    HeartbeatAck(u64),
    /// `Response`, to an id near the oldest pending request.
    Response {
        /// Id.
        request_id: Pick,
        /// Result.
        result: ResultSpec,
    },
    /// `Event`, with a seq near the last delivered.
    Event {
        /// Seq.
        seq: Pick,
        /// Body.
        body: Blob,
    },
    /// `CloseSignal`.
    CloseSignal {
        /// Wire code.
        code: i32,
        /// Reason.
        reason: Text,
        /// Retry-after hint, ms.
        retry_after_ms: Option<u32>,
    },
    /// A frame with no kind.
    Empty,
}

impl Encode for ServerFrameSpec {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        const N: u32 = 7;
        match self {
            Self::LoginOk {
                session_id,
                resume_token,
                heartbeat_ms,
                session_timeout_ms,
                resumed,
                next_event_seq,
                server_time_ms,
                max_pending_requests,
                max_unacked_events,
                max_unacked_bytes,
            } => {
                variant(out, 0, N);
                session_id.write_arbitrary(out);
                resume_token.write_arbitrary(out);
                heartbeat_ms.write_arbitrary(out);
                session_timeout_ms.write_arbitrary(out);
                resumed.write_arbitrary(out);
                next_event_seq.write_arbitrary(out);
                server_time_ms.write_arbitrary(out);
                max_pending_requests.write_arbitrary(out);
                max_unacked_events.write_arbitrary(out);
                max_unacked_bytes.write_arbitrary(out);
            }
            Self::LoginRejected { code, message } => {
                variant(out, 1, N);
                code.write_arbitrary(out);
                message.write_arbitrary(out);
            }
            Self::HeartbeatAck(time) => {
                variant(out, 2, N);
                time.write_arbitrary(out);
            }
            Self::Response { request_id, result } => {
                variant(out, 3, N);
                request_id.write_arbitrary(out);
                result.write_arbitrary(out);
            }
            Self::Event { seq, body } => {
                variant(out, 4, N);
                seq.write_arbitrary(out);
                body.write_arbitrary(out);
            }
            Self::CloseSignal {
                code,
                reason,
                retry_after_ms,
            } => {
                variant(out, 5, N);
                code.write_arbitrary(out);
                reason.write_arbitrary(out);
                retry_after_ms.write_arbitrary(out);
            }
            Self::Empty => variant(out, 6, N),
        }
    }
}

/// One thing that happens to the client.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum ClientOp {
    /// `handle_connected`.
    Connect,
    /// `handle_disconnect`.
    Disconnect,
    /// `login` as this user with this credential and device.
    Login(Text, Blob, Text),
    /// `resume`.
    Resume,
    /// `logout`.
    Logout(Text),
    /// `request`.
    Request(Blob),
    /// `ack`, near the last delivered seq.
    Ack(Pick),
    /// A structured frame from the server.
    Frame(ServerFrameSpec),
    /// Any bytes, as one frame.
    Raw(Blob),
    /// Bytes from the stream, through a `FrameDecoder` with the client's limit.
    Stream(Blob),
    /// Time passes.
    Time(Step),
    /// `handle_protocol_error`.
    ProtocolError(TransportError),
    /// `request` this many times in a row (modulo [`MAX_BURST`] + 1).
    Requests(u16, Blob),
    /// `first`, then `frame` this many times (modulo [`MAX_BURST`] + 1), with
    /// no draining in between (a driver handling a large read buffer); the
    /// numbers `frame` picks are one higher each time: consecutive events,
    /// responses to consecutive requests.
    Burst {
        /// A first frame (a `LoginOk` before the answers, say).
        first: Option<ServerFrameSpec>,
        /// How many times.
        times: u16,
        /// The repeated frame.
        frame: ServerFrameSpec,
    },
}

impl Encode for ClientOp {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        const N: u32 = 14;
        match self {
            Self::Connect => variant(out, 0, N),
            Self::Disconnect => variant(out, 1, N),
            Self::Login(user, credential, device) => {
                variant(out, 2, N);
                user.write_arbitrary(out);
                credential.write_arbitrary(out);
                device.write_arbitrary(out);
            }
            Self::Resume => variant(out, 3, N),
            Self::Logout(reason) => {
                variant(out, 4, N);
                reason.write_arbitrary(out);
            }
            Self::Request(body) => {
                variant(out, 5, N);
                body.write_arbitrary(out);
            }
            Self::Ack(seq) => {
                variant(out, 6, N);
                seq.write_arbitrary(out);
            }
            Self::Frame(frame) => {
                variant(out, 7, N);
                frame.write_arbitrary(out);
            }
            Self::Raw(blob) => {
                variant(out, 8, N);
                blob.write_arbitrary(out);
            }
            Self::Stream(blob) => {
                variant(out, 9, N);
                blob.write_arbitrary(out);
            }
            Self::Time(step) => {
                variant(out, 10, N);
                step.write_arbitrary(out);
            }
            Self::ProtocolError(error) => {
                variant(out, 11, N);
                error.write_arbitrary(out);
            }
            Self::Requests(times, body) => {
                variant(out, 12, N);
                times.write_arbitrary(out);
                body.write_arbitrary(out);
            }
            Self::Burst {
                first,
                times,
                frame,
            } => {
                variant(out, 13, N);
                first.write_arbitrary(out);
                times.write_arbitrary(out);
                frame.write_arbitrary(out);
            }
        }
    }
}

/// Runs one `client_session` input.
pub fn run(data: &[u8]) {
    if let Some((setup, ops)) = crate::wire::parse_script::<ClientSetup, ClientOp>(data) {
        execute(&setup, &ops);
    }
}

/// Runs a script, checking every invariant.
pub fn execute(setup: &ClientSetup, ops: &[ClientOp]) {
    let mut harness = Harness::new(setup);
    for (turn, op) in ops.iter().enumerate() {
        harness.turn = turn;
        harness.event_frames.clear();
        crate::trace!("#{turn} {op:?}");
        harness.apply(op);
        harness.drain();
    }
}

struct Harness {
    client: ClientSession,
    now: Instant,
    turn: usize,
    follow_close: bool,
    inbox: BytesMut,
    out: BytesMut,
    // The network layer, as the events told it.
    connected: bool,
    /// `CloseConnection` came on this connection: no frame until the next one.
    close_ordered: bool,
    /// A `Logout` went out on this connection: only the close order may follow.
    logout_sent: bool,
    // The session layer.
    /// A login was started (and no new one since).
    in_login: bool,
    online_seen: bool,
    offline_seen: bool,
    delivered: u64,
    acked: u64,
    issued: u64,
    pending: BTreeSet<u64>,
    /// Event frames fed during this operation: (seq, body).
    event_frames: Vec<(u64, Bytes)>,
    sticky: Option<ProtocolError>,
}

impl Harness {
    fn new(setup: &ClientSetup) -> Self {
        Self {
            client: ClientSession::new(setup.config()),
            now: Instant::now(),
            turn: 0,
            follow_close: setup.follow_close,
            inbox: BytesMut::new(),
            out: BytesMut::new(),
            connected: false,
            close_ordered: false,
            logout_sent: false,
            in_login: false,
            online_seen: false,
            offline_seen: false,
            delivered: 0,
            acked: 0,
            issued: 0,
            pending: BTreeSet::new(),
            event_frames: Vec::new(),
            sticky: None,
        }
    }

    fn apply(&mut self, op: &ClientOp) {
        let before = self.client.state();
        match op {
            ClientOp::Connect => self.client.handle_connected(self.now),
            ClientOp::Disconnect => self.disconnect(),
            ClientOp::Login(user, credential, device) => {
                let credentials = Credentials {
                    user_id: user.0.clone(),
                    credential: credential.0.clone(),
                    device: device.0.clone(),
                    ..Credentials::default()
                };
                if self.client.login(self.now, credentials).is_ok() {
                    assert!(
                        self.pending.is_empty(),
                        "a new login dropped pending requests {:?}",
                        self.pending
                    );
                    self.in_login = true;
                    self.online_seen = false;
                    self.offline_seen = false;
                    self.delivered = 0;
                    self.acked = 0;
                    self.issued = 0;
                    self.sticky = None;
                }
            }
            ClientOp::Resume => {
                if self.client.resume(self.now).is_ok() {
                    assert_eq!(before, ClientState::Suspended, "resumed while {before:?}");
                    assert_eq!(self.client.state(), ClientState::Resuming);
                }
            }
            ClientOp::Logout(reason) => {
                if self.client.logout(self.now, &reason.0).is_ok() {
                    assert_eq!(self.client.state(), ClientState::Closed);
                }
            }
            ClientOp::Request(body) => self.request(body),
            ClientOp::Requests(times, body) => {
                for _ in 0..times % (MAX_BURST + 1) {
                    self.request(body);
                }
            }
            ClientOp::Burst {
                first,
                times,
                frame: spec,
            } => {
                if let Some(first) = first {
                    let frame = self.build_frame(first, 0);
                    self.feed(Bytes::from(frame.encode_to_vec()));
                }
                for offset in 0..u64::from(times % (MAX_BURST + 1)) {
                    let frame = self.build_frame(spec, offset);
                    self.feed(Bytes::from(frame.encode_to_vec()));
                }
            }
            ClientOp::Ack(seq) => {
                let seq = seq.resolve(self.delivered);
                let result = self.client.ack(seq);
                assert_eq!(
                    result.is_ok(),
                    seq <= self.delivered,
                    "ack({seq}) answered {result:?}"
                );
                if result.is_ok() {
                    self.acked = self.acked.max(seq);
                }
            }
            ClientOp::Frame(spec) => {
                let frame = self.build_frame(spec, 0);
                self.feed(Bytes::from(frame.encode_to_vec()));
            }
            ClientOp::Raw(Blob(bytes)) => self.feed(bytes.clone()),
            ClientOp::Stream(Blob(bytes)) => {
                self.inbox.extend_from_slice(bytes);
                loop {
                    let mut decoder = FrameDecoder::new(self.client.max_frame_len());
                    match decoder.decode(&mut self.inbox) {
                        Ok(Some(frame)) => self.feed(frame),
                        Ok(None) => break,
                        Err(error) => {
                            self.client.handle_protocol_error(self.now, error);
                            self.inbox.clear();
                            break;
                        }
                    }
                }
            }
            ClientOp::Time(step) => self.time(*step),
            ClientOp::ProtocolError(error) => {
                let error = error.to_error(self.client.max_frame_len());
                self.client.handle_protocol_error(self.now, error);
            }
        }
    }

    fn request(&mut self, body: &Blob) {
        if let Ok(id) = self.client.request(self.now, body.0.clone()) {
            assert_eq!(id, self.issued + 1, "request ids are not consecutive");
            self.issued = id;
            self.pending.insert(id);
        }
    }

    /// The frame `spec` describes, its numbers picked `offset` above the
    /// usual reference.
    fn build_frame(&self, spec: &ServerFrameSpec, offset: u64) -> v1::ServerFrame {
        let delivered = self.delivered.saturating_add(offset);
        let kind = match spec {
            ServerFrameSpec::LoginOk {
                session_id,
                resume_token,
                heartbeat_ms,
                session_timeout_ms,
                resumed,
                next_event_seq,
                server_time_ms,
                max_pending_requests,
                max_unacked_events,
                max_unacked_bytes,
            } => server_frame::Kind::LoginOk(v1::LoginOk {
                session_id: session_id
                    .or(self.client.session_id().map(|id| id.0))
                    .unwrap_or(1),
                resume_token: resume_token.0.clone(),
                heartbeat_ms: *heartbeat_ms,
                session_timeout_ms: *session_timeout_ms,
                resumed: *resumed,
                next_event_seq: next_event_seq.resolve(delivered),
                server_time_ms: *server_time_ms,
                max_pending_requests: *max_pending_requests,
                max_unacked_events: *max_unacked_events,
                max_unacked_bytes: *max_unacked_bytes,
            }),
            ServerFrameSpec::LoginRejected { code, message } => {
                server_frame::Kind::LoginRejected(v1::LoginRejected {
                    code: *code,
                    message: message.0.clone(),
                })
            }
            ServerFrameSpec::HeartbeatAck(time) => {
                server_frame::Kind::HeartbeatAck(v1::HeartbeatAck {
                    server_time_ms: *time,
                })
            }
            ServerFrameSpec::Response { request_id, result } => {
                let oldest = self
                    .pending
                    .first()
                    .copied()
                    .unwrap_or(self.issued)
                    .saturating_add(offset);
                server_frame::Kind::Response(v1::Response {
                    request_id: request_id.resolve(oldest),
                    result: match result {
                        ResultSpec::Missing => None,
                        ResultSpec::Body(body) => Some(v1::response::Result::Body(body.0.clone())),
                        ResultSpec::Error(code, message) => {
                            Some(v1::response::Result::Error(v1::Error {
                                code: *code,
                                message: message.0.clone(),
                            }))
                        }
                    },
                })
            }
            ServerFrameSpec::Event { seq, body } => server_frame::Kind::Event(v1::Event {
                seq: seq.resolve(delivered),
                body: body.0.clone(),
            }),
            ServerFrameSpec::CloseSignal {
                code,
                reason,
                retry_after_ms,
            } => server_frame::Kind::CloseSignal(v1::CloseSignal {
                code: *code,
                reason: reason.0.clone(),
                retry_after_ms: *retry_after_ms,
            }),
            ServerFrameSpec::Empty => return v1::ServerFrame { kind: None },
        };
        v1::ServerFrame { kind: Some(kind) }
    }

    /// `handle_frame`, noting event frames and checking that errors are sticky.
    fn feed(&mut self, frame: Bytes) {
        if let Ok(v1::ServerFrame {
            kind: Some(server_frame::Kind::Event(event)),
        }) = v1::ServerFrame::decode(frame.clone())
        {
            self.event_frames.push((event.seq, event.body));
        }
        let result = self.client.handle_frame(self.now, frame);
        if let Some(error) = &self.sticky {
            assert_eq!(result.as_ref(), Err(error), "the error is not sticky");
        }
        if let Err(error) = result {
            assert!(
                !matches!(
                    self.client.state(),
                    ClientState::LoggingIn
                        | ClientState::Online
                        | ClientState::Suspended
                        | ClientState::Resuming
                ),
                "failed with {error} but still {:?}",
                self.client.state()
            );
            self.sticky.get_or_insert(error);
        }
    }

    fn time(&mut self, step: Step) {
        crate::wire::step_time(&mut self.client, &mut self.now, step);
    }

    fn disconnect(&mut self) {
        self.client.handle_disconnect(self.now);
        self.inbox.clear();
        assert!(!self.client.is_connected());
    }

    fn drain(&mut self) {
        let framing = crate::wire::framing_for(self.turn);
        let mut polls = 0usize;
        while let Some(transmit) = self.client.poll_transmit(&mut self.out, framing) {
            polls += 1;
            assert!(polls < 100_000, "poll_transmit does not run dry");
            match transmit {
                Transmit::Frame => {
                    let bytes = self.out.split().freeze();
                    let frame: v1::ClientFrame = crate::wire::decode_written(bytes, framing);
                    let kind = frame.kind.expect("a frame without a kind");
                    crate::trace!("  -> {kind:?}");
                    self.on_frame(kind);
                }
                Transmit::CloseConnection => {
                    crate::trace!("  -> close connection");
                    assert!(self.out.is_empty(), "the close order wrote bytes");
                    assert!(
                        !self.close_ordered,
                        "a second close order on one connection"
                    );
                    self.close_ordered = true;
                    if self.follow_close {
                        self.disconnect();
                    }
                }
            }
        }
        while let Some(event) = self.client.poll_event() {
            crate::trace!("  event {event:?}");
            self.on_event(event);
        }
        crate::trace!("  state {:?}", self.client.state());
        assert_eq!(self.client.last_event_seq(), self.delivered);
        assert_eq!(self.client.pending_requests(), self.pending.len());
        assert_eq!(self.client.is_connected(), self.connected);
        if self.client.state() == ClientState::Closed {
            assert!(self.offline_seen, "Closed without Offline");
        }
    }

    fn on_frame(&mut self, kind: client_frame::Kind) {
        assert!(self.connected, "frame {kind:?} with no connection");
        assert!(!self.close_ordered, "frame {kind:?} after the close order");
        assert!(!self.logout_sent, "frame {kind:?} after Logout");
        let state = self.client.state();
        match kind {
            client_frame::Kind::Login(login) => match login.resume {
                Some(resume) => {
                    assert_eq!(
                        state,
                        ClientState::Resuming,
                        "a resume sent while {state:?}"
                    );
                    assert_eq!(
                        Some(resume.session_id),
                        self.client.session_id().map(|id| id.0)
                    );
                    assert_eq!(resume.last_event_seq, self.delivered);
                }
                None => assert_eq!(
                    state,
                    ClientState::LoggingIn,
                    "a login sent while {state:?}"
                ),
            },
            client_frame::Kind::Heartbeat(hb) => {
                self.check_acks("heartbeat", hb.ack_event_seq, hb.ack_request_id);
            }
            client_frame::Kind::Ack(ack) => {
                self.check_acks("ack", ack.event_seq, ack.ack_request_id);
            }
            client_frame::Kind::Request(request) => {
                assert!(
                    self.pending.contains(&request.request_id),
                    "request {} sent but not pending",
                    request.request_id
                );
                assert!(request.ack_request_id < request.request_id);
            }
            client_frame::Kind::Logout(_) => self.logout_sent = true,
        }
    }

    /// A frame's acknowledgements (`what`: which kind of frame) never run
    /// ahead of what the client received and issued.
    fn check_acks(&self, what: &str, event_seq: u64, request_id: u64) {
        assert!(
            event_seq <= self.acked,
            "{what} acks event {event_seq} beyond {}",
            self.acked
        );
        assert!(
            request_id <= self.issued,
            "{what} acks request {request_id} beyond {}",
            self.issued
        );
    }

    fn on_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Connected => {
                assert!(!self.connected, "Connected twice");
                self.connected = true;
                self.close_ordered = false;
                self.logout_sent = false;
            }
            ClientEvent::Disconnected(_) => {
                assert!(self.connected, "Disconnected twice");
                self.connected = false;
            }
            ClientEvent::Online(info) => {
                assert!(self.in_login, "Online without a login");
                assert!(!self.offline_seen, "Online after Offline");
                assert_eq!(info.resumed, self.online_seen, "resumed flag {info:?}");
                self.online_seen = true;
            }
            ClientEvent::Offline(reason) => {
                assert!(self.online_seen, "Offline({reason:?}) before Online");
                assert!(!self.offline_seen, "Offline({reason:?}) twice in one login");
                self.offline_seen = true;
            }
            ClientEvent::LoginFailed(_) => {}
            ClientEvent::Message { seq, body } => {
                assert!(
                    self.online_seen && !self.offline_seen,
                    "message outside a session"
                );
                assert_eq!(seq, self.delivered + 1, "message seqs not contiguous");
                assert!(
                    self.event_frames.contains(&(seq, body)),
                    "message {seq} not from an event frame fed now"
                );
                self.delivered = seq;
            }
            ClientEvent::Response { id, .. } => {
                assert!(
                    self.pending.remove(&id),
                    "response {id} not pending (twice, or never sent)"
                );
            }
            _ => {}
        }
    }
}
