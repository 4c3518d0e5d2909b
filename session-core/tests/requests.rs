//! Many requests in flight, request timeouts, the pending window, and
//! pending requests failed when the session ends.

mod common;

use std::time::Duration;

use common::World;
use session_core::{CloseCode, CloseReason, RequestError, RequestFailure};

#[test]
fn many_requests_in_flight_complete_in_any_order() {
    let mut world = World::standard();
    world.echo = false;
    let c = world.online("alice", "web");
    let now = world.now;
    let ids: Vec<u64> = (0..50)
        .map(|i| {
            world.clients[c]
                .session
                .request(now, format!("{i}").into())
                .unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    world.settle();
    // The backend answers in reverse order.
    let mut held = std::mem::take(&mut world.held);
    held.reverse();
    world.held = held;
    world.respond_held();
    let mut got = world.responses(c);
    assert_eq!(got.len(), 50);
    assert_eq!(got[0].0, 50);
    got.sort_by_key(|(id, _)| *id);
    for (i, (id, result)) in got.into_iter().enumerate() {
        assert_eq!(id, i as u64 + 1);
        assert_eq!(result, Ok(format!("{i}").into()));
    }
}

#[test]
fn a_request_without_answer_times_out_and_a_late_answer_is_dropped() {
    let mut world = World::standard();
    world.echo = false;
    let c = world.online("alice", "web");
    let id = world.request(c, "slow");
    world.run_for(Duration::from_secs(29));
    assert!(world.responses(c).is_empty());
    world.run_for(Duration::from_secs(1));
    assert_eq!(
        world.responses(c),
        vec![(id, Err(RequestFailure::TimedOut))]
    );
    world.respond_held();
    assert_eq!(world.responses(c).len(), 1, "the late answer is dropped");
}

#[test]
fn the_pending_window_is_enforced_on_the_client() {
    let mut world = World::new(session_core::ServerConfig {
        max_pending_requests: 4,
        ..Default::default()
    });
    world.echo = false;
    let c = world.online("alice", "web");
    let now = world.now;
    for _ in 0..4 {
        world.clients[c].session.request(now, "x".into()).unwrap();
    }
    assert_eq!(
        world.clients[c].session.request(now, "x".into()),
        Err(RequestError::TooManyPending { window: 4 })
    );
    world.settle();
    world.respond_held();
    world.clients[c].session.request(now, "x".into()).unwrap();
}

#[test]
fn every_pending_request_fails_at_once_with_the_close_reason() {
    let mut world = World::standard();
    world.echo = false;
    let c = world.online("alice", "web");
    let now = world.now;
    let ids: Vec<u64> = (0..3)
        .map(|_| world.clients[c].session.request(now, "x".into()).unwrap())
        .collect();
    world.settle();
    let slot = world.slot_of(c);
    world.slots[slot]
        .session
        .close(CloseCode::ServerShutdown, "bye", None)
        .unwrap();
    world.settle();
    let reason = CloseReason::Server {
        code: CloseCode::ServerShutdown,
        message: "bye".into(),
        retry_after: None,
    };
    assert_eq!(
        world.responses(c),
        ids.iter()
            .map(|&id| (id, Err(RequestFailure::SessionClosed(reason.clone()))))
            .collect::<Vec<_>>()
    );
    // A request after the end fails with the same reason.
    assert_eq!(
        world.clients[c].session.request(world.now, "x".into()),
        Err(RequestError::SessionClosed(reason))
    );
}

#[test]
fn requests_need_a_session() {
    let mut world = World::standard();
    let c = world.add_client();
    world.connect(c);
    assert_eq!(
        world.clients[c].session.request(world.now, "x".into()),
        Err(RequestError::NotLoggedIn)
    );
}

/// `Duration::MAX` as a timeout means "none", on both sides, and a
/// heartbeat range whose bounds cross does not panic either.
#[test]
fn a_timeout_of_duration_max_means_none() {
    let mut world = World::new(session_core::ServerConfig {
        login_timeout: Duration::MAX,
        min_heartbeat: Duration::from_secs(60),
        max_heartbeat: Duration::from_secs(10),
        ..Default::default()
    });
    world.client_config.request_timeout = Duration::MAX;
    world.client_config.login_timeout = Duration::MAX;
    world.echo = false;
    let c = world.online("alice", "web");
    let id = world.request(c, "whenever");
    world.run_for(Duration::from_secs(3600));
    assert!(world.responses(c).is_empty());
    world.respond_held();
    assert_eq!(world.responses(c), vec![(id, Ok("whenever".into()))]);
}
