//! Bad input from the peer: oversized frames, malformed frames, unknown
//! kinds, frames before login, out-of-order frames. Each gets a typed error
//! and a close signal with the matching code; no panic; other sessions are
//! untouched.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::World;
use session_core::proto::prost::Message;
use session_core::proto::v1;
use session_core::{
    ClientState, CloseCode, Framing, ProtocolError, ServerConfig, ServerSession, ServerState,
    Transmit,
};

/// Feeds `frame` to a fresh server session (logged in if `open`) and
/// returns the error and the close code it sent.
fn close_code_for(open: bool, frame: Bytes) -> (ProtocolError, CloseCode) {
    let mut world = World::standard();
    let slot;
    if open {
        let c = world.online("alice", "web");
        slot = world.slot_of(c);
        world.settle();
    } else {
        let c = world.add_client();
        world.connect(c);
        slot = 0;
    }
    let now = world.now;
    let session = &mut world.slots[slot].session;
    let error = session.handle_frame(now, frame.clone()).unwrap_err();
    // Sticky: the same error again, no more work.
    assert_eq!(session.handle_frame(now, frame).unwrap_err(), error);
    assert_eq!(session.state(), ServerState::Closed);
    (error, sent_close_code(session))
}

fn sent_close_code(session: &mut ServerSession) -> CloseCode {
    let mut out = BytesMut::new();
    let mut last = None;
    loop {
        match session.poll_transmit(&mut out, Framing::Bare) {
            Some(Transmit::Frame) => last = Some(out.split().freeze()),
            Some(Transmit::CloseConnection) => break,
            None => panic!("no order to close the connection"),
        }
    }
    let frame = v1::ServerFrame::decode(last.expect("a close signal")).unwrap();
    match frame.kind {
        Some(v1::server_frame::Kind::CloseSignal(signal)) => CloseCode::from_wire(signal.code),
        other => panic!("expected a close signal, got {other:?}"),
    }
}

fn client_frame(kind: v1::client_frame::Kind) -> Bytes {
    v1::ClientFrame { kind: Some(kind) }.encode_to_vec().into()
}

/// A request frame with an empty body.
fn request(id: u64, ack_request_id: u64) -> Bytes {
    client_frame(v1::client_frame::Kind::Request(v1::Request {
        request_id: id,
        body: Bytes::new(),
        ack_request_id,
    }))
}

fn heartbeat() -> Bytes {
    client_frame(v1::client_frame::Kind::Heartbeat(v1::Heartbeat::default()))
}

#[test]
fn frames_before_login_are_a_protocol_error() {
    for frame in [
        heartbeat(),
        request(1, 0),
        client_frame(v1::client_frame::Kind::Logout(v1::Logout::default())),
    ] {
        let (error, code) = close_code_for(false, frame);
        assert!(
            matches!(error, ProtocolError::UnexpectedFrame { .. }),
            "{error}"
        );
        assert_eq!(code, CloseCode::ProtocolError);
    }
}

#[test]
fn malformed_and_unknown_frames_are_protocol_errors() {
    let malformed = Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    // Field 50, length-delimited, empty: a kind this version does not know.
    let mut unknown = BytesMut::new();
    unknown.put_slice(&[0x92, 0x03, 0x00]);
    for open in [false, true] {
        let (error, code) = close_code_for(open, malformed.clone());
        assert!(matches!(error, ProtocolError::Malformed(_)));
        assert_eq!(code, CloseCode::ProtocolError);
        let (error, code) = close_code_for(open, unknown.clone().freeze());
        assert_eq!(error, ProtocolError::UnknownFrameKind);
        assert_eq!(code, CloseCode::ProtocolError);
        let (error, _) = close_code_for(open, Bytes::new());
        assert_eq!(error, ProtocolError::UnknownFrameKind);
    }
}

#[test]
fn a_second_login_on_an_open_session_is_a_protocol_error() {
    let login = client_frame(v1::client_frame::Kind::Login(v1::Login {
        protocol_version: 1,
        user_id: "alice".into(),
        ..Default::default()
    }));
    let (error, code) = close_code_for(true, login);
    assert!(matches!(
        error,
        ProtocolError::UnexpectedFrame { frame: "login", .. }
    ));
    assert_eq!(code, CloseCode::ProtocolError);
}

#[test]
fn out_of_order_requests_and_bogus_acks_are_protocol_errors() {
    let skip = request(5, 0);
    let (error, code) = close_code_for(true, skip);
    assert_eq!(
        error,
        ProtocolError::RequestOutOfOrder { id: 5, expected: 1 }
    );
    assert_eq!(code, CloseCode::ProtocolError);

    let ack = client_frame(v1::client_frame::Kind::Ack(v1::Ack {
        event_seq: 3,
        ack_request_id: 0,
    }));
    let (error, _) = close_code_for(true, ack);
    assert!(matches!(
        error,
        ProtocolError::AckOutOfRange { what: "event", .. }
    ));
}

/// A world whose application answers no request, with a request window of
/// `window`, and the slot of one session online in it.
fn unanswering(window: u32) -> (World, usize) {
    let mut world = World::new(ServerConfig {
        max_pending_requests: window,
        ..ServerConfig::default()
    });
    world.echo = false;
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    (world, slot)
}

#[test]
fn exceeding_the_request_window_is_a_policy_violation() {
    let (mut world, slot) = unanswering(2);
    let now = world.now;
    let session = &mut world.slots[slot].session;
    for id in 1..=2 {
        session.handle_frame(now, request(id, 0)).unwrap();
    }
    assert_eq!(
        session.handle_frame(now, request(3, 0)),
        Err(ProtocolError::TooManyPendingRequests { limit: 2 })
    );
    assert_eq!(sent_close_code(session), CloseCode::PolicyViolation);
}

#[test]
fn an_oversized_frame_before_login_is_a_policy_violation() {
    let (error, code) = close_code_for(false, vec![0u8; 4097].into());
    assert_eq!(
        error,
        ProtocolError::FrameTooLarge {
            len: 4097,
            max: 4096
        }
    );
    assert_eq!(code, CloseCode::PolicyViolation);
}

#[test]
fn a_length_prefix_bomb_closes_only_its_own_connection() {
    let mut world = World::standard();
    let bystander = world.online("bob", "web");
    let attacker = world.add_client();
    world.connect(attacker);
    let slot = world.clients[attacker].link.as_ref().unwrap().slot;
    // Declares a 2 GiB frame before login.
    world.clients[attacker]
        .link
        .as_mut()
        .unwrap()
        .c2s
        .extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    world.settle();
    assert_eq!(world.slots[slot].session.state(), ServerState::Closed);
    assert!(matches!(
        world.slots[slot].session.error(),
        Some(ProtocolError::FrameTooLarge { .. })
    ));
    assert!(world.clients[attacker].link.is_none(), "connection closed");
    // The bystander is untouched.
    world.publish(bystander, "hi");
    assert_eq!(world.messages(bystander).len(), 1);
    assert_eq!(
        world.clients[bystander].session.state(),
        ClientState::Online
    );
}

#[test]
fn an_unsupported_protocol_version_is_rejected() {
    let mut world = World::standard();
    let c = world.add_client();
    world.connect(c);
    let now = world.now;
    let login = client_frame(v1::client_frame::Kind::Login(v1::Login {
        protocol_version: 2,
        user_id: "alice".into(),
        ..Default::default()
    }));
    world.slots[0].session.handle_frame(now, login).unwrap();
    let mut out = BytesMut::new();
    assert_eq!(
        world.slots[0]
            .session
            .poll_transmit(&mut out, Framing::Bare),
        Some(Transmit::Frame)
    );
    let frame = v1::ServerFrame::decode(out.freeze()).unwrap();
    assert!(matches!(
        frame.kind,
        Some(v1::server_frame::Kind::LoginRejected(r))
            if session_core::RejectCode::from_wire(r.code)
                == session_core::RejectCode::UnsupportedVersion
    ));
}

#[test]
fn a_misbehaving_server_is_a_protocol_violation_for_the_client() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let now = world.now;
    let gap = v1::ServerFrame {
        kind: Some(v1::server_frame::Kind::Event(v1::Event {
            seq: 3,
            body: Bytes::new(),
        })),
    };
    let error = world.clients[c]
        .session
        .handle_frame(now, gap.encode_to_vec().into())
        .unwrap_err();
    assert_eq!(
        error,
        ProtocolError::EventGap {
            expected: 1,
            got: 3
        }
    );
    world.settle();
    assert_eq!(world.clients[c].session.state(), ClientState::Closed);
    assert!(matches!(
        world.offline_reasons(c).as_slice(),
        [session_core::CloseReason::ProtocolViolation(
            ProtocolError::EventGap { .. }
        )]
    ));
    // The client told the server it left, so the session does not linger.
    let slot = world.slot_of(c);
    assert_eq!(world.slots[slot].session.state(), ServerState::Closed);
}

/// Frames handled in a burst before the outputs are drained (a driver that
/// decodes a whole read buffer first): each re-send of an answered request
/// queues its response again, and an ack in the same burst makes every queued
/// entry stale. `poll_transmit` used to skip stale entries by calling itself,
/// one stack frame each: 50,000 re-sends overflowed the stack of a debug
/// build (optimised builds happened to turn the tail call into a jump). Seen
/// in review while writing the fuzz harness's `Burst` operation, and
/// confirmed by replaying such an input in a debug build.
#[test]
fn a_burst_of_resent_requests_then_an_ack_skips_stale_responses_in_a_loop() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    let now = world.now;
    let session = &mut world.slots[slot].session;
    session.handle_frame(now, request(1, 0)).unwrap();
    session
        .respond(1, Ok(Bytes::from_static(b"answer")))
        .unwrap();
    let mut out = BytesMut::new();
    while session.poll_transmit(&mut out, Framing::Bare).is_some() {}
    for _ in 0..50_000 {
        session.handle_frame(now, request(1, 0)).unwrap();
    }
    let ack = client_frame(v1::client_frame::Kind::Ack(v1::Ack {
        event_seq: 0,
        ack_request_id: 1,
    }));
    session.handle_frame(now, ack).unwrap();
    out.clear();
    assert_eq!(session.poll_transmit(&mut out, Framing::Bare), None);
    assert!(out.is_empty(), "an acknowledged response went out");
}

/// The client's side of the same pattern: after a resume every pending
/// request is queued for re-sending, and responses handled before the drain
/// make the queued entries stale. They too used to be skipped by recursion.
#[test]
fn responses_before_the_drain_after_a_resume_skip_stale_requests_in_a_loop() {
    const REQUESTS: u64 = 50_000;
    let mut world = World::new(ServerConfig {
        max_pending_requests: 100_000,
        ..ServerConfig::default()
    });
    let c = world.online("alice", "web");
    world.client_loses_connection(c);
    let now = world.now;
    let client = &mut world.clients[c].session;
    assert_eq!(client.state(), ClientState::Suspended);
    for _ in 0..REQUESTS {
        client.request(now, Bytes::new()).unwrap();
    }
    client.handle_connected(now);
    client.resume(now).unwrap();
    let mut out = BytesMut::new();
    while client.poll_transmit(&mut out, Framing::Bare).is_some() {}
    let server_frame = |kind| Bytes::from(v1::ServerFrame { kind: Some(kind) }.encode_to_vec());
    let login_ok = v1::LoginOk {
        session_id: client.session_id().unwrap().0,
        resume_token: Bytes::from_static(&[1; 32]),
        heartbeat_ms: 30_000,
        session_timeout_ms: 90_000,
        resumed: true,
        next_event_seq: 1,
        server_time_ms: 0,
        max_pending_requests: 100_000,
        ..v1::LoginOk::default()
    };
    client
        .handle_frame(now, server_frame(v1::server_frame::Kind::LoginOk(login_ok)))
        .unwrap();
    for id in 1..=REQUESTS {
        let response = v1::Response {
            request_id: id,
            result: Some(v1::response::Result::Body(Bytes::new())),
        };
        client
            .handle_frame(
                now,
                server_frame(v1::server_frame::Kind::Response(response)),
            )
            .unwrap();
    }
    assert_eq!(client.pending_requests(), 0);
    out.clear();
    assert_eq!(client.poll_transmit(&mut out, Framing::Bare), None);
    assert!(out.is_empty(), "a request with its response went out again");
}

#[test]
fn a_frame_flood_is_a_policy_violation_and_a_steady_client_is_not() {
    let mut world = World::new(ServerConfig {
        max_frames_per_second: 50,
        ..ServerConfig::default()
    });
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    let start = world.now;
    // 50 heartbeats a second, for three seconds: fine.
    for i in 0..150u32 {
        let now = start + std::time::Duration::from_millis(u64::from(i) * 20 + 1);
        world.slots[slot]
            .session
            .handle_frame(now, heartbeat())
            .unwrap();
        while world.slots[slot]
            .session
            .poll_transmit(&mut BytesMut::new(), Framing::Bare)
            .is_some()
        {}
    }
    // Then 51 within one second: closed.
    let now = start + std::time::Duration::from_secs(10);
    for _ in 0..50 {
        world.slots[slot]
            .session
            .handle_frame(now, heartbeat())
            .unwrap();
    }
    assert_eq!(
        world.slots[slot].session.handle_frame(now, heartbeat()),
        Err(ProtocolError::FrameRateExceeded { limit: 50 })
    );
    assert_eq!(
        sent_close_code(&mut world.slots[slot].session),
        CloseCode::PolicyViolation
    );
}

/// The responses `session` sends now, by request id.
fn responses_out(session: &mut ServerSession) -> Vec<(u64, Option<v1::response::Result>)> {
    let mut out = BytesMut::new();
    let mut got = Vec::new();
    while let Some(Transmit::Frame) = session.poll_transmit(&mut out, Framing::Bare) {
        if let Some(v1::server_frame::Kind::Response(r)) =
            v1::ServerFrame::decode(out.split().freeze()).unwrap().kind
        {
            got.push((r.request_id, r.result));
        }
    }
    got
}

/// A client that acknowledges responses it never got (as one that gave up
/// on its requests does) cannot have more than the window executing: the
/// requests past it fail at once with `UNAVAILABLE`, and the session goes
/// on.
#[test]
fn acknowledging_unanswered_requests_does_not_widen_the_window() {
    let (mut world, slot) = unanswering(4);
    let now = world.now;
    let session = &mut world.slots[slot].session;
    for id in 1..=20 {
        session.handle_frame(now, request(id, id - 1)).unwrap();
    }
    let handed: Vec<u64> = std::iter::from_fn(|| session.poll_event())
        .filter_map(|e| match e {
            session_core::ServerEvent::Request { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(handed, [1, 2, 3, 4]);
    // Each refused request got its answer; all but the last were
    // acknowledged by the next request before they went out.
    let unavailable = Some(v1::response::Result::Error(v1::Error {
        code: session_core::ErrorCode::Unavailable.to_wire(),
        message: "4 requests of this session are still executing".into(),
    }));
    assert_eq!(responses_out(session), [(20, unavailable)]);
    assert_eq!(session.state(), ServerState::Open);

    // One ends (its answer is dropped: the client gave up on it), and the
    // next request runs.
    session.respond(2, Ok(Bytes::from_static(b"late"))).unwrap();
    session.handle_frame(now, request(21, 20)).unwrap();
    assert!(matches!(
        session.poll_event(),
        Some(session_core::ServerEvent::Request { id: 21, .. })
    ));
    assert_eq!(responses_out(session), []);
}

/// A request re-sent over and over on the same connection gets its cached
/// response once: the re-sends cannot pile up output. A new connection
/// (after a resume) gets it once more.
#[test]
fn a_resent_request_is_answered_once_per_connection() {
    let mut world = World::standard();
    let c = world.add_client();
    world.connect(c);
    world.login(c, "alice", "web");
    let slot = world.slot_of(c);
    let token = world.clients[c].last_token.clone().unwrap();
    let now = world.now;
    let session = &mut world.slots[slot].session;
    session.handle_frame(now, request(1, 0)).unwrap();
    session
        .respond(1, Ok(Bytes::from_static(b"answer")))
        .unwrap();
    let answer = Some(v1::response::Result::Body(Bytes::from_static(b"answer")));
    assert_eq!(responses_out(session), [(1, answer.clone())]);
    for _ in 0..10_000 {
        session.handle_frame(now, request(1, 0)).unwrap();
    }
    assert_eq!(responses_out(session), []);

    session.handle_disconnect(now);
    let resume = session_core::ResumeRequest {
        session_id: session.session_id().unwrap(),
        resume_token: token,
        last_event_seq: 0,
    };
    session
        .resume(now, &resume, &mut session_core::SplitMix64::new(1))
        .unwrap();
    for _ in 0..3 {
        session.handle_frame(now, request(1, 0)).unwrap();
    }
    assert_eq!(responses_out(session), [(1, answer)]);
}

#[test]
fn acknowledging_the_last_possible_request_id_is_a_protocol_error() {
    let ack = client_frame(v1::client_frame::Kind::Ack(v1::Ack {
        event_seq: 0,
        ack_request_id: u64::MAX,
    }));
    let (error, code) = close_code_for(true, ack);
    assert!(matches!(
        error,
        ProtocolError::AckOutOfRange {
            what: "request",
            ack: u64::MAX,
            ..
        }
    ));
    assert_eq!(code, CloseCode::ProtocolError);
}
