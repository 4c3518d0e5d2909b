//! Heartbeats keep a session alive; a silent client expires (expired, then
//! closed); a silent server is noticed by the client.

mod common;

use std::time::Duration;

use common::World;
use session_core::{
    ClientEvent, ClientState, CloseCode, CloseReason, DisconnectReason, ServerEvent, ServerState,
};

#[test]
fn heartbeats_keep_an_idle_session_open_for_hours() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.run_for(Duration::from_secs(3 * 3600));
    assert_eq!(world.clients[c].session.state(), ClientState::Online);
    let slot = world.slot_of(c);
    assert_eq!(world.slots[slot].session.state(), ServerState::Open);
    assert_eq!(world.lifecycle(c).len(), 2, "{:?}", world.lifecycle(c));
}

#[test]
fn a_heartbeat_is_a_few_bytes_on_the_wire() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    // Jump to the first heartbeat and look at what the client writes.
    world.now += Duration::from_secs(30);
    let now = world.now;
    world.clients[c].session.handle_timeout(now);
    let mut out = bytes::BytesMut::new();
    world.clients[c]
        .session
        .poll_transmit(&mut out, session_core::Framing::Delimited);
    assert!(out.len() <= 4, "heartbeat is {} bytes", out.len());
}

#[test]
fn a_silent_client_expires_then_closes_and_nothing_follows() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    // The client's heartbeats are lost; the server hears nothing.
    world.partition(c);
    world.run_for(Duration::from_secs(89));
    assert_eq!(world.slots[slot].session.state(), ServerState::Open);
    world.run_for(Duration::from_secs(1));
    assert_eq!(world.slots[slot].session.state(), ServerState::Closed);
    let events = world.server_lifecycle(slot);
    assert!(
        matches!(
            events.as_slice(),
            [
                ServerEvent::Opened { .. },
                ServerEvent::Expired,
                ServerEvent::Closed {
                    code: CloseCode::Expired,
                    ..
                }
            ]
        ),
        "{events:?}"
    );
    world.run_for(Duration::from_secs(600));
    assert_eq!(
        world.server_lifecycle(slot).len(),
        3,
        "nothing after closed"
    );
    assert!(world.server(c).publish("late".into()).is_err());
}

#[test]
fn any_frame_counts_as_liveness_not_only_heartbeats() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    // Requests every 20 s keep the session alive even if heartbeats were
    // never sent: advance the server's view by feeding it only requests.
    for _ in 0..20 {
        world.now += Duration::from_secs(20);
        let now = world.now;
        world.clients[c]
            .session
            .request(now, "ping".into())
            .unwrap();
        world.settle();
        world.slots[slot].session.handle_timeout(now);
    }
    assert_eq!(world.slots[slot].session.state(), ServerState::Open);
}

#[test]
fn the_client_notices_a_silent_server_and_suspends() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.partition(c);
    world.run_for(Duration::from_secs(60));
    assert_eq!(world.clients[c].session.state(), ClientState::Suspended);
    assert!(
        world
            .lifecycle(c)
            .contains(&ClientEvent::Disconnected(DisconnectReason::ServerSilent))
    );
    // Suspended is not offline: no Offline yet...
    assert!(world.offline_reasons(c).is_empty());
    // ...until the session has surely expired on the server.
    world.run_for(Duration::from_secs(120));
    assert_eq!(world.offline_reasons(c), vec![CloseReason::Expired]);
}
