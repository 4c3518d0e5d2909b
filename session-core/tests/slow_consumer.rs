//! A client that does not acknowledge events is closed with `SLOW_CONSUMER`:
//! an event is either delivered or the application is told the session ended.

mod common;

use common::World;
use session_core::{
    ClientState, CloseCode, CloseReason, PublishError, ServerConfig, ServerEvent, ServerState,
};

#[test]
fn overflowing_the_unacknowledged_buffer_closes_with_slow_consumer() {
    let mut world = World::new(ServerConfig {
        max_unacked_events: 8,
        ..ServerConfig::default()
    });
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    for i in 0..8 {
        world.publish(c, &format!("e{i}"));
    }
    // The client received them but never acknowledged.
    assert_eq!(world.messages(c).len(), 8);
    assert_eq!(
        world.slots[slot].session.publish("one too many".into()),
        Err(PublishError::SlowConsumer)
    );
    world.settle();
    assert_eq!(world.slots[slot].session.state(), ServerState::Closed);
    assert!(matches!(
        world.server_lifecycle(slot).last(),
        Some(ServerEvent::Closed {
            code: CloseCode::SlowConsumer,
            ..
        })
    ));
    assert_eq!(world.clients[c].session.state(), ClientState::Closed);
    assert!(matches!(
        world.offline_reasons(c).as_slice(),
        [CloseReason::Server {
            code: CloseCode::SlowConsumer,
            ..
        }]
    ));
}

#[test]
fn acknowledging_keeps_the_buffer_small() {
    let mut world = World::new(ServerConfig {
        max_unacked_events: 8,
        ..ServerConfig::default()
    });
    let c = world.online("alice", "web");
    for i in 0..101 {
        world.publish(c, &format!("e{i}"));
        world.ack_all(c);
        // Acknowledgements wait (see `acks.rs`), but never past half the
        // server's window.
        assert!(world.server(c).unacked_events() < 4);
    }
    assert_eq!(world.messages(c).len(), 101);
    world.jump();
    assert_eq!(world.server(c).unacked_events(), 0);
}

#[test]
fn the_byte_limit_counts_too() {
    let mut world = World::new(ServerConfig {
        max_unacked_bytes: 1000,
        ..ServerConfig::default()
    });
    let c = world.online("alice", "web");
    world.server(c).publish(vec![0u8; 600].into()).unwrap();
    assert_eq!(
        world.server(c).publish(vec![0u8; 600].into()),
        Err(PublishError::SlowConsumer)
    );
}

#[test]
fn a_detached_session_overflowing_closes_and_the_resume_is_refused() {
    let mut world = World::new(ServerConfig {
        max_unacked_events: 4,
        ..ServerConfig::default()
    });
    let c = world.online("alice", "web");
    world.reset(c);
    for _ in 0..4 {
        world.server(c).publish("x".into()).unwrap();
    }
    assert_eq!(
        world.server(c).publish("x".into()),
        Err(PublishError::SlowConsumer)
    );
    world.reconnect_and_resume(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Closed);
}
