//! Wire round-trip and compatibility tests for the `session.v1` frames.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use session_proto::prost::Message;
use session_proto::v1::{
    Ack, ClientFrame, CloseCode, CloseSignal, Error, Event, Heartbeat, HeartbeatAck, Login,
    LoginOk, LoginRejected, Logout, Request, Response, Resume, ServerFrame, client_frame, response,
    server_frame,
};

// ---------------------------------------------------------------------------
// Strategies, one per message.
// ---------------------------------------------------------------------------

fn any_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn any_text() -> impl Strategy<Value = String> {
    // Any Unicode scalar values, including multi-byte ones.
    ".{0,16}"
}

fn any_properties() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(any_text(), any_text(), 0..4)
}

fn any_resume() -> impl Strategy<Value = Resume> {
    (any::<u64>(), any_bytes(), any::<u64>()).prop_map(
        |(session_id, resume_token, last_event_seq)| Resume {
            session_id,
            resume_token,
            last_event_seq,
        },
    )
}

fn any_login() -> impl Strategy<Value = Login> {
    (
        any::<u32>(),
        any_text(),
        any_bytes(),
        any_text(),
        any::<u32>(),
        // Half fresh logins, half resumes.
        option::of(any_resume()),
        any_properties(),
    )
        .prop_map(
            |(
                protocol_version,
                user_id,
                credential,
                device,
                requested_heartbeat_ms,
                resume,
                properties,
            )| Login {
                protocol_version,
                user_id,
                credential,
                device,
                requested_heartbeat_ms,
                resume,
                properties,
            },
        )
}

fn any_heartbeat() -> impl Strategy<Value = Heartbeat> {
    (any::<u64>(), any::<u64>()).prop_map(|(ack_event_seq, ack_request_id)| Heartbeat {
        ack_event_seq,
        ack_request_id,
    })
}

fn any_request() -> impl Strategy<Value = Request> {
    (any::<u64>(), any_bytes(), any::<u64>()).prop_map(|(request_id, body, ack_request_id)| {
        Request {
            request_id,
            body,
            ack_request_id,
        }
    })
}

fn any_ack() -> impl Strategy<Value = Ack> {
    (any::<u64>(), any::<u64>()).prop_map(|(event_seq, ack_request_id)| Ack {
        event_seq,
        ack_request_id,
    })
}

fn any_logout() -> impl Strategy<Value = Logout> {
    any_text().prop_map(|reason| Logout { reason })
}

fn any_login_ok() -> impl Strategy<Value = LoginOk> {
    (
        any::<u64>(),
        any_bytes(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(
                session_id,
                resume_token,
                heartbeat_ms,
                session_timeout_ms,
                resumed,
                next_event_seq,
                server_time_ms,
                max_pending_requests,
                max_unacked_events,
                max_unacked_bytes,
            )| LoginOk {
                session_id,
                resume_token,
                heartbeat_ms,
                session_timeout_ms,
                resumed,
                next_event_seq,
                server_time_ms,
                max_pending_requests,
                max_unacked_events,
                max_unacked_bytes,
            },
        )
}

// Enum fields take any i32: proto3 enums are open, so values this file does
// not name (newer peers, application codes) must survive as raw numbers.

fn any_login_rejected() -> impl Strategy<Value = LoginRejected> {
    (any::<i32>(), any_text()).prop_map(|(code, message)| LoginRejected { code, message })
}

fn any_heartbeat_ack() -> impl Strategy<Value = HeartbeatAck> {
    any::<u64>().prop_map(|server_time_ms| HeartbeatAck { server_time_ms })
}

fn any_error() -> impl Strategy<Value = Error> {
    (any::<i32>(), any_text()).prop_map(|(code, message)| Error { code, message })
}

fn any_response() -> impl Strategy<Value = Response> {
    let result = prop_oneof![
        1 => Just(None),
        4 => any_bytes().prop_map(|body| Some(response::Result::Body(body))),
        4 => any_error().prop_map(|error| Some(response::Result::Error(error))),
    ];
    (any::<u64>(), result).prop_map(|(request_id, result)| Response { request_id, result })
}

fn any_event() -> impl Strategy<Value = Event> {
    (any::<u64>(), any_bytes()).prop_map(|(seq, body)| Event { seq, body })
}

fn any_close_signal() -> impl Strategy<Value = CloseSignal> {
    // `retry_after_ms` has explicit presence: `Some(0)` must stay `Some(0)`.
    (any::<i32>(), any_text(), option::of(any::<u32>())).prop_map(
        |(code, reason, retry_after_ms)| CloseSignal {
            code,
            reason,
            retry_after_ms,
        },
    )
}

fn any_client_kind() -> impl Strategy<Value = client_frame::Kind> {
    prop_oneof![
        any_login().prop_map(client_frame::Kind::Login),
        any_heartbeat().prop_map(client_frame::Kind::Heartbeat),
        any_request().prop_map(client_frame::Kind::Request),
        any_ack().prop_map(client_frame::Kind::Ack),
        any_logout().prop_map(client_frame::Kind::Logout),
    ]
}

fn any_server_kind() -> impl Strategy<Value = server_frame::Kind> {
    prop_oneof![
        any_login_ok().prop_map(server_frame::Kind::LoginOk),
        any_login_rejected().prop_map(server_frame::Kind::LoginRejected),
        any_heartbeat_ack().prop_map(server_frame::Kind::HeartbeatAck),
        any_response().prop_map(server_frame::Kind::Response),
        any_event().prop_map(server_frame::Kind::Event),
        any_close_signal().prop_map(server_frame::Kind::CloseSignal),
    ]
}

/// Every client frame, including (rarely) the empty one with no kind.
fn any_client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        1 => Just(ClientFrame { kind: None }),
        20 => any_client_kind().prop_map(|kind| ClientFrame { kind: Some(kind) }),
    ]
}

/// Every server frame, including (rarely) the empty one with no kind.
fn any_server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        1 => Just(ServerFrame { kind: None }),
        20 => any_server_kind().prop_map(|kind| ServerFrame { kind: Some(kind) }),
    ]
}

// ---------------------------------------------------------------------------
// Hand-written wire bytes, so the compatibility tests do not lean on the
// encoder they check.
// ---------------------------------------------------------------------------

const VARINT: u64 = 0;
const LEN: u64 = 2;

fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u64) {
    put_varint(buf, (u64::from(field) << 3) | wire_type);
}

fn put_len_field(buf: &mut Vec<u8>, field: u32, payload: &[u8]) {
    put_key(buf, field, LEN);
    put_varint(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
}

/// Field 99 as a varint and field 100 as length-delimited bytes: numbers no
/// message of `session.v1` uses.
fn unknown_fields() -> Vec<u8> {
    let mut buf = Vec::new();
    put_key(&mut buf, 99, VARINT);
    put_varint(&mut buf, 0xDEAD_BEEF);
    put_len_field(&mut buf, 100, b"from a newer peer");
    buf
}

/// The tag of the frame's kind and the encoding of the message it carries.
fn client_kind_parts(kind: &client_frame::Kind) -> (u32, Vec<u8>) {
    match kind {
        client_frame::Kind::Login(m) => (1, m.encode_to_vec()),
        client_frame::Kind::Heartbeat(m) => (2, m.encode_to_vec()),
        client_frame::Kind::Request(m) => (3, m.encode_to_vec()),
        client_frame::Kind::Ack(m) => (4, m.encode_to_vec()),
        client_frame::Kind::Logout(m) => (5, m.encode_to_vec()),
    }
}

/// The tag of the frame's kind and the encoding of the message it carries.
fn server_kind_parts(kind: &server_frame::Kind) -> (u32, Vec<u8>) {
    match kind {
        server_frame::Kind::LoginOk(m) => (1, m.encode_to_vec()),
        server_frame::Kind::LoginRejected(m) => (2, m.encode_to_vec()),
        server_frame::Kind::HeartbeatAck(m) => (3, m.encode_to_vec()),
        server_frame::Kind::Response(m) => (4, m.encode_to_vec()),
        server_frame::Kind::Event(m) => (5, m.encode_to_vec()),
        server_frame::Kind::CloseSignal(m) => (6, m.encode_to_vec()),
    }
}

/// A frame whose kind is `tag` carrying `inner`, with unknown fields before
/// and after the known ones, both at the top level and inside the message.
fn with_unknown_fields(tag: u32, inner: &[u8]) -> Vec<u8> {
    let mut nested = unknown_fields();
    nested.extend_from_slice(inner);
    nested.extend_from_slice(&unknown_fields());

    let mut frame = unknown_fields();
    put_len_field(&mut frame, tag, &nested);
    frame.extend_from_slice(&unknown_fields());
    frame
}

/// The encoding of a heartbeat client frame.
fn heartbeat_frame(ack_event_seq: u64, ack_request_id: u64) -> Vec<u8> {
    ClientFrame {
        kind: Some(client_frame::Kind::Heartbeat(Heartbeat {
            ack_event_seq,
            ack_request_id,
        })),
    }
    .encode_to_vec()
}

/// A frame carrying only field 50, a kind no current peer knows.
fn unknown_kind_frame() -> Vec<u8> {
    let mut payload = Vec::new();
    put_key(&mut payload, 1, VARINT);
    put_varint(&mut payload, 7);
    put_len_field(&mut payload, 2, b"new");
    let mut frame = Vec::new();
    put_len_field(&mut frame, 50, &payload);
    frame
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #[test]
    fn client_frame_round_trips(frame in any_client_frame()) {
        let encoded = Bytes::from(frame.encode_to_vec());
        prop_assert_eq!(encoded.len(), frame.encoded_len());
        prop_assert_eq!(ClientFrame::decode(encoded)?, frame);
    }

    #[test]
    fn server_frame_round_trips(frame in any_server_frame()) {
        let encoded = Bytes::from(frame.encode_to_vec());
        prop_assert_eq!(encoded.len(), frame.encoded_len());
        prop_assert_eq!(ServerFrame::decode(encoded)?, frame);
    }

    #[test]
    fn client_frame_round_trips_length_delimited(frame in any_client_frame()) {
        let encoded = Bytes::from(frame.encode_length_delimited_to_vec());
        prop_assert_eq!(ClientFrame::decode_length_delimited(encoded)?, frame);
    }

    #[test]
    fn server_frame_round_trips_length_delimited(frame in any_server_frame()) {
        let encoded = Bytes::from(frame.encode_length_delimited_to_vec());
        prop_assert_eq!(ServerFrame::decode_length_delimited(encoded)?, frame);
    }

    /// Back-to-back delimited frames, as on a TCP stream, split where they were
    /// joined.
    #[test]
    fn delimited_frames_split_back_apart(
        client in vec(any_client_frame(), 0..6),
        server in vec(any_server_frame(), 0..6),
    ) {
        let mut stream = Vec::new();
        for frame in &client {
            frame.encode_length_delimited(&mut stream)?;
        }
        let mut rest = Bytes::from(stream);
        for frame in &client {
            prop_assert_eq!(&ClientFrame::decode_length_delimited(&mut rest)?, frame);
        }
        prop_assert!(rest.is_empty());

        let mut stream = Vec::new();
        for frame in &server {
            frame.encode_length_delimited(&mut stream)?;
        }
        let mut rest = Bytes::from(stream);
        for frame in &server {
            prop_assert_eq!(&ServerFrame::decode_length_delimited(&mut rest)?, frame);
        }
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn client_frame_tolerates_unknown_fields(kind in any_client_kind()) {
        let (tag, inner) = client_kind_parts(&kind);
        let decoded = ClientFrame::decode(with_unknown_fields(tag, &inner).as_slice())?;
        prop_assert_eq!(decoded, ClientFrame { kind: Some(kind) });
    }

    #[test]
    fn server_frame_tolerates_unknown_fields(kind in any_server_kind()) {
        let (tag, inner) = server_kind_parts(&kind);
        let decoded = ServerFrame::decode(with_unknown_fields(tag, &inner).as_slice())?;
        prop_assert_eq!(decoded, ServerFrame { kind: Some(kind) });
    }

    /// Acks below 2^7 are one-byte varints: the whole heartbeat frame is
    /// at most 6 bytes (outer key and length, then a key and a byte per
    /// non-zero field).
    #[test]
    fn heartbeat_frame_is_tiny(
        ack_event_seq in 0..(1u64 << 7),
        ack_request_id in 0..(1u64 << 7),
    ) {
        let frame = heartbeat_frame(ack_event_seq, ack_request_id);
        prop_assert!(frame.len() <= 6, "{} bytes: {:?}", frame.len(), frame);
    }

    /// Acks below 2^14 take at most two bytes each, so 8 bytes in all: 6 is
    /// only reachable when at most one of them needs a second byte.
    #[test]
    fn heartbeat_frame_with_two_byte_acks_is_at_most_8_bytes(
        ack_event_seq in 0..(1u64 << 14),
        ack_request_id in 0..(1u64 << 14),
    ) {
        let frame = heartbeat_frame(ack_event_seq, ack_request_id);
        prop_assert!(frame.len() <= 8, "{} bytes: {:?}", frame.len(), frame);
    }
}

// ---------------------------------------------------------------------------
// Fixed examples.
// ---------------------------------------------------------------------------

/// The frames of a fresh login and a resume, spelled out, so a failure names
/// a readable value rather than a shrunk one.
#[test]
fn login_with_and_without_resume_round_trips() {
    let fresh = Login {
        protocol_version: session_proto::PROTOCOL_VERSION,
        user_id: "ada".into(),
        credential: Bytes::from_static(b"secret"),
        device: "web".into(),
        requested_heartbeat_ms: 15_000,
        resume: None,
        properties: BTreeMap::from([
            ("client".into(), "demo/1.0".into()),
            ("locale".into(), "fr-CH".into()),
        ]),
    };
    let resume = Login {
        resume: Some(Resume {
            session_id: u64::MAX,
            resume_token: Bytes::from(vec![0xA5; 32]),
            last_event_seq: 41,
        }),
        ..fresh.clone()
    };
    for login in [fresh, resume] {
        let frame = ClientFrame {
            kind: Some(client_frame::Kind::Login(login)),
        };
        let decoded = ClientFrame::decode(frame.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, frame);
    }
}

#[test]
fn unknown_fields_in_a_resume_are_ignored() {
    let login = Login {
        user_id: "ada".into(),
        resume: Some(Resume {
            session_id: 9,
            resume_token: Bytes::from_static(b"token"),
            last_event_seq: 3,
        }),
        ..Login::default()
    };
    // Unknown fields two levels down: inside the Resume inside the Login.
    let mut resume = unknown_fields();
    resume.extend_from_slice(&login.resume.as_ref().unwrap().encode_to_vec());
    resume.extend_from_slice(&unknown_fields());
    let mut inner = Login {
        resume: None,
        ..login.clone()
    }
    .encode_to_vec();
    put_len_field(&mut inner, 6, &resume);

    let decoded = ClientFrame::decode(with_unknown_fields(1, &inner).as_slice()).unwrap();
    assert_eq!(
        decoded,
        ClientFrame {
            kind: Some(client_frame::Kind::Login(login))
        }
    );
}

/// A kind added by a newer peer decodes to no kind at all; the core reports
/// that as a protocol error.
#[test]
fn unknown_kind_decodes_as_none() {
    let bytes = unknown_kind_frame();
    assert_eq!(ClientFrame::decode(bytes.as_slice()).unwrap().kind, None);
    assert_eq!(ServerFrame::decode(bytes.as_slice()).unwrap().kind, None);
}

/// An unknown close code keeps its number on the wire; the typed view fails,
/// so the core can fall back to "unspecified".
#[test]
fn unknown_close_code_decodes_as_raw_i32() {
    for raw in [12, 4000, 4999, i32::MAX, -1] {
        let mut signal = Vec::new();
        put_key(&mut signal, 1, VARINT);
        // Negative enum values go on the wire as their 64-bit two's complement.
        put_varint(&mut signal, i64::from(raw) as u64);
        put_len_field(&mut signal, 2, b"bye");
        let mut bytes = Vec::new();
        put_len_field(&mut bytes, 6, &signal);

        let frame = ServerFrame::decode(bytes.as_slice()).unwrap();
        let Some(server_frame::Kind::CloseSignal(close)) = frame.kind else {
            panic!("expected a close signal, got {frame:?}");
        };
        assert_eq!(close.code, raw);
        assert_eq!(close.reason, "bye");
        assert_eq!(close.retry_after_ms, None);
        assert!(CloseCode::try_from(raw).is_err(), "{raw} is a known code");
        assert_eq!(close.code(), CloseCode::Unspecified);
    }
}

/// The exact sizes behind the heartbeat bounds above.
#[test]
fn heartbeat_frame_sizes() {
    assert_eq!(heartbeat_frame(0, 0).len(), 2);
    assert_eq!(heartbeat_frame(127, 127).len(), 6);
    assert_eq!(heartbeat_frame((1 << 14) - 1, 0).len(), 5);
    assert_eq!(heartbeat_frame((1 << 14) - 1, 127).len(), 7);
    assert_eq!(heartbeat_frame((1 << 14) - 1, (1 << 14) - 1).len(), 8);
}

#[test]
fn close_signal_keeps_retry_after_presence() {
    for retry_after_ms in [None, Some(0), Some(30_000)] {
        let frame = ServerFrame {
            kind: Some(server_frame::Kind::CloseSignal(CloseSignal {
                code: CloseCode::ServerShutdown as i32,
                reason: "restarting".into(),
                retry_after_ms,
            })),
        };
        let decoded = ServerFrame::decode(frame.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, frame);
    }
}
