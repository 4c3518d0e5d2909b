//! The close signal is delivered before the connection closes, and the
//! client reports the server's reason, never a generic "connection closed".

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::World;
use session_core::{
    ClientEvent, CloseCode, CloseReason, DisconnectReason, Framing, ServerEvent, Transmit,
};

#[test]
fn close_signal_is_the_last_frame_before_the_order_to_close() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    let session = &mut world.slots[slot].session;
    session.publish("before".into()).unwrap();
    session
        .close(
            CloseCode::ServerShutdown,
            "maintenance",
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    assert!(
        session.publish("after".into()).is_err(),
        "nothing after close"
    );

    let mut out = BytesMut::new();
    let mut frames = Vec::new();
    while let Some(t) = session.poll_transmit(&mut out, Framing::Bare) {
        frames.push((t, out.split().freeze()));
    }
    let kinds: Vec<Transmit> = frames.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        kinds,
        [Transmit::Frame, Transmit::Frame, Transmit::CloseConnection],
        "event, close signal, then close"
    );
    // The client, fed exactly these frames, reports the server's reason.
    let client = &mut world.clients[c].session;
    for (_, frame) in frames.into_iter().take(2) {
        client.handle_frame(world.now, frame).unwrap();
    }
    let mut events = Vec::new();
    while let Some(e) = client.poll_event() {
        events.push(e);
    }
    assert_eq!(
        events,
        [
            ClientEvent::Message {
                seq: 1,
                body: "before".into()
            },
            ClientEvent::Offline(CloseReason::Server {
                code: CloseCode::ServerShutdown,
                message: "maintenance".into(),
                retry_after: Some(Duration::from_secs(5)),
            }),
        ]
    );
    // The client answers nothing: it only asks for the connection to close.
    assert_eq!(
        client.poll_transmit(&mut out, Framing::Bare),
        Some(Transmit::CloseConnection)
    );
    assert!(out.is_empty());
}

#[test]
fn the_socket_closing_right_after_the_signal_does_not_hide_the_reason() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    world.slots[slot]
        .session
        .close(CloseCode::AuthRevoked, "password changed", None)
        .unwrap();
    // The world delivers the flushed signal, then both ends see the close.
    world.settle();
    assert_eq!(
        world.lifecycle(c)[2..],
        [
            ClientEvent::Offline(CloseReason::Server {
                code: CloseCode::AuthRevoked,
                message: "password changed".into(),
                retry_after: None,
            }),
            ClientEvent::Disconnected(DisconnectReason::Closed),
        ]
    );
    assert!(matches!(
        world.server_lifecycle(slot).as_slice(),
        [
            ServerEvent::Opened { .. },
            ServerEvent::Closed {
                code: CloseCode::AuthRevoked,
                ..
            }
        ]
    ));
}

#[test]
fn unknown_close_codes_decode_as_unspecified_and_app_codes_survive() {
    assert_eq!(CloseCode::from_wire(99), CloseCode::Unspecified);
    assert_eq!(CloseCode::from_wire(-5), CloseCode::Unspecified);
    assert_eq!(CloseCode::from_wire(4001), CloseCode::Application(4001));
    assert!(CloseCode::Application(4001).may_reconnect());
    assert!(!CloseCode::Application(4501).may_reconnect());
    assert_eq!(CloseCode::application(3999), None);
    for code in [
        CloseCode::LoggedOut,
        CloseCode::Expired,
        CloseCode::Kicked,
        CloseCode::LoginConflict,
        CloseCode::ServerShutdown,
        CloseCode::LoginTimeout,
        CloseCode::ProtocolError,
        CloseCode::PolicyViolation,
        CloseCode::SlowConsumer,
        CloseCode::AuthRevoked,
        CloseCode::InternalError,
        CloseCode::Application(4999),
    ] {
        assert_eq!(CloseCode::from_wire(code.to_wire()), code);
    }
}
