//! Logout is reported as `LOGGED_OUT` on both sides.

mod common;

use common::World;
use session_core::{
    ClientEvent, ClientState, CloseCode, CloseReason, DisconnectReason, RequestFailure,
    ServerEvent, ServerState,
};

#[test]
fn logout_is_logged_out_on_both_sides_and_closes_the_connection() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    let now = world.now;
    world.clients[c].session.logout(now, "see you").unwrap();
    world.settle();

    assert_eq!(
        world.lifecycle(c)[2..],
        [
            ClientEvent::Offline(CloseReason::LoggedOut),
            ClientEvent::Disconnected(DisconnectReason::Closed),
        ]
    );
    assert_eq!(world.clients[c].session.state(), ClientState::Closed);
    assert_eq!(world.slots[slot].session.state(), ServerState::Closed);
    assert!(matches!(
        world.server_lifecycle(slot).as_slice(),
        [
            ServerEvent::Opened { .. },
            ServerEvent::Closed { code: CloseCode::LoggedOut, reason }
        ] if reason == "see you"
    ));
}

#[test]
fn logout_fails_pending_requests_with_logged_out() {
    let mut world = World::standard();
    world.echo = false;
    let c = world.online("alice", "web");
    let id = world.request(c, "slow");
    world.settle();
    let now = world.now;
    world.clients[c].session.logout(now, "").unwrap();
    world.settle();
    assert!(world.clients[c].events.contains(&ClientEvent::Response {
        id,
        result: Err(RequestFailure::SessionClosed(CloseReason::LoggedOut)),
    }));
    // A late answer from the backend goes nowhere.
    world.respond_held();
    assert_eq!(world.clients[c].session.pending_requests(), 0);
}

#[test]
fn logout_while_suspended_ends_the_session_locally() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.client_loses_connection(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Suspended);
    let now = world.now;
    world.clients[c].session.logout(now, "").unwrap();
    world.settle();
    assert_eq!(world.offline_reasons(c), vec![CloseReason::LoggedOut]);
    assert_eq!(
        world.clients[c].session.logout(now, ""),
        Err(session_core::LogoutError::NotLoggedIn)
    );
}
