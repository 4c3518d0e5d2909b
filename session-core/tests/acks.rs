//! Acknowledgements are coalesced: one goes out `ack_delay` after the oldest
//! event it covers arrived, with an earlier heartbeat, or at once when half
//! the server's window is in use or the server announced none.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::World;
use session_core::proto::prost::Message;
use session_core::proto::v1::{self, client_frame, server_frame};
use session_core::{
    ClientConfig, ClientSession, ClientState, Credentials, DEFAULT_ACK_DELAY, Framing,
    ServerConfig, Transmit,
};

const MS: Duration = Duration::from_millis(1);

#[test]
fn an_acknowledgement_waits_for_the_delay_then_covers_every_event() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    for i in 0..3 {
        world.publish(c, &format!("e{i}"));
    }
    world.ack_all(c);
    assert_eq!(world.server(c).unacked_events(), 3, "nothing sent yet");
    world.run_for(DEFAULT_ACK_DELAY - MS);
    assert_eq!(world.server(c).unacked_events(), 3);
    world.run_for(MS);
    assert_eq!(world.server(c).unacked_events(), 0);
}

#[test]
fn the_delay_counts_from_the_oldest_event_not_yet_acknowledged() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.publish(c, "first");
    world.run_for(Duration::from_millis(600));
    world.publish(c, "second");
    // Taken (and acknowledged) late: the server has held the first event
    // since it arrived, so the acknowledgement is due 1 s after that.
    world.ack_all(c);
    world.run_for(Duration::from_millis(399));
    assert_eq!(world.server(c).unacked_events(), 2);
    world.run_for(MS);
    assert_eq!(world.server(c).unacked_events(), 0);
}

#[test]
fn an_event_taken_after_the_delay_is_acknowledged_at_once() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.publish(c, "late");
    world.run_for(Duration::from_secs(2));
    assert_eq!(world.server(c).unacked_events(), 1, "not acknowledged yet");
    world.ack_all(c);
    world.jump();
    assert_eq!(world.server(c).unacked_events(), 0);
}

#[test]
fn an_event_never_acknowledged_arms_no_timer() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let before = world.clients[c].session.poll_timeout();
    world.publish(c, "kept");
    assert_eq!(world.clients[c].session.poll_timeout(), before);
}

#[test]
fn half_the_event_window_sends_the_acknowledgement_at_once() {
    let mut world = World::new(ServerConfig {
        max_unacked_events: 8,
        ..ServerConfig::default()
    });
    let c = world.online("alice", "web");
    for i in 0..3 {
        world.publish(c, &format!("e{i}"));
        world.ack_all(c);
    }
    assert_eq!(world.server(c).unacked_events(), 3);
    world.publish(c, "e3");
    world.ack_all(c);
    assert_eq!(world.server(c).unacked_events(), 0);
    // A burst keeps the server's buffer at most half full, with no timer.
    for i in 0..100 {
        world.publish(c, &format!("burst {i}"));
        world.ack_all(c);
        assert!(world.server(c).unacked_events() < 4);
    }
}

#[test]
fn half_the_byte_window_sends_the_acknowledgement_at_once() {
    let mut world = World::new(ServerConfig {
        max_unacked_bytes: 1000,
        ..ServerConfig::default()
    });
    let c = world.online("alice", "web");
    world.publish(c, &"a".repeat(499));
    world.ack_all(c);
    assert_eq!(world.server(c).unacked_events(), 1);
    world.publish(c, "b");
    world.ack_all(c);
    assert_eq!(world.server(c).unacked_events(), 0);
}

#[test]
fn a_heartbeat_carries_the_acknowledgement_when_it_comes_first() {
    let mut world = World::standard();
    world.client_config.ack_delay = Duration::from_secs(3600);
    let c = world.online("alice", "web");
    world.publish(c, "e");
    world.ack_all(c);
    // The default heartbeat is 30 s.
    world.run_for(Duration::from_secs(30) - MS);
    assert_eq!(world.server(c).unacked_events(), 1);
    world.run_for(MS);
    assert_eq!(world.server(c).unacked_events(), 0);
}

#[test]
fn a_zero_delay_acknowledges_at_once() {
    let mut world = World::standard();
    world.client_config.ack_delay = Duration::ZERO;
    let c = world.online("alice", "web");
    world.publish(c, "e");
    world.ack_all(c);
    assert_eq!(world.server(c).unacked_events(), 0);
}

#[test]
fn a_resume_acknowledges_what_was_taken_before_the_loss() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.publish(c, "e1");
    world.publish(c, "e2");
    world.ack_all(c);
    world.client_loses_connection(c);
    world.reconnect_and_resume(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Online);
    assert_eq!(world.server(c).unacked_events(), 0);
    assert_eq!(world.messages(c).len(), 2, "no event twice");
}

/// A client logged in by hand against `login_ok`, with one event received
/// at `at`; returns the client after it acknowledged that event.
fn acked_one_event(login_ok: v1::LoginOk, at: Instant) -> ClientSession {
    let mut client = ClientSession::new(ClientConfig::default());
    client.handle_connected(at);
    let credentials = Credentials {
        user_id: "alice".into(),
        credential: Bytes::from_static(b"pw"),
        ..Credentials::default()
    };
    client.login(at, credentials).unwrap();
    let mut out = BytesMut::new();
    while client.poll_transmit(&mut out, Framing::Bare).is_some() {}
    let frame = |kind| Bytes::from(v1::ServerFrame { kind: Some(kind) }.encode_to_vec());
    client
        .handle_frame(at, frame(server_frame::Kind::LoginOk(login_ok)))
        .unwrap();
    let event = v1::Event {
        seq: 1,
        body: Bytes::from_static(b"hello"),
    };
    client
        .handle_frame(at, frame(server_frame::Kind::Event(event)))
        .unwrap();
    client.ack(1).unwrap();
    client
}

fn sends_an_ack(client: &mut ClientSession) -> bool {
    let mut out = BytesMut::new();
    while let Some(Transmit::Frame) = client.poll_transmit(&mut out, Framing::Bare) {
        let frame = v1::ClientFrame::decode(out.split().freeze()).unwrap();
        if let Some(client_frame::Kind::Ack(ack)) = frame.kind {
            assert_eq!(ack.event_seq, 1);
            return true;
        }
    }
    false
}

#[test]
fn a_server_that_announces_no_window_is_acknowledged_at_once() {
    #[allow(clippy::disallowed_methods)]
    let at = Instant::now();
    let base = v1::LoginOk {
        session_id: 7,
        resume_token: Bytes::from_static(&[1; 32]),
        heartbeat_ms: 30_000,
        session_timeout_ms: 90_000,
        max_pending_requests: 16,
        ..v1::LoginOk::default()
    };
    // An older server: no window in its LoginOk.
    let mut client = acked_one_event(base.clone(), at);
    assert!(sends_an_ack(&mut client));

    let announced = v1::LoginOk {
        max_unacked_events: 1024,
        max_unacked_bytes: 4 << 20,
        ..base
    };
    let mut client = acked_one_event(announced, at);
    assert!(!sends_an_ack(&mut client));
    assert_eq!(client.poll_timeout(), Some(at + DEFAULT_ACK_DELAY));
    client.handle_timeout(at + DEFAULT_ACK_DELAY);
    assert!(sends_an_ack(&mut client));
}
