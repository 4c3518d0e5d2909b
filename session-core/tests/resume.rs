//! Disconnect then resume: every missed event replayed once and in order;
//! resume after expiry, with a wrong token, or twice, is refused. A resume
//! refused for now (rate limited, busy) leaves the session suspended.

mod common;

use std::time::Duration;

use common::World;
use session_core::{
    ClientEvent, ClientState, CloseReason, RejectCode, ResumeRequest, ServerEvent, ServerState,
    SessionId,
};

fn bodies(world: &World, c: usize) -> Vec<String> {
    world
        .messages(c)
        .into_iter()
        .map(|(_, b)| String::from_utf8(b.to_vec()).unwrap())
        .collect()
}

#[test]
fn resume_after_a_reset_replays_every_missed_event_once_and_in_order() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    world.publish(c, "e1");
    world.publish(c, "e2");
    world.ack_all(c);
    world.publish(c, "e3"); // received, not acknowledged
    world.reset(c);
    assert_eq!(world.slots[slot].session.state(), ServerState::Detached);
    assert_eq!(world.clients[c].session.state(), ClientState::Suspended);
    // Published while detached: buffered.
    world.publish(c, "e4");
    world.publish(c, "e5");
    world.run_for(Duration::from_secs(30));

    world.reconnect_and_resume(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Online);
    assert_eq!(bodies(&world, c), ["e1", "e2", "e3", "e4", "e5"]);
    let seqs: Vec<u64> = world.messages(c).iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(matches!(
        world.lifecycle(c).last(),
        Some(ClientEvent::Online(info)) if info.resumed
    ));
    // Offline never fired: the session did not end.
    assert!(world.offline_reasons(c).is_empty());
    assert!(matches!(
        world.server_lifecycle(slot).as_slice(),
        [
            ServerEvent::Opened { .. },
            ServerEvent::Detached,
            ServerEvent::Resumed
        ]
    ));
    // And the session goes on.
    world.publish(c, "e6");
    assert_eq!(bodies(&world, c).last().map(String::as_str), Some("e6"));
}

#[test]
fn resume_over_a_half_open_connection_replays_what_was_lost_in_flight() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    world.publish(c, "seen");
    // The network drops everything; the server keeps writing into the void.
    world.partition(c);
    world.publish(c, "lost-1");
    world.publish(c, "lost-2");
    world.client_loses_connection(c);
    assert_eq!(world.slots[slot].session.state(), ServerState::Open);

    world.reconnect_and_resume(c);
    assert_eq!(bodies(&world, c), ["seen", "lost-1", "lost-2"]);
    assert_eq!(world.slots[slot].session.state(), ServerState::Open);
}

#[test]
fn the_resume_token_is_rotated_on_every_resume() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    let session_id = world.clients[c].session.session_id().unwrap();
    let stolen = ResumeRequest {
        session_id,
        resume_token: current_token(&mut world, c),
        last_event_seq: 0,
    };
    world.reset(c);
    world.reconnect_and_resume(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Online);
    assert_ne!(current_token(&mut world, c), stolen.resume_token);
    // Once the client has sent a frame (its next heartbeat) on the new
    // connection, the token used before this resume no longer works.
    world.run_for(Duration::from_secs(31));
    world.reset(c);
    let now = world.now;
    assert_eq!(
        world.slots[slot]
            .session
            .resume(now, &stolen, &mut world.rng),
        Err(session_core::ResumeRejected::BadToken)
    );
}

#[test]
fn a_suspended_client_gives_up_when_the_session_has_surely_expired() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.reset(c);
    world.run_for(Duration::from_secs(89));
    assert_eq!(world.clients[c].session.state(), ClientState::Suspended);
    world.run_for(Duration::from_secs(1));
    assert_eq!(world.offline_reasons(c), vec![CloseReason::Expired]);
    let slot = world.slot_of(c);
    assert!(matches!(
        world.server_lifecycle(slot).as_slice(),
        [
            ServerEvent::Opened { .. },
            ServerEvent::Detached,
            ServerEvent::Expired,
            ServerEvent::Closed { .. }
        ]
    ));
}

#[test]
fn resume_after_expiry_is_rejected_and_ends_the_session() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    // The partition eats the heartbeats; the server expires the session at
    // 90 s while the client, which noticed the silence at 60 s, still hopes.
    world.partition(c);
    world.run_for(Duration::from_secs(100));
    assert_eq!(world.slots[slot].session.state(), ServerState::Closed);
    assert_eq!(world.clients[c].session.state(), ClientState::Suspended);
    world.reconnect_and_resume(c);
    // The rejection is explicit and ends the session.
    assert!(matches!(
        world.offline_reasons(c).as_slice(),
        [CloseReason::ResumeRejected {
            code: RejectCode::SessionNotFound,
            ..
        }]
    ));
    assert_eq!(world.clients[c].session.state(), ClientState::Closed);
}

#[test]
fn resume_with_a_wrong_or_foreign_token_is_rejected_without_harm() {
    let mut world = World::standard();
    let alice = world.online("alice", "web");
    let bob = world.online("bob", "web");
    let alice_slot = world.slot_of(alice);
    let alice_id = world.clients[alice].session.session_id().unwrap();
    let bob_token = current_token(&mut world, bob);
    let now = world.now;
    for request in [
        ResumeRequest {
            session_id: alice_id,
            resume_token: vec![0u8; 32].into(),
            last_event_seq: 0,
        },
        ResumeRequest {
            session_id: alice_id,
            resume_token: bob_token.clone(),
            last_event_seq: 0,
        },
        ResumeRequest {
            session_id: SessionId(12345),
            resume_token: bob_token,
            last_event_seq: 0,
        },
        ResumeRequest {
            session_id: alice_id,
            resume_token: vec![].into(),
            last_event_seq: 0,
        },
    ] {
        assert!(
            world.slots[alice_slot]
                .session
                .resume(now, &request, &mut world.rng)
                .is_err()
        );
    }
    assert_eq!(world.slots[alice_slot].session.state(), ServerState::Open);
    world.publish(alice, "still fine");
    assert_eq!(bodies(&world, alice), ["still fine"]);
}

#[test]
fn a_claim_of_events_never_published_is_rejected() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    let request = ResumeRequest {
        session_id: world.clients[c].session.session_id().unwrap(),
        resume_token: current_token(&mut world, c),
        last_event_seq: 7,
    };
    let now = world.now;
    assert_eq!(
        world.slots[slot]
            .session
            .resume(now, &request, &mut world.rng),
        Err(session_core::ResumeRejected::SeqOutOfRange {
            claimed: 7,
            last: 0
        })
    );
}

#[test]
fn two_racing_resumes_the_later_one_holds_the_session() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    let request = ResumeRequest {
        session_id: world.clients[c].session.session_id().unwrap(),
        resume_token: current_token(&mut world, c),
        last_event_seq: 0,
    };
    world.reset(c);
    let now = world.now;
    // Both present the same token before either connection sent a frame:
    // the second takes the session over (the server then drops the first
    // connection without writing to it), with a fresh token.
    let first = world.slots[slot]
        .session
        .resume(now, &request, &mut world.rng);
    let second = world.slots[slot]
        .session
        .resume(now, &request, &mut world.rng);
    assert_eq!((first, second), (Ok(()), Ok(())));
    world.settle();
    assert!(matches!(
        world.server_lifecycle(slot).as_slice(),
        [
            ServerEvent::Opened { .. },
            ServerEvent::Detached,
            ServerEvent::Resumed,
            ServerEvent::Detached,
            ServerEvent::Resumed
        ]
    ));
}

#[test]
fn a_resume_whose_answer_was_lost_can_be_retried_with_the_same_token() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    let slot = world.slot_of(c);
    world.publish(c, "e1");
    world.reset(c);
    // The client resumes; the server answers, but the connection dies
    // before the client reads the `LoginOk` (and its new token).
    world.connect(c);
    world.partition(c);
    let now = world.now;
    world.clients[c].session.resume(now).unwrap();
    let resume_login = {
        let mut out = bytes::BytesMut::new();
        world.clients[c]
            .session
            .poll_transmit(&mut out, session_core::Framing::Bare);
        out.freeze()
    };
    // Deliver the resume to the server by hand, and let it answer into the void.
    let temp = world.clients[c].link.as_ref().unwrap().slot;
    world.slots[temp]
        .session
        .handle_frame(now, resume_login)
        .unwrap();
    world.settle();
    assert_eq!(world.slots[slot].session.state(), ServerState::Open);
    world.reset(c);
    // The client still holds the old token: its retry must work.
    world.reconnect_and_resume(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Online);
    assert!(world.offline_reasons(c).is_empty());
    world.publish(c, "e2");
    assert_eq!(bodies(&world, c), ["e1", "e2"]);
}

fn current_token(world: &mut World, c: usize) -> bytes::Bytes {
    world.clients[c]
        .last_token
        .clone()
        .expect("a LoginOk was received")
}

#[test]
fn a_close_signal_before_the_resume_answer_leaves_the_session_suspended() {
    use session_core::proto::prost::Message;
    use session_core::proto::v1;
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.reset(c);
    // A new connection that the server refuses at the door.
    let now = world.now;
    let client = &mut world.clients[c].session;
    client.handle_connected(now);
    client.resume(now).unwrap();
    let refusal = v1::ServerFrame {
        kind: Some(v1::server_frame::Kind::CloseSignal(v1::CloseSignal {
            code: session_core::CloseCode::PolicyViolation.to_wire(),
            reason: "too many connections".into(),
            retry_after_ms: Some(5000),
        })),
    };
    client
        .handle_frame(now, refusal.encode_to_vec().into())
        .unwrap();
    world.settle();
    assert_eq!(world.clients[c].session.state(), ClientState::Suspended);
    assert!(
        world.offline_reasons(c).is_empty(),
        "the session did not end"
    );
    assert!(world.lifecycle(c).iter().any(|e| matches!(
        e,
        ClientEvent::LoginFailed(session_core::LoginFailure::Closed(CloseReason::Server {
            code: session_core::CloseCode::PolicyViolation,
            ..
        }))
    )));
    // The client asked to close that connection; once it is gone, a resume
    // over a new one succeeds.
    let _ = world.clients[c]
        .session
        .poll_transmit(&mut bytes::BytesMut::new(), session_core::Framing::Bare);
    world.clients[c].session.handle_disconnect(now);
    world.reconnect_and_resume(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Online);
}

#[test]
fn a_resume_refused_for_now_leaves_the_session_suspended() {
    for code in [
        RejectCode::RateLimited,
        RejectCode::ServerBusy,
        RejectCode::InternalError,
        RejectCode::Unspecified,
    ] {
        let mut world = World::standard();
        let c = world.online("alice", "web");
        let slot = world.slot_of(c);
        world.publish(c, "e1");
        world.reset(c);
        let waiting = world.request(c, "while away");

        // The server still holds the session, but refuses the resume: the
        // address spent its failed-login budget, say.
        world.refuse_resumes = Some(code);
        world.reconnect_and_resume(c);
        assert_eq!(
            world.clients[c].session.state(),
            ClientState::Suspended,
            "{code:?}"
        );
        assert!(world.offline_reasons(c).is_empty(), "{code:?}");
        assert!(
            world.lifecycle(c).contains(&ClientEvent::LoginFailed(
                session_core::LoginFailure::Rejected {
                    code,
                    message: "try again later".into(),
                }
            )),
            "{code:?}: {:?}",
            world.lifecycle(c)
        );
        // The refusal closed that connection; the request still waits.
        assert!(world.clients[c].link.is_none(), "{code:?}");
        assert_eq!(world.clients[c].session.pending_requests(), 1);
        assert_eq!(world.slots[slot].session.state(), ServerState::Detached);

        // Later the server takes the resume: nothing was lost.
        world.publish(c, "e2");
        world.refuse_resumes = None;
        world.reconnect_and_resume(c);
        assert_eq!(world.clients[c].session.state(), ClientState::Online);
        assert_eq!(bodies(&world, c), ["e1", "e2"], "{code:?}");
        assert!(matches!(
            world.responses(c).as_slice(),
            [(id, Ok(body))] if *id == waiting && body.as_ref() == b"while away"
        ));
        assert!(world.offline_reasons(c).is_empty(), "{code:?}");
    }
}

#[test]
fn only_a_resume_refused_for_good_ends_the_session() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.reset(c);
    world.refuse_resumes = Some(RejectCode::ServerBusy);
    world.reconnect_and_resume(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Suspended);
    // A code that retrying cannot change ends it, as SESSION_NOT_FOUND does.
    world.refuse_resumes = Some(RejectCode::BadCredentials);
    world.reconnect_and_resume(c);
    assert_eq!(world.clients[c].session.state(), ClientState::Closed);
    assert_eq!(
        world.offline_reasons(c),
        [CloseReason::ResumeRejected {
            code: RejectCode::BadCredentials,
            message: "try again later".into(),
        }]
    );
}

#[test]
fn refusals_for_now_do_not_outlast_the_clients_own_expiry() {
    let mut world = World::standard();
    let c = world.online("alice", "web");
    world.reset(c);
    world.refuse_resumes = Some(RejectCode::RateLimited);
    // Refused every 10 s: still suspended until the window passes (90 s
    // after the last heartbeat, as without the refusals), then over.
    for _ in 0..8 {
        world.run_for(Duration::from_secs(10));
        world.reconnect_and_resume(c);
        assert_eq!(world.clients[c].session.state(), ClientState::Suspended);
    }
    world.run_for(Duration::from_secs(10));
    assert_eq!(world.offline_reasons(c), [CloseReason::Expired]);
    assert_eq!(world.clients[c].session.state(), ClientState::Closed);
}
