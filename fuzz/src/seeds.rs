//! The seed corpora, written as typed scripts: each seed is a short, real
//! scenario (login, publish, resume, expiry, ...) so that fuzzing starts deep
//! in the state machines. `cargo run --example write_seeds` writes them to
//! `corpus/<target>/seed-<name>`; `tests/seeds.rs` checks they are current.

use bytes::Bytes;
use session_core::proto::prost::Message;
use session_core::proto::v1::{self, client_frame, server_frame};

use crate::client::{ClientOp, ClientSetup, ResultSpec, ServerFrameSpec};
use crate::decoder::{DecoderSetup, Limit};
use crate::server::{ClientFrameSpec, LoginSpec, ResumeSpec, ServerOp, ServerSetup, TokenPick};
use crate::wire::{Blob, Pick, Step, Text, TransportError, encode_script};

/// One seed input.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The fuzz target it is for.
    pub target: &'static str,
    /// Its name: the file is `corpus/<target>/seed-<name>`.
    pub name: &'static str,
    /// The input.
    pub bytes: Vec<u8>,
}

/// Every seed, for every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for (name, setup, stream) in decoder_inputs() {
        seeds.push(Seed {
            target: "frame_decoder",
            name,
            bytes: crate::decoder::encode_input(&setup, &stream),
        });
    }
    for (name, setup, ops) in server_scripts() {
        seeds.push(Seed {
            target: "server_session",
            name,
            bytes: encode_script(&setup, &ops),
        });
    }
    for (name, setup, ops) in client_scripts() {
        seeds.push(Seed {
            target: "client_session",
            name,
            bytes: encode_script(&setup, &ops),
        });
    }
    seeds
}

fn delimited<M: Message>(messages: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        message
            .encode_length_delimited(&mut out)
            .expect("a Vec grows");
    }
    out
}

fn client_frame(kind: client_frame::Kind) -> v1::ClientFrame {
    v1::ClientFrame { kind: Some(kind) }
}

fn server_frame(kind: server_frame::Kind) -> v1::ServerFrame {
    v1::ServerFrame { kind: Some(kind) }
}

fn wire_login() -> v1::ClientFrame {
    client_frame(client_frame::Kind::Login(v1::Login {
        protocol_version: session_core::proto::PROTOCOL_VERSION,
        user_id: "alice".into(),
        credential: Bytes::from_static(b"secret"),
        device: "web".into(),
        requested_heartbeat_ms: 1000,
        ..v1::Login::default()
    }))
}

fn wire_heartbeat(ack: u64) -> v1::ClientFrame {
    client_frame(client_frame::Kind::Heartbeat(v1::Heartbeat {
        ack_event_seq: ack,
        ack_request_id: 0,
    }))
}

fn wire_event(seq: u64, body: &'static [u8]) -> v1::ServerFrame {
    server_frame(server_frame::Kind::Event(v1::Event {
        seq,
        body: Bytes::from_static(body),
    }))
}

fn wire_login_ok() -> v1::ServerFrame {
    server_frame(server_frame::Kind::LoginOk(v1::LoginOk {
        session_id: 42,
        resume_token: Bytes::from_static(&[7; 32]),
        heartbeat_ms: 1000,
        session_timeout_ms: 3000,
        resumed: false,
        next_event_seq: 1,
        server_time_ms: 1_700_000_000_000,
        max_pending_requests: 4,
        max_unacked_events: 4,
        max_unacked_bytes: 4096,
    }))
}

/// Seeds of `frame_decoder`: real frames, split in various ways.
pub fn decoder_inputs() -> Vec<(&'static str, DecoderSetup, Vec<u8>)> {
    let whole = |limit| DecoderSetup {
        limit,
        change: None,
        chunks: [0; 4],
    };
    let mut mixed = delimited(&[wire_login(), wire_heartbeat(1), wire_heartbeat(300)]);
    mixed.extend(delimited(&[wire_login_ok(), wire_event(1, b"hello")]));
    vec![
        (
            "client_frames",
            whole(Limit::PreLogin),
            delimited(&[wire_login(), wire_heartbeat(70_000)]),
        ),
        (
            "split_and_raised",
            DecoderSetup {
                limit: Limit::Tiny(64),
                change: Some((1, Limit::Default)),
                chunks: [1, 3, 7, 0],
            },
            mixed,
        ),
        (
            "too_large",
            whole(Limit::Tiny(16)),
            delimited(&[wire_event(1, &[b'x'; 100])]),
        ),
        ("bad_prefix", whole(Limit::Default), vec![0x80; 11]),
        ("zero_length", whole(Limit::Small(0)), vec![0, 0, 0]),
        // Valid but not minimal prefixes: 0 in two bytes, 5 in two bytes.
        (
            "long_prefixes",
            DecoderSetup {
                limit: Limit::Small(300),
                change: None,
                chunks: [2, 1, 0, 0],
            },
            vec![0x80, 0x00, 0x85, 0x00, 1, 2, 3, 4, 5],
        ),
    ]
}

fn server_setup() -> ServerSetup {
    ServerSetup {
        seed: 7,
        heartbeat_ms: 1000,
        heartbeat_bounds_ms: (100, 60_000),
        timeout_heartbeats: 3,
        login_timeout_ms: 10_000,
        pre_login_max_frame_len: 4096,
        max_frame_len: 65_535,
        max_unacked_events: 8,
        max_unacked_bytes: 1024,
        max_pending_requests: 4,
        max_frames_per_second: 0,
        wall_clock_ms: Some(1_700_000_000_000),
        follow_close: true,
    }
}

fn login() -> ServerOp {
    ServerOp::Frame(ClientFrameSpec::Login(LoginSpec {
        version: None,
        user_id: Text::of("alice"),
        credential: Blob::of(b"secret"),
        device: Text::of("web"),
        requested_heartbeat_ms: 1000,
        resume: None,
        property: Some((Text::of("lang"), Text::of("en"))),
    }))
}

fn publish(body: &str) -> ServerOp {
    ServerOp::Publish(Blob::of(body.as_bytes()))
}

fn heartbeat() -> ServerOp {
    ServerOp::Frame(ClientFrameSpec::Heartbeat {
        ack_event_seq: Pick::Near(0),
        ack_request_id: Pick::Near(0),
    })
}

fn request(body: &str) -> ServerOp {
    ServerOp::Frame(ClientFrameSpec::Request {
        request_id: Pick::Near(1),
        body: Blob::of(body.as_bytes()),
        ack_request_id: Pick::Near(0),
    })
}

fn respond(id: i8, body: &str) -> ServerOp {
    ServerOp::Respond {
        id: Pick::Near(id),
        error: None,
        body: Blob::of(body.as_bytes()),
    }
}

fn resume(token: TokenPick, seq: i8) -> ServerOp {
    ServerOp::Resume(ResumeSpec {
        session_id: None,
        token,
        last_event_seq: Pick::Near(seq),
    })
}

/// Seeds of `server_session`.
pub fn server_scripts() -> Vec<(&'static str, ServerSetup, Vec<ServerOp>)> {
    let mut no_follow = server_setup();
    no_follow.follow_close = false;
    let mut rate_limited = server_setup();
    rate_limited.max_frames_per_second = 5;
    vec![
        (
            "open_publish_request_logout",
            server_setup(),
            vec![
                login(),
                ServerOp::Accept(None),
                publish("one"),
                publish("two"),
                heartbeat(),
                request("ask"),
                respond(0, "answer"),
                ServerOp::Frame(ClientFrameSpec::Ack {
                    event_seq: Pick::Near(0),
                    ack_request_id: Pick::Near(0),
                }),
                ServerOp::Time(Step::Millis(500)),
                ServerOp::Frame(ClientFrameSpec::Logout(Text::of("bye"))),
            ],
        ),
        (
            "detach_resume_expire",
            server_setup(),
            vec![
                login(),
                ServerOp::Accept(None),
                publish("a"),
                publish("b"),
                publish("c"),
                ServerOp::Frame(ClientFrameSpec::Ack {
                    event_seq: Pick::Near(-2),
                    ack_request_id: Pick::Near(0),
                }),
                request("pending"),
                ServerOp::Disconnect,
                publish("d"),
                respond(0, "late"),
                resume(TokenPick::Current, -1),
                heartbeat(),
                resume(TokenPick::Previous, 0),
                ServerOp::Disconnect,
                ServerOp::Time(Step::Seconds(10)),
            ],
        ),
        (
            "half_open_resume_stream",
            no_follow,
            vec![
                ServerOp::Stream(Blob::of(&delimited(&[wire_login()]))),
                ServerOp::Accept(Some(250)),
                publish("x"),
                resume(TokenPick::Current, 0),
                publish("y"),
                ServerOp::Stream(Blob::of(&delimited(&[wire_heartbeat(2)])[..2])),
                ServerOp::Stream(Blob::of(&delimited(&[wire_heartbeat(2)])[2..])),
                ServerOp::Close {
                    code: 3,
                    reason: Text::of("kicked"),
                    retry_after_ms: Some(5000),
                },
                ServerOp::Disconnect,
            ],
        ),
        (
            "rejections_and_errors",
            server_setup(),
            vec![
                ServerOp::Frame(ClientFrameSpec::Login(LoginSpec {
                    version: Some(9),
                    user_id: Text::of("bob"),
                    credential: Blob::default(),
                    device: Text::default(),
                    requested_heartbeat_ms: 0,
                    resume: None,
                    property: None,
                })),
                ServerOp::Raw(Blob::of(&[0x0a, 0xff])),
                ServerOp::ProtocolError(TransportError::FrameTooLarge(1 << 20)),
                ServerOp::Reject {
                    code: 1,
                    message: Text::of("no"),
                },
                ServerOp::Time(Step::ToDeadline),
            ],
        ),
        (
            "slow_consumer",
            server_setup(),
            vec![
                login(),
                ServerOp::Accept(None),
                publish("1"),
                publish("2"),
                publish("3"),
                publish("4"),
                publish("5"),
                publish("6"),
                publish("7"),
                publish("8"),
                publish("9"),
            ],
        ),
        (
            "request_window_and_resend",
            server_setup(),
            vec![
                login(),
                ServerOp::Accept(None),
                request("r1"),
                request("r2"),
                respond(-1, "a1"),
                ServerOp::Respond {
                    id: Pick::Near(0),
                    error: Some((1000, Text::of("nope"))),
                    body: Blob::default(),
                },
                ServerOp::Disconnect,
                resume(TokenPick::Current, 0),
                ServerOp::Frame(ClientFrameSpec::Request {
                    request_id: Pick::Near(-1),
                    body: Blob::of(b"r1"),
                    ack_request_id: Pick::Raw(0),
                }),
                request("r3"),
                request("r4"),
                request("r5"),
                request("r6"),
            ],
        ),
        (
            "burst_of_resends_then_ack",
            server_setup(),
            vec![
                login(),
                ServerOp::Accept(None),
                request("once"),
                respond(0, "answer"),
                ServerOp::Burst {
                    times: 60,
                    frame: ClientFrameSpec::Request {
                        request_id: Pick::Near(0),
                        body: Blob::of(b"once"),
                        ack_request_id: Pick::Raw(0),
                    },
                    then: Some(ClientFrameSpec::Ack {
                        event_seq: Pick::Near(0),
                        ack_request_id: Pick::Near(0),
                    }),
                },
                ServerOp::Burst {
                    times: 6,
                    frame: ClientFrameSpec::Request {
                        request_id: Pick::Near(1),
                        body: Blob::of(b"many"),
                        ack_request_id: Pick::Near(0),
                    },
                    then: None,
                },
            ],
        ),
        (
            "resume_with_the_presented_token",
            server_setup(),
            vec![
                login(),
                ServerOp::Accept(None),
                publish("a"),
                resume(TokenPick::Current, 0),
                // The new LoginOk was lost: the client still has the old token.
                resume(TokenPick::Previous, 0),
                heartbeat(),
                // Now it has the new one, and the old one is dead.
                resume(TokenPick::Previous, 0),
                resume(TokenPick::Current, 0),
            ],
        ),
        (
            "frame_rate_limit",
            rate_limited,
            vec![
                login(),
                ServerOp::Accept(None),
                heartbeat(),
                ServerOp::Time(Step::Millis(1000)),
                ServerOp::Burst {
                    times: 10,
                    frame: ClientFrameSpec::Heartbeat {
                        ack_event_seq: Pick::Near(0),
                        ack_request_id: Pick::Near(0),
                    },
                    then: None,
                },
            ],
        ),
        (
            "login_timeout",
            server_setup(),
            vec![
                login(),
                ServerOp::Time(Step::ToDeadline),
                ServerOp::Accept(None),
            ],
        ),
    ]
}

fn client_setup() -> ClientSetup {
    ClientSetup {
        requested_heartbeat_ms: None,
        login_timeout_ms: 10_000,
        request_timeout_ms: 30_000,
        silence_heartbeats: 2,
        max_frame_len: 65_535,
        follow_close: true,
        ack_delay_ms: 1000,
    }
}

fn client_login() -> ClientOp {
    ClientOp::Login(Text::of("alice"), Blob::of(b"secret"), Text::of("web"))
}

fn login_ok(resumed: bool) -> ClientOp {
    ClientOp::Frame(ServerFrameSpec::LoginOk {
        session_id: if resumed { None } else { Some(42) },
        resume_token: Blob::of(&[7; 32]),
        heartbeat_ms: 1000,
        session_timeout_ms: 3000,
        resumed,
        next_event_seq: Pick::Near(1),
        server_time_ms: 1_700_000_000_000,
        max_pending_requests: 4,
        max_unacked_events: 4,
        max_unacked_bytes: 4096,
    })
}

fn login_ok_resumed_only() -> ServerFrameSpec {
    ServerFrameSpec::LoginOk {
        session_id: None,
        resume_token: Blob::of(&[8; 32]),
        heartbeat_ms: 1000,
        session_timeout_ms: 3000,
        resumed: true,
        next_event_seq: Pick::Near(1),
        server_time_ms: 0,
        max_pending_requests: 1000,
        max_unacked_events: 1024,
        max_unacked_bytes: 4 << 20,
    }
}

fn event(seq: i8, body: &str) -> ClientOp {
    ClientOp::Frame(ServerFrameSpec::Event {
        seq: Pick::Near(seq),
        body: Blob::of(body.as_bytes()),
    })
}

fn response(id: i8, result: ResultSpec) -> ClientOp {
    ClientOp::Frame(ServerFrameSpec::Response {
        request_id: Pick::Near(id),
        result,
    })
}

/// Seeds of `client_session`.
pub fn client_scripts() -> Vec<(&'static str, ClientSetup, Vec<ClientOp>)> {
    let mut stream = delimited(&[wire_login_ok(), wire_event(1, b"one")]);
    let split = stream.len() - 3;
    let tail = stream.split_off(split);
    vec![
        (
            "online_events_request_logout",
            client_setup(),
            vec![
                ClientOp::Connect,
                client_login(),
                login_ok(false),
                event(1, "one"),
                event(1, "two"),
                event(0, "two"),
                ClientOp::Ack(Pick::Near(0)),
                ClientOp::Request(Blob::of(b"ask")),
                response(0, ResultSpec::Body(Blob::of(b"answer"))),
                ClientOp::Time(Step::ToDeadline),
                ClientOp::Frame(ServerFrameSpec::HeartbeatAck(1_700_000_001_000)),
                ClientOp::Logout(Text::of("bye")),
            ],
        ),
        (
            "suspend_resume",
            client_setup(),
            vec![
                ClientOp::Connect,
                client_login(),
                login_ok(false),
                event(1, "one"),
                event(1, "two"),
                ClientOp::Ack(Pick::Near(-1)),
                ClientOp::Request(Blob::of(b"pending")),
                ClientOp::Disconnect,
                ClientOp::Request(Blob::of(b"while suspended")),
                ClientOp::Connect,
                ClientOp::Resume,
                login_ok(true),
                event(0, "two"),
                event(1, "three"),
                response(0, ResultSpec::Error(1000, Text::of("no"))),
                response(0, ResultSpec::Missing),
            ],
        ),
        (
            "silence_then_expiry",
            client_setup(),
            vec![
                ClientOp::Connect,
                client_login(),
                login_ok(false),
                ClientOp::Time(Step::ToDeadline),
                ClientOp::Time(Step::ToDeadline),
                ClientOp::Time(Step::ToDeadline),
                ClientOp::Time(Step::ToDeadline),
                ClientOp::Time(Step::Spurious),
            ],
        ),
        (
            "rejected_then_closed",
            client_setup(),
            vec![
                ClientOp::Connect,
                client_login(),
                ClientOp::Frame(ServerFrameSpec::LoginRejected {
                    code: 1,
                    message: Text::of("bad credentials"),
                }),
                ClientOp::Connect,
                client_login(),
                login_ok(false),
                ClientOp::Frame(ServerFrameSpec::CloseSignal {
                    code: 3,
                    reason: Text::of("kicked"),
                    retry_after_ms: Some(1000),
                }),
            ],
        ),
        (
            "event_gap",
            client_setup(),
            vec![
                ClientOp::Connect,
                client_login(),
                login_ok(false),
                event(2, "skipped one"),
                ClientOp::Frame(ServerFrameSpec::HeartbeatAck(0)),
            ],
        ),
        (
            "stream_and_garbage",
            client_setup(),
            vec![
                ClientOp::Connect,
                client_login(),
                ClientOp::Stream(Blob::of(&stream)),
                ClientOp::Stream(Blob::of(&tail)),
                ClientOp::Raw(Blob::of(&[0x22, 0x05, 0x08])),
                ClientOp::ProtocolError(TransportError::BadLengthPrefix),
            ],
        ),
        (
            "request_window_and_timeout",
            client_setup(),
            vec![
                ClientOp::Connect,
                client_login(),
                login_ok(false),
                ClientOp::Request(Blob::of(b"1")),
                ClientOp::Request(Blob::of(b"2")),
                ClientOp::Request(Blob::of(b"3")),
                ClientOp::Request(Blob::of(b"4")),
                ClientOp::Request(Blob::of(b"5")),
                ClientOp::Time(Step::Seconds(31)),
                response(-1, ResultSpec::Body(Blob::of(b"late"))),
            ],
        ),
        (
            "resume_answered_in_one_burst",
            client_setup(),
            vec![
                ClientOp::Connect,
                client_login(),
                ClientOp::Frame(ServerFrameSpec::LoginOk {
                    session_id: Some(42),
                    resume_token: Blob::of(&[7; 32]),
                    heartbeat_ms: 1000,
                    session_timeout_ms: 3000,
                    resumed: false,
                    next_event_seq: Pick::Near(1),
                    server_time_ms: 0,
                    max_pending_requests: 1000,
                    // An older server: no window announced.
                    max_unacked_events: 0,
                    max_unacked_bytes: 0,
                }),
                ClientOp::Disconnect,
                ClientOp::Requests(60, Blob::of(b"queued")),
                ClientOp::Connect,
                ClientOp::Resume,
                ClientOp::Burst {
                    first: Some(login_ok_resumed_only()),
                    times: 60,
                    frame: ServerFrameSpec::Response {
                        request_id: Pick::Near(0),
                        result: ResultSpec::Body(Blob::of(b"done")),
                    },
                },
                ClientOp::Burst {
                    first: None,
                    times: 3,
                    frame: ServerFrameSpec::Event {
                        seq: Pick::Near(1),
                        body: Blob::of(b"burst"),
                    },
                },
            ],
        ),
        (
            "resume_rejected",
            client_setup(),
            vec![
                ClientOp::Connect,
                client_login(),
                login_ok(false),
                event(1, "one"),
                ClientOp::Disconnect,
                ClientOp::Connect,
                ClientOp::Resume,
                ClientOp::Frame(ServerFrameSpec::LoginRejected {
                    code: 4,
                    message: Text::of("session not found"),
                }),
            ],
        ),
    ]
}
