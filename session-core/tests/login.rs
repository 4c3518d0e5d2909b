//! Login accepted and rejected, and the negotiated timing.

mod common;

use std::time::Duration;

use common::World;
use session_core::{
    ClientEvent, ClientState, DisconnectReason, LoginFailure, RejectCode, ServerEvent, ServerState,
};

#[test]
fn accepted_login_reports_connected_then_online_on_the_client_and_opened_on_the_server() {
    let mut world = World::standard();
    let c = world.online("alice", "web");

    let lifecycle = world.lifecycle(c);
    assert_eq!(lifecycle[0], ClientEvent::Connected);
    let ClientEvent::Online(info) = &lifecycle[1] else {
        panic!("expected online, got {lifecycle:?}");
    };
    assert!(!info.resumed);
    assert_eq!(info.heartbeat, Duration::from_secs(30));
    assert_eq!(info.session_timeout, Duration::from_secs(90));
    assert_eq!(lifecycle.len(), 2);

    let slot = world.slot_of(c);
    assert_eq!(world.slots[slot].session.state(), ServerState::Open);
    assert!(matches!(
        world.server_lifecycle(slot).as_slice(),
        [ServerEvent::Opened { .. }]
    ));
    assert_eq!(world.clients[c].session.session_id(), Some(info.session_id));
}

#[test]
fn rejected_login_reports_the_servers_code_and_closes_the_connection() {
    let mut world = World::standard();
    let c = world.add_client();
    world.connect(c);
    let now = world.now;
    world.clients[c]
        .session
        .login(now, World::credentials("alice", "web", b"wrong"))
        .unwrap();
    world.settle();

    assert_eq!(
        world.lifecycle(c),
        vec![
            ClientEvent::Connected,
            ClientEvent::LoginFailed(LoginFailure::Rejected {
                code: RejectCode::BadCredentials,
                message: "bad credentials".into(),
            }),
            ClientEvent::Disconnected(DisconnectReason::Closed),
        ]
    );
    assert_eq!(world.clients[c].session.state(), ClientState::Disconnected);
    assert!(world.clients[c].link.is_none());
    // The session never opened: no lifecycle event on the server.
    assert_eq!(world.server_lifecycle(0), vec![]);
    assert_eq!(world.slots[0].session.state(), ServerState::Closed);
}

#[test]
fn requested_heartbeat_is_clamped_to_the_servers_range_and_its_answer_wins() {
    for (requested, granted) in [
        (Duration::from_millis(10), Duration::from_secs(1)),
        (Duration::from_secs(5), Duration::from_secs(5)),
        (Duration::from_secs(3600), Duration::from_secs(300)),
    ] {
        let mut world = World::standard();
        world.client_config.requested_heartbeat = Some(requested);
        let c = world.online("alice", "web");
        let Some(ClientEvent::Online(info)) = world.lifecycle(c).get(1).cloned() else {
            panic!("not online");
        };
        assert_eq!(info.heartbeat, granted, "requested {requested:?}");
        assert_eq!(world.server(c).heartbeat(), Some(granted));
        assert_eq!(info.session_timeout, granted * 3);
    }
}

#[test]
fn a_client_can_log_in_again_after_its_session_ended() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let now = world.now;
    world.clients[c].session.logout(now, "bye").unwrap();
    world.settle();
    world.connect(c);
    world.login(c, "alice", "web");
    assert_eq!(world.clients[c].session.state(), ClientState::Online);
    let online = world
        .lifecycle(c)
        .iter()
        .filter(|e| matches!(e, ClientEvent::Online(_)))
        .count();
    assert_eq!(online, 2);
}

#[test]
fn login_needs_a_connection_and_no_session_in_progress() {
    let mut world = World::standard();
    let c = world.add_client();
    let now = world.now;
    let creds = World::credentials("alice", "web", common::SECRET);
    assert_eq!(
        world.clients[c].session.login(now, creds.clone()),
        Err(session_core::LoginError::NotConnected)
    );
    world.connect(c);
    world.clients[c].session.login(now, creds.clone()).unwrap();
    assert_eq!(
        world.clients[c].session.login(now, creds),
        Err(session_core::LoginError::SessionInProgress)
    );
}

#[test]
fn the_credential_is_never_printed_by_debug() {
    let creds = World::credentials("alice", "web", b"hunter2");
    let printed = format!("{creds:?}");
    assert!(printed.contains("alice"));
    assert!(!printed.contains("hunter2"), "{printed}");
}
