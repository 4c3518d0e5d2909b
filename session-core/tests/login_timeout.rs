//! A connection that does not log in within the deadline is closed with
//! `LOGIN_TIMEOUT`.

mod common;

use std::time::Duration;

use common::World;
use session_core::{ClientEvent, CloseCode, CloseReason, LoginFailure, ServerConfig, ServerState};

#[test]
fn a_silent_connection_is_closed_with_login_timeout_after_the_deadline() {
    let mut world = World::standard();
    let c = world.add_client();
    world.connect(c);
    world.run_for(Duration::from_millis(9_999));
    assert!(world.clients[c].link.is_some(), "closed too early");

    world.run_for(Duration::from_millis(1));
    assert!(world.clients[c].link.is_none());
    assert_eq!(world.slots[0].session.state(), ServerState::Closed);
    // The session never opened: no lifecycle event on the server.
    assert_eq!(world.server_lifecycle(0), vec![]);
}

#[test]
fn a_slow_authenticator_counts_against_the_login_deadline() {
    let mut world = World::new(ServerConfig {
        login_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    });
    let c = world.add_client();
    world.connect(c);
    // The client logs in, but the backend never decides.
    let now = world.now;
    world.clients[c]
        .session
        .login(now, World::credentials("alice", "web", common::SECRET))
        .unwrap();
    // Deliver the login without letting the world's backend answer it.
    let slot = 0;
    let mut out = bytes::BytesMut::new();
    while world.clients[c]
        .session
        .poll_transmit(&mut out, session_core::Framing::Bare)
        .is_some()
    {
        world.slots[slot]
            .session
            .handle_frame(now, out.split().freeze())
            .unwrap();
    }
    assert_eq!(
        world.slots[slot].session.state(),
        ServerState::Authenticating
    );
    let login = world.slots[slot].session.poll_event();
    assert!(matches!(
        login,
        Some(session_core::ServerEvent::LoginRequested(_))
    ));

    world.run_for(Duration::from_secs(2));
    assert_eq!(world.slots[slot].session.state(), ServerState::Closed);
    let failed = world.lifecycle(c);
    assert!(
        failed.contains(&ClientEvent::LoginFailed(LoginFailure::Closed(
            CloseReason::Server {
                code: CloseCode::LoginTimeout,
                message: "login timeout".into(),
                retry_after: None,
            }
        ))),
        "{failed:?}"
    );
    // Deciding late is refused.
    assert!(
        world.slots[slot]
            .session
            .accept_login(world.now, 0, &mut world.rng)
            .is_err()
    );
}

#[test]
fn the_client_gives_up_when_the_login_answer_never_comes() {
    let mut world = World::standard();
    let c = world.add_client();
    world.connect(c);
    world.partition(c);
    let now = world.now;
    world.clients[c]
        .session
        .login(now, World::credentials("alice", "web", common::SECRET))
        .unwrap();
    world.run_for(Duration::from_secs(10));
    assert!(
        world
            .lifecycle(c)
            .contains(&ClientEvent::LoginFailed(LoginFailure::TimedOut)),
        "{:?}",
        world.lifecycle(c)
    );
}
