//! The login-conflict policy per user and device.

mod common;

use common::World;
use session_core::{
    ClientEvent, ClientState, CloseCode, CloseReason, ConflictPolicy, ConflictRules, LoginFailure,
    RejectCode,
};

#[test]
fn replace_older_closes_the_older_session_with_login_conflict() {
    let mut world = World::standard();
    let older = world.online("alice", "web");
    let newer = world.online("alice", "web");
    assert_eq!(world.clients[newer].session.state(), ClientState::Online);
    assert_eq!(world.clients[older].session.state(), ClientState::Closed);
    assert!(matches!(
        world.offline_reasons(older).as_slice(),
        [CloseReason::Server {
            code: CloseCode::LoginConflict,
            ..
        }]
    ));
}

#[test]
fn another_device_or_user_is_no_conflict() {
    let mut world = World::standard();
    let web = world.online("alice", "web");
    let ios = world.online("alice", "ios");
    let bob = world.online("bob", "web");
    for c in [web, ios, bob] {
        assert_eq!(world.clients[c].session.state(), ClientState::Online);
    }
}

#[test]
fn reject_newer_keeps_the_older_session() {
    let mut world = World::standard();
    world.rules = ConflictRules::uniform(ConflictPolicy::RejectNewer);
    let older = world.online("alice", "web");
    let newer = world.add_client();
    world.connect(newer);
    world.login(newer, "alice", "web");
    assert_eq!(world.clients[older].session.state(), ClientState::Online);
    assert!(
        world
            .lifecycle(newer)
            .contains(&ClientEvent::LoginFailed(LoginFailure::Rejected {
                code: RejectCode::LoginConflict,
                message: "already logged in".into(),
            }))
    );
}

#[test]
fn allow_many_keeps_every_session() {
    let mut world = World::standard();
    world.rules = ConflictRules::uniform(ConflictPolicy::AllowMany);
    let sessions: Vec<usize> = (0..3).map(|_| world.online("alice", "web")).collect();
    for c in sessions {
        assert_eq!(world.clients[c].session.state(), ClientState::Online);
    }
}

#[test]
fn a_detached_session_is_replaced_too() {
    let mut world = World::standard();
    let older = world.online("alice", "web");
    let older_slot = world.slot_of(older);
    world.reset(older);
    assert_eq!(
        world.slots[older_slot].session.state(),
        session_core::ServerState::Detached
    );
    let _newer = world.online("alice", "web");
    assert!(matches!(
        world.server_lifecycle(older_slot).last(),
        Some(session_core::ServerEvent::Closed {
            code: CloseCode::LoginConflict,
            ..
        })
    ));
}
