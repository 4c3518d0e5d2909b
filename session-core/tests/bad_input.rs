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

fn heartbeat() -> Bytes {
    client_frame(v1::client_frame::Kind::Heartbeat(v1::Heartbeat::default()))
}

#[test]
fn frames_before_login_are_a_protocol_error() {
    for frame in [
        heartbeat(),
        client_frame(v1::client_frame::Kind::Request(v1::Request {
            request_id: 1,
            ..Default::default()
        })),
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
    let skip = client_frame(v1::client_frame::Kind::Request(v1::Request {
        request_id: 5,
        ..Default::default()
    }));
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

#[test]
fn exceeding_the_request_window_is_a_policy_violation() {
    let mut world = World::new(ServerConfig {
        max_pending_requests: 2,
        ..ServerConfig::default()
    });
    world.echo = false;
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    let now = world.now;
    let session = &mut world.slots[slot].session;
    for id in 1..=2 {
        let request = client_frame(v1::client_frame::Kind::Request(v1::Request {
            request_id: id,
            ..Default::default()
        }));
        session.handle_frame(now, request).unwrap();
    }
    let third = client_frame(v1::client_frame::Kind::Request(v1::Request {
        request_id: 3,
        ..Default::default()
    }));
    assert_eq!(
        session.handle_frame(now, third),
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
