//! Property tests over random sequences of publishes, acks, requests,
//! resets, partitions, resumes, kicks, logouts and time steps, checking the
//! lifecycle invariants; and random frames thrown at a server session.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use common::World;
use proptest::prelude::*;
use session_core::proto::prost::Message;
use session_core::proto::v1;
use session_core::{
    ClientEvent, ClientState, CloseCode, CloseReason, Framing, ServerConfig, ServerEvent,
    ServerSession, ServerState, SplitMix64, Transmit,
};

const CLIENTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Publish { c: usize },
    Ack { c: usize },
    Request { c: usize },
    RespondHeld,
    Reset { c: usize },
    LoseConnection { c: usize },
    Partition { c: usize },
    Resume { c: usize },
    Kick { c: usize },
    Logout { c: usize },
    Tick { millis: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS;
    prop_oneof![
        6 => c.clone().prop_map(|c| Op::Publish { c }),
        3 => c.clone().prop_map(|c| Op::Ack { c }),
        3 => c.clone().prop_map(|c| Op::Request { c }),
        2 => Just(Op::RespondHeld),
        1 => c.clone().prop_map(|c| Op::Reset { c }),
        1 => c.clone().prop_map(|c| Op::LoseConnection { c }),
        1 => c.clone().prop_map(|c| Op::Partition { c }),
        3 => c.clone().prop_map(|c| Op::Resume { c }),
        1 => c.clone().prop_map(|c| Op::Kick { c }),
        1 => c.clone().prop_map(|c| Op::Logout { c }),
        4 => prop_oneof![0u32..2_000, 0u32..120_000].prop_map(|millis| Op::Tick { millis }),
    ]
}

/// What the test knows the server accepted.
#[derive(Default)]
struct Ledger {
    /// Per server slot, every event body whose publish was accepted, in order.
    published: BTreeMap<usize, Vec<Bytes>>,
    /// Per client, every request id it was given.
    requested: BTreeMap<usize, Vec<u64>>,
    counter: u64,
}

fn apply(world: &mut World, ledger: &mut Ledger, op: &Op) {
    let now = world.now;
    match *op {
        Op::Publish { c } => {
            let slot = world.slot_of(c);
            ledger.counter += 1;
            let body = Bytes::from(format!("c{c}-{}", ledger.counter));
            if let Ok(seq) = world.slots[slot].session.publish(body.clone()) {
                let published = ledger.published.entry(slot).or_default();
                published.push(body);
                assert_eq!(seq, published.len() as u64, "contiguous sequence numbers");
            }
            world.settle();
        }
        Op::Ack { c } => world.ack_all(c),
        Op::Request { c } => {
            ledger.counter += 1;
            let body = Bytes::from(format!("r{}", ledger.counter));
            if let Ok(id) = world.clients[c].session.request(now, body) {
                ledger.requested.entry(c).or_default().push(id);
            }
            world.settle();
        }
        Op::RespondHeld => world.respond_held(),
        Op::Reset { c } => world.reset(c),
        Op::LoseConnection { c } => world.client_loses_connection(c),
        Op::Partition { c } => world.partition(c),
        Op::Resume { c } => {
            if world.clients[c].session.state() == ClientState::Suspended {
                world.reconnect_and_resume(c);
            }
        }
        Op::Kick { c } => {
            let slot = world.slot_of(c);
            let _ = world.slots[slot]
                .session
                .close(CloseCode::Kicked, "kick", None);
            world.settle();
        }
        Op::Logout { c } => {
            let _ = world.clients[c].session.logout(now, "bye");
            world.settle();
        }
        Op::Tick { millis } => world.run_for(Duration::from_millis(u64::from(millis))),
    }
}

/// Invariants that hold after every step.
fn check_always(world: &World) {
    assert!(
        world.server_errors.is_empty(),
        "an honest client broke the protocol: {:?}",
        world.server_errors
    );
    for c in 0..CLIENTS {
        // Events are contiguous from 1 and never duplicated.
        let seqs: Vec<u64> = world.messages(c).iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "client {c}"
        );
        // Offline at most once, and nothing of the session after it.
        let events = &world.clients[c].events;
        let offline: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, ClientEvent::Offline(_)))
            .map(|(i, _)| i)
            .collect();
        assert!(offline.len() <= 1, "client {c}: {events:?}");
        if let Some(&at) = offline.first() {
            for later in &events[at + 1..] {
                assert!(
                    matches!(
                        later,
                        ClientEvent::Disconnected(_)
                            | ClientEvent::Response {
                                result: Err(session_core::RequestFailure::SessionClosed(_)),
                                ..
                            }
                    ),
                    "client {c} after offline: {later:?}"
                );
            }
        }
        for e in events {
            if let ClientEvent::Offline(reason) = e {
                assert!(
                    !matches!(reason, CloseReason::ProtocolViolation(_)),
                    "the server broke the protocol: {reason:?}"
                );
            }
        }
    }
    for (index, slot) in world.slots.iter().enumerate() {
        let events: Vec<&ServerEvent> = slot
            .events
            .iter()
            .filter(|e| !matches!(e, ServerEvent::LoginRequested(_)))
            .collect();
        if events.is_empty() {
            continue;
        }
        // Opened first and once.
        assert!(
            matches!(events[0], ServerEvent::Opened { .. }),
            "slot {index}: {events:?}"
        );
        let opened = events
            .iter()
            .filter(|e| matches!(e, ServerEvent::Opened { .. }))
            .count();
        assert_eq!(opened, 1);
        for (i, e) in events.iter().enumerate() {
            // Expired is always followed by Closed.
            if matches!(e, ServerEvent::Expired) {
                assert!(matches!(
                    events.get(i + 1),
                    Some(ServerEvent::Closed {
                        code: CloseCode::Expired,
                        ..
                    })
                ));
            }
            // Nothing after Closed.
            if matches!(e, ServerEvent::Closed { .. }) {
                assert_eq!(i, events.len() - 1, "slot {index}: {events:?}");
                assert_eq!(slot.session.state(), ServerState::Closed);
            }
        }
    }
    // Exactly-once execution.
    let mut seen = BTreeSet::new();
    for e in &world.executions {
        assert!(seen.insert((e.slot, e.id)), "request executed twice: {e:?}");
    }
}

/// After the faults stop and everyone resumes: every accepted event was
/// delivered once and in order, or the client was told its session ended;
/// every request got exactly one answer.
fn check_after_healing(world: &mut World, ledger: &Ledger) {
    for _ in 0..3 {
        for c in 0..CLIENTS {
            if world.clients[c].session.state() == ClientState::Suspended {
                world.reconnect_and_resume(c);
            }
        }
        world.respond_held();
        world.run_for(Duration::from_secs(70));
    }
    world.respond_held();
    world.run_for(Duration::from_secs(31));
    check_always(world);
    for c in 0..CLIENTS {
        let slot = world.slot_of(c);
        let published = ledger.published.get(&slot).cloned().unwrap_or_default();
        let delivered: Vec<Bytes> = world.messages(c).into_iter().map(|(_, b)| b).collect();
        let ended = !world.offline_reasons(c).is_empty();
        if ended {
            assert!(
                published.starts_with(&delivered),
                "client {c}: delivered {delivered:?} is not a prefix of {published:?}"
            );
        } else {
            assert_eq!(world.clients[c].session.state(), ClientState::Online);
            assert_eq!(delivered, published, "client {c} lost or reordered events");
        }
        // One answer per request.
        let mut answers: BTreeMap<u64, usize> = BTreeMap::new();
        for e in &world.clients[c].events {
            if let ClientEvent::Response { id, .. } = e {
                *answers.entry(*id).or_default() += 1;
            }
        }
        let requested = ledger.requested.get(&c).cloned().unwrap_or_default();
        for id in &requested {
            assert_eq!(
                answers.get(id),
                Some(&1),
                "client {c} request {id}: {answers:?}"
            );
        }
        assert_eq!(answers.len(), requested.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lifecycle_invariants_hold_under_random_faults(
        ops in proptest::collection::vec(op(), 1..60),
        echo in any::<bool>(),
    ) {
        let mut world = World::new(ServerConfig {
            max_unacked_events: 12,
            ..ServerConfig::default()
        });
        world.echo = echo;
        for c in 0..CLIENTS {
            world.online(&format!("user{c}"), "web");
        }
        let mut ledger = Ledger::default();
        for op in &ops {
            apply(&mut world, &mut ledger, op);
            check_always(&world);
        }
        check_after_healing(&mut world, &ledger);
    }
}

// ---- random frames at a server session ----

fn client_frame() -> impl Strategy<Value = Bytes> {
    let kind = prop_oneof![
        (any::<u32>(), ".{0,8}", proptest::option::of(any::<u64>())).prop_map(
            |(version, user, resume)| v1::client_frame::Kind::Login(v1::Login {
                protocol_version: version % 3,
                user_id: user,
                resume: resume.map(|seq| v1::Resume {
                    session_id: seq,
                    resume_token: Bytes::new(),
                    last_event_seq: seq % 4,
                }),
                ..Default::default()
            })
        ),
        (0u64..4, 0u64..4).prop_map(|(e, r)| v1::client_frame::Kind::Heartbeat(v1::Heartbeat {
            ack_event_seq: e,
            ack_request_id: r,
        })),
        (0u64..6, 0u64..4).prop_map(|(id, ack)| v1::client_frame::Kind::Request(v1::Request {
            request_id: id,
            body: Bytes::new(),
            ack_request_id: ack,
        })),
        (0u64..4).prop_map(|e| v1::client_frame::Kind::Ack(v1::Ack {
            event_seq: e,
            ack_request_id: 0,
        })),
        Just(v1::client_frame::Kind::Logout(v1::Logout::default())),
    ];
    prop_oneof![
        4 => kind.prop_map(|k| Bytes::from(v1::ClientFrame { kind: Some(k) }.encode_to_vec())),
        1 => proptest::collection::vec(any::<u8>(), 0..32).prop_map(Bytes::from),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Frame(Bytes),
    Tick(u32),
    Accept,
    Publish,
    Respond(u64),
    Disconnect,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => client_frame().prop_map(Input::Frame),
        2 => (0u32..100_000).prop_map(Input::Tick),
        2 => Just(Input::Accept),
        2 => Just(Input::Publish),
        1 => (0u64..6).prop_map(Input::Respond),
        1 => Just(Input::Disconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_server_session_survives_any_input_and_closes_with_a_signal(
        inputs in proptest::collection::vec(input(), 1..40),
    ) {
        let mut world = World::standard();
        let mut now = world.now;
        let mut rng = SplitMix64::new(9);
        let mut session = ServerSession::new(now, world.config.clone());
        let mut events = Vec::new();
        let mut attached = true;
        for input in inputs {
            match input {
                Input::Frame(frame) if attached => {
                    if let Err(error) = session.handle_frame(now, frame) {
                        // A protocol error always ends in a close signal
                        // with the matching code, then the close order.
                        prop_assert_eq!(session.state(), ServerState::Closed);
                        let mut out = bytes::BytesMut::new();
                        let mut last = None;
                        while let Some(t) = session.poll_transmit(&mut out, Framing::Bare) {
                            match t {
                                Transmit::Frame => last = Some(out.split().freeze()),
                                Transmit::CloseConnection => break,
                            }
                        }
                        let frame = v1::ServerFrame::decode(last.expect("a frame")).unwrap();
                        match frame.kind {
                            Some(v1::server_frame::Kind::CloseSignal(s)) => {
                                prop_assert_eq!(CloseCode::from_wire(s.code), error.close_code());
                            }
                            other => prop_assert!(false, "expected a close signal: {:?}", other),
                        }
                        attached = false;
                    }
                }
                Input::Frame(_) => {}
                Input::Tick(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    if session.poll_timeout().is_some_and(|at| at <= now) {
                        session.handle_timeout(now);
                    }
                }
                Input::Accept => {
                    let _ = session.accept_login(now, 0, &mut rng);
                }
                Input::Publish => {
                    let _ = session.publish(Bytes::from_static(b"e"));
                }
                Input::Respond(id) => {
                    let _ = session.respond(id, Ok(Bytes::new()));
                }
                Input::Disconnect => {
                    session.handle_disconnect(now);
                    attached = false;
                }
            }
            let mut out = bytes::BytesMut::new();
            while let Some(t) = session.poll_transmit(&mut out, Framing::Delimited) {
                if t == Transmit::CloseConnection && attached {
                    session.handle_disconnect(now);
                    attached = false;
                }
            }
            while let Some(e) = session.poll_event() {
                events.push(e);
            }
        }
        // The Atomix ordering holds whatever the input.
        let lifecycle: Vec<&ServerEvent> = events
            .iter()
            .filter(|e| !matches!(e, ServerEvent::LoginRequested(_) | ServerEvent::Request { .. }))
            .collect();
        if let Some(first) = lifecycle.first() {
            prop_assert!(matches!(first, ServerEvent::Opened { .. }), "{:?}", lifecycle);
        }
        if let Some(pos) = lifecycle.iter().position(|e| matches!(e, ServerEvent::Closed { .. })) {
            prop_assert_eq!(pos, lifecycle.len() - 1);
        }
        world.now = now;
    }
}
