//! Requests are executed once even when re-sent across a resume; cached
//! responses are dropped once acknowledged.

mod common;

use common::World;
use session_core::{ClientState, ErrorCode, RequestFailure, ResponseError};

#[test]
fn a_request_answered_while_the_connection_was_down_is_not_executed_twice() {
    let mut world = World::standard();
    world.echo = false;
    let c = world.online("alice", "web");
    let id = world.request(c, "transfer 10");
    world.settle();
    assert_eq!(world.executions.len(), 1);
    // The connection drops; the backend answers meanwhile (cached, not sent).
    world.reset(c);
    world.respond_held();
    // The client resumes and re-sends the request: it gets the cached answer.
    world.reconnect_and_resume(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Online);
    assert_eq!(world.executions.len(), 1, "executed exactly once");
    assert_eq!(world.responses(c), vec![(id, Ok("transfer 10".into()))]);
}

#[test]
fn a_request_still_executing_at_resume_is_answered_once_when_done() {
    let mut world = World::standard();
    world.echo = false;
    let c = world.online("alice", "web");
    let id = world.request(c, "slow");
    world.settle();
    world.client_loses_connection(c);
    world.reconnect_and_resume(c);
    assert_eq!(
        world.executions.len(),
        1,
        "the re-send did not execute again"
    );
    world.respond_held();
    assert_eq!(world.responses(c), vec![(id, Ok("slow".into()))]);
}

#[test]
fn a_request_lost_in_flight_is_executed_after_the_resume() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.partition(c);
    let id = world.request(c, "lost");
    world.settle();
    assert_eq!(world.executions.len(), 0);
    world.client_loses_connection(c);
    world.reconnect_and_resume(c);
    assert_eq!(world.executions.len(), 1);
    assert_eq!(world.responses(c), vec![(id, Ok("lost".into()))]);
}

#[test]
fn requests_made_while_suspended_are_sent_after_the_resume() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.reset(c);
    let id = world.request(c, "queued");
    world.reconnect_and_resume(c);
    assert_eq!(world.responses(c), vec![(id, Ok("queued".into()))]);
}

#[test]
fn cached_responses_are_dropped_once_acknowledged() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let now = world.now;
    for i in 0..5 {
        world.clients[c]
            .session
            .request(now, format!("r{i}").into())
            .unwrap();
    }
    world.settle();
    assert_eq!(world.responses(c).len(), 5);
    // The next frame carries the cumulative acknowledgement of responses.
    world.clients[c].session.request(now, "r5".into()).unwrap();
    world.settle();
    let slot = world.slot_of(c);
    // Responses 1..=5 are forgotten: answering request 3 again is a no-op,
    // and request 6's is still cached until acknowledged.
    assert_eq!(
        world.slots[slot].session.respond(3, Ok("again".into())),
        Ok(())
    );
    assert_eq!(
        world.slots[slot].session.respond(6, Ok("again".into())),
        Err(session_core::RespondError::AlreadyAnswered(6))
    );
}

#[test]
fn server_errors_reach_the_request_typed() {
    let mut world = World::standard();
    world.echo = false;
    let c = world.online("alice", "web");
    let now = world.now;
    let id = world.clients[c].session.request(now, "bad".into()).unwrap();
    world.settle();
    let slot = world.slot_of(c);
    world.held.clear();
    let error = ResponseError {
        code: ErrorCode::Application(1042),
        message: "no such account".into(),
    };
    world.slots[slot]
        .session
        .respond(id, Err(error.clone()))
        .unwrap();
    world.settle();
    assert_eq!(
        world.responses(c),
        vec![(id, Err(RequestFailure::Server(error)))]
    );
}
