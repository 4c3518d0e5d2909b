//! A kicked client sees `KICKED`, with the server's reason.

mod common;

use std::time::Duration;

use common::World;
use session_core::{
    ClientEvent, CloseCode, CloseReason, DisconnectReason, RequestFailure, ServerEvent,
};

#[test]
fn kick_is_reported_as_kicked_with_the_reason_then_disconnected() {
    let mut world = World::standard();
    world.echo = false;
    let c = world.online("alice", "web");
    let id = world.request(c, "pending");
    world.settle();
    let slot = world.slot_of(c);
    world.slots[slot]
        .session
        .close(CloseCode::Kicked, "operator", Some(Duration::from_secs(60)))
        .unwrap();
    world.settle();

    let kicked = CloseReason::Server {
        code: CloseCode::Kicked,
        message: "operator".into(),
        retry_after: Some(Duration::from_secs(60)),
    };
    assert_eq!(
        world.lifecycle(c)[2..],
        [
            ClientEvent::Offline(kicked.clone()),
            ClientEvent::Disconnected(DisconnectReason::Closed),
        ]
    );
    assert_eq!(kicked.code(), CloseCode::Kicked);
    assert!(!CloseCode::Kicked.may_reconnect());
    assert!(world.clients[c].events.contains(&ClientEvent::Response {
        id,
        result: Err(RequestFailure::SessionClosed(kicked)),
    }));
    assert!(matches!(
        world.server_lifecycle(slot).last(),
        Some(ServerEvent::Closed {
            code: CloseCode::Kicked,
            ..
        })
    ));
    // Closing twice is refused.
    assert!(
        world.slots[slot]
            .session
            .close(CloseCode::Kicked, "", None)
            .is_err()
    );
}

#[test]
fn kicking_a_detached_session_closes_it_without_a_connection() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    world.reset(c);
    world.slots[slot]
        .session
        .close(CloseCode::Kicked, "", None)
        .unwrap();
    world.settle();
    assert!(matches!(
        world.server_lifecycle(slot).as_slice(),
        [
            ServerEvent::Opened { .. },
            ServerEvent::Detached,
            ServerEvent::Closed {
                code: CloseCode::Kicked,
                ..
            }
        ]
    ));
    // The client's resume is refused and ends its session.
    world.reconnect_and_resume(c);
    assert!(matches!(
        world.offline_reasons(c).as_slice(),
        [CloseReason::ResumeRejected {
            code: session_core::RejectCode::SessionNotFound,
            ..
        }]
    ));
}

/// An application code outside 4000..=4999 cannot go on the wire as
/// itself; both sides then report the code the client read, `UNSPECIFIED`.
#[test]
fn both_sides_report_the_code_the_client_read() {
    for (code, read) in [
        (CloseCode::Application(3), CloseCode::Unspecified),
        (CloseCode::Application(5000), CloseCode::Unspecified),
        (CloseCode::Application(4501), CloseCode::Application(4501)),
    ] {
        let mut world = World::standard();
        let c = world.online("alice", "web");
        let slot = world.slot_of(c);
        world.slots[slot].session.close(code, "bye", None).unwrap();
        world.settle();
        assert_eq!(world.offline_reasons(c)[0].code(), read, "{code:?}");
        assert!(
            world
                .server_lifecycle(slot)
                .iter()
                .any(|e| matches!(e, ServerEvent::Closed { code: got, .. } if *got == read)),
            "{code:?}: {:?}",
            world.server_lifecycle(slot)
        );
    }
}
