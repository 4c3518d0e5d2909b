//! Memory: an open session between exchanges keeps nothing on the heap,
//! whatever it went through (`ServerSession::is_idle`, `docs/core.md`).

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use session_core::{Framing, ResumeRequest, ServerConfig, ServerEvent, ServerSession, SplitMix64};
use session_proto::PROTOCOL_VERSION;
use session_proto::prost::Message;
use session_proto::v1::{self, client_frame, server_frame};

fn frame(kind: client_frame::Kind) -> Bytes {
    v1::ClientFrame { kind: Some(kind) }.encode_to_vec().into()
}

/// Sends everything queued (keeping the resume token of any `LoginOk` in
/// `token`) and takes every event.
fn drain(session: &mut ServerSession, token: &mut Bytes) -> Vec<ServerEvent> {
    let mut buf = BytesMut::new();
    while session.poll_transmit(&mut buf, Framing::Bare).is_some() {
        let frame = v1::ServerFrame::decode(buf.split().freeze()).unwrap();
        if let Some(server_frame::Kind::LoginOk(ok)) = frame.kind {
            *token = ok.resume_token;
        }
    }
    std::iter::from_fn(|| session.poll_event()).collect()
}

/// The memory budget of `docs/core.md`: an idle open session keeps
/// nothing on the heap, whatever it went through.
#[test]
fn an_idle_session_holds_no_backlog_and_no_rare_state() {
    // Reason: a test needs one real instant to count virtual time from.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut entropy = SplitMix64::new(7);
    let mut session = ServerSession::new(now, Arc::new(ServerConfig::default()));
    let mut token = Bytes::new();
    let login = v1::Login {
        protocol_version: PROTOCOL_VERSION,
        user_id: "ada".into(),
        ..Default::default()
    };
    session
        .handle_frame(now, frame(client_frame::Kind::Login(login)))
        .unwrap();
    assert!(matches!(
        session.poll_event(),
        Some(ServerEvent::LoginRequested(_))
    ));
    session.accept_login(now, 0, &mut entropy).unwrap();
    assert!(!session.is_idle(), "Opened waits for the application");
    drain(&mut session, &mut token);
    assert!(session.is_idle());

    // An event, delivered and acknowledged.
    session.publish(Bytes::from_static(b"news")).unwrap();
    drain(&mut session, &mut token);
    assert!(!session.is_idle(), "the event waits for its ack");
    let ack = v1::Ack {
        event_seq: 1,
        ..Default::default()
    };
    session
        .handle_frame(now, frame(client_frame::Kind::Ack(ack)))
        .unwrap();
    assert!(session.is_idle());

    // A request, answered, and the answer acknowledged.
    let request = v1::Request {
        request_id: 1,
        body: Bytes::from_static(b"q"),
        ..Default::default()
    };
    session
        .handle_frame(now, frame(client_frame::Kind::Request(request)))
        .unwrap();
    assert!(matches!(
        drain(&mut session, &mut token)[..],
        [ServerEvent::Request { id: 1, .. }]
    ));
    session.respond(1, Ok(Bytes::from_static(b"a"))).unwrap();
    drain(&mut session, &mut token);
    assert!(!session.is_idle(), "the response waits for its ack");
    let heartbeat = v1::Heartbeat {
        ack_event_seq: 1,
        ack_request_id: 1,
    };
    session
        .handle_frame(now, frame(client_frame::Kind::Heartbeat(heartbeat)))
        .unwrap();
    drain(&mut session, &mut token);
    assert!(session.is_idle());

    // A resume: the presented token stays valid until the client's
    // next frame shows it holds the new one.
    session.handle_disconnect(now);
    drain(&mut session, &mut token);
    let resume = ResumeRequest {
        session_id: session.session_id().unwrap(),
        resume_token: token.clone(),
        last_event_seq: 1,
    };
    session.resume(now, &resume, &mut entropy).unwrap();
    drain(&mut session, &mut token);
    assert!(!session.is_idle(), "the previous token is kept");
    session
        .handle_frame(now, frame(client_frame::Kind::Heartbeat(heartbeat)))
        .unwrap();
    drain(&mut session, &mut token);
    assert!(session.is_idle());
}
