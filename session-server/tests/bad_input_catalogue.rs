//! The bad-input catalogue: one table of misbehaving peers, run over TCP and
//! WebSocket. Each row asserts what the peer gets (the close code, the
//! rejection, or a dropped connection) and that a bystander session next to
//! it is untouched.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{
    Ending, RawPeer, frame, login_frame, login_frame_with, resume_frame, varint, ws_header,
};
use common::{Recorder, SOON, TestClient, fast_options, start, url};
use session_core::proto::v1::{self, client_frame, server_frame};
use session_core::{
    ClientEvent, CloseCode, CloseReason, PublishError, RejectCode, ServerState, SessionId,
};
use session_server::{LifecycleKind, Rate, SendError, Server, ServerHandle, ServerOptions};
use tokio::io::AsyncWriteExt;

const LOGIN_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_UNACKED_EVENTS: u32 = 16;
const MAX_FRAME_LEN: usize = 64 * 1024;
const MAX_PENDING_REQUESTS: u32 = 8;
const FAILED_LOGIN_BURST: u32 = 3;
const MAX_FRAMES_PER_SECOND: u32 = 1_000;

/// Small limits, so that every row is quick. Raw peers ask for no heartbeat
/// and get 10 s (a 20 s window), so they never expire during a row.
fn options() -> ServerOptions {
    let mut options = fast_options();
    options.core.heartbeat = Duration::from_secs(10);
    options.core.login_timeout = LOGIN_TIMEOUT;
    options.core.max_unacked_events = MAX_UNACKED_EVENTS;
    options.core.max_frame_len = MAX_FRAME_LEN;
    options.core.max_pending_requests = MAX_PENDING_REQUESTS;
    options.core.max_frames_per_second = MAX_FRAMES_PER_SECOND;
    options.failed_login_rate = Rate {
        burst: FAILED_LOGIN_BURST,
        per_second: 0.01,
    };
    options.write_timeout = Duration::from_secs(1);
    options
}

/// What happened to the misbehaving peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// It read a close signal with this code, then the connection ended.
    Closed(CloseCode),
    /// It read `LoginRejected` with this code, then the connection ended.
    Rejected(RejectCode),
    /// The connection ended with nothing written to it.
    Dropped,
    /// The server went on serving it.
    Served,
    /// The server closed its session with this code (a peer that does not
    /// read cannot be relied on to see the signal).
    SessionClosed(CloseCode),
    /// Its session detached, and a resume brought it back.
    DetachedThenResumed,
    /// Of racing resumes, this many connections hold the session at the
    /// end (answer heartbeats).
    Raced { holders: usize },
}

impl From<Ending> for Outcome {
    fn from(ending: Ending) -> Self {
        match ending {
            Ending::CloseSignal(code) => Self::Closed(code),
            Ending::Rejected(code) => Self::Rejected(code),
            Ending::Silent => Self::Dropped,
        }
    }
}

/// What the bystander must have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bystander {
    /// Nothing: no disconnection, no close; it still gets answers.
    Untouched,
    /// The same end as everyone: `SERVER_SHUTDOWN`.
    ShutDown,
}

/// What a scenario works with.
struct Ctx {
    kind: &'static str,
    /// `None` once a scenario shut the server down.
    server: Option<Server>,
    handle: ServerHandle,
    addr: SocketAddr,
}

impl Ctx {
    async fn raw(&self) -> RawPeer {
        RawPeer::connect(self.addr, self.kind).await
    }

    /// A raw peer logged in as `user`.
    async fn logged_in(&self, user: &str) -> (RawPeer, SessionId, Bytes) {
        let mut peer = self.raw().await;
        let grant = peer.login(user, "raw").await;
        (peer, grant.session_id, grant.token)
    }

    /// Waits until `session` is in `state` (`None`: gone).
    async fn wait_state(&self, session: SessionId, state: Option<ServerState>) {
        let deadline = Instant::now() + SOON;
        while self.handle.state(session) != state {
            assert!(
                Instant::now() < deadline,
                "session {session} never reached {state:?}: {:?}",
                self.handle.state(session)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

type Scenario = for<'a> fn(&'a mut Ctx) -> Pin<Box<dyn Future<Output = Outcome> + 'a>>;

macro_rules! scenario {
    ($f:ident) => {{
        fn boxed(ctx: &mut Ctx) -> Pin<Box<dyn Future<Output = Outcome> + '_>> {
            Box::pin($f(ctx))
        }
        boxed as Scenario
    }};
}

/// One row of the catalogue.
struct Row {
    name: &'static str,
    /// The outcome over TCP and over WebSocket; `None`: not applicable.
    tcp: Option<Outcome>,
    ws: Option<Outcome>,
    bystander: Bystander,
    scenario: Scenario,
}

fn row(name: &'static str, expected: Outcome, scenario: Scenario) -> Row {
    Row {
        name,
        tcp: Some(expected),
        ws: Some(expected),
        bystander: Bystander::Untouched,
        scenario,
    }
}

fn catalogue() -> Vec<Row> {
    use CloseCode::{LoginTimeout, PolicyViolation, ProtocolError, ServerShutdown, SlowConsumer};
    use Outcome::*;
    vec![
        row(
            "length-prefix bomb before login",
            Closed(PolicyViolation),
            scenario!(bomb_before_login),
        ),
        row(
            "length-prefix bomb after login",
            Closed(PolicyViolation),
            scenario!(bomb_after_login),
        ),
        row(
            "oversized frame before login",
            Closed(PolicyViolation),
            scenario!(oversized_before_login),
        ),
        row(
            "oversized frame after login",
            Closed(PolicyViolation),
            scenario!(oversized_after_login),
        ),
        row(
            "malformed protobuf before login",
            Closed(ProtocolError),
            scenario!(malformed_before_login),
        ),
        row(
            "malformed protobuf after login",
            Closed(ProtocolError),
            scenario!(malformed_after_login),
        ),
        row(
            "unknown frame kind",
            Closed(ProtocolError),
            scenario!(unknown_kind),
        ),
        Row {
            tcp: None,
            ..row(
                "text message",
                Closed(ProtocolError),
                scenario!(text_message),
            )
        },
        row(
            "frames before login",
            Closed(ProtocolError),
            scenario!(frame_before_login),
        ),
        row(
            "second login on an open session",
            Closed(ProtocolError),
            scenario!(second_login),
        ),
        row(
            "acknowledgement of events never sent",
            Closed(ProtocolError),
            scenario!(ack_out_of_range),
        ),
        row(
            "request ids out of order",
            Closed(ProtocolError),
            scenario!(request_out_of_order),
        ),
        row(
            "requests beyond the window",
            Closed(PolicyViolation),
            scenario!(requests_beyond_window),
        ),
        row(
            "heartbeat flood",
            Closed(PolicyViolation),
            scenario!(heartbeat_flood),
        ),
        row(
            "login brute force",
            Rejected(RejectCode::RateLimited),
            scenario!(login_brute_force),
        ),
        // Failed resumes spend the address's failed-login tokens, and once
        // they are spent resumes are refused like logins.
        row(
            "resume token brute force",
            Rejected(RejectCode::RateLimited),
            scenario!(resume_brute_force),
        ),
        Row {
            // Plain TCP has no handshake: a peer stalled inside its first
            // frame is a stalled login. A WebSocket upgrade that never
            // completes cannot carry a close signal: the connection is
            // dropped at the login deadline.
            tcp: Some(Closed(LoginTimeout)),
            ws: Some(Dropped),
            ..row("stalled handshake", Dropped, scenario!(stalled_handshake))
        },
        row(
            "stalled login",
            Closed(LoginTimeout),
            scenario!(stalled_login),
        ),
        row(
            "resume with a wrong token",
            Rejected(RejectCode::SessionNotFound),
            scenario!(resume_wrong_token),
        ),
        row(
            "resume with a stale token",
            Rejected(RejectCode::SessionNotFound),
            scenario!(resume_stale_token),
        ),
        row(
            "resume with a foreign token",
            Rejected(RejectCode::SessionNotFound),
            scenario!(resume_foreign_token),
        ),
        row(
            "two resumes racing",
            Raced { holders: 1 },
            scenario!(resumes_racing),
        ),
        row(
            "slow consumer (stops reading)",
            SessionClosed(SlowConsumer),
            scenario!(slow_consumer),
        ),
        row(
            "abrupt reset mid-request",
            DetachedThenResumed,
            scenario!(reset_mid_request),
        ),
        Row {
            bystander: Bystander::ShutDown,
            ..row(
                "shutdown with events in flight",
                Closed(ServerShutdown),
                scenario!(shutdown_with_events_in_flight),
            )
        },
    ]
}

// ---- the scenarios ----

async fn bomb_before_login(ctx: &mut Ctx) -> Outcome {
    let mut peer = ctx.raw().await;
    let bomb = if peer.is_ws() {
        // A binary frame header declaring 1 TiB.
        ws_header(0x2, 1 << 40)
    } else {
        // A varint prefix declaring 4 GiB.
        vec![0xff, 0xff, 0xff, 0xff, 0x0f]
    };
    peer.send_bytes(&bomb).await;
    peer.ending().await.0.into()
}

async fn bomb_after_login(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    let bomb = if peer.is_ws() {
        ws_header(0x2, 1 << 40)
    } else {
        vec![0xff, 0xff, 0xff, 0xff, 0x0f]
    };
    peer.send_bytes(&bomb).await;
    let outcome = peer.ending().await.0.into();
    ctx.wait_state(id, None).await;
    outcome
}

async fn oversized_before_login(ctx: &mut Ctx) -> Outcome {
    let mut peer = ctx.raw().await;
    peer.send_frame(&[0u8; 5000]).await;
    peer.ending().await.0.into()
}

async fn oversized_after_login(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    // Under the limit: served.
    let fine = frame(client_frame::Kind::Request(v1::Request {
        request_id: 1,
        body: Bytes::from(vec![b'x'; MAX_FRAME_LEN - 100]),
        ack_request_id: 0,
    }));
    assert!(peer.send_frame(&fine).await);
    assert!(peer.heartbeat(0).await, "a frame under the limit is fine");
    peer.send_frame(&vec![0u8; MAX_FRAME_LEN + 1]).await;
    let outcome = peer.ending().await.0.into();
    ctx.wait_state(id, None).await;
    outcome
}

async fn malformed_before_login(ctx: &mut Ctx) -> Outcome {
    let mut peer = ctx.raw().await;
    // Field 1 (login), length-delimited, declaring more bytes than follow.
    peer.send_frame(&[0x0a, 0xff, 0xff, 0xff]).await;
    peer.ending().await.0.into()
}

async fn malformed_after_login(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    peer.send_frame(&[0x12, 0x05, 0x08]).await;
    let outcome = peer.ending().await.0.into();
    ctx.wait_state(id, None).await;
    outcome
}

async fn unknown_kind(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    // Field 99, a varint: a frame kind from some future version.
    peer.send_frame(&[0x98, 0x06, 0x01]).await;
    let outcome = peer.ending().await.0.into();
    ctx.wait_state(id, None).await;
    outcome
}

async fn text_message(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    let mut text = ws_header(0x1, 5);
    text.extend_from_slice(b"hello");
    peer.send_bytes(&text).await;
    let outcome = peer.ending().await.0.into();
    ctx.wait_state(id, None).await;
    outcome
}

async fn frame_before_login(ctx: &mut Ctx) -> Outcome {
    let mut peer = ctx.raw().await;
    let heartbeat = frame(client_frame::Kind::Heartbeat(v1::Heartbeat::default()));
    peer.send_frame(&heartbeat).await;
    peer.ending().await.0.into()
}

async fn second_login(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    peer.send_frame(&login_frame("alice", "raw", None)).await;
    let outcome = peer.ending().await.0.into();
    ctx.wait_state(id, None).await;
    outcome
}

async fn ack_out_of_range(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    ctx.handle.publish(id, "one".into()).unwrap();
    let ack = frame(client_frame::Kind::Ack(v1::Ack {
        event_seq: 5,
        ack_request_id: 0,
    }));
    peer.send_frame(&ack).await;
    let outcome = peer.ending().await.0.into();
    ctx.wait_state(id, None).await;
    outcome
}

fn request(id: u64, body: &'static str) -> Bytes {
    frame(client_frame::Kind::Request(v1::Request {
        request_id: id,
        body: Bytes::from_static(body.as_bytes()),
        ack_request_id: 0,
    }))
}

async fn request_out_of_order(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    peer.send_frame(&request(5, "skips 1 to 4")).await;
    let outcome = peer.ending().await.0.into();
    ctx.wait_state(id, None).await;
    outcome
}

async fn requests_beyond_window(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    // Never acknowledging a response: the window fills up.
    for n in 1..=u64::from(MAX_PENDING_REQUESTS) + 1 {
        peer.send_frame(&request(n, "more")).await;
    }
    let (ending, frames) = peer.ending().await;
    let answered = frames
        .iter()
        .filter(|f| matches!(f, server_frame::Kind::Response(_)))
        .count();
    assert!(
        answered <= MAX_PENDING_REQUESTS as usize,
        "{answered} answers, over the window"
    );
    ctx.wait_state(id, None).await;
    ending.into()
}

async fn heartbeat_flood(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, _) = ctx.logged_in("alice").await;
    let heartbeat = peer.wire(&frame(client_frame::Kind::Heartbeat(
        v1::Heartbeat::default(),
    )));
    let batch: Vec<u8> = heartbeat
        .iter()
        .copied()
        .cycle()
        .take(heartbeat.len() * 1000)
        .collect();
    // 20,000 heartbeats as fast as the socket takes them, far above the
    // frame-rate limit; the answers are read meanwhile. The server closes
    // the session once the limit is passed (later writes may fail).
    let mut writer = peer.writer();
    let flood = async move {
        for _ in 0..20 {
            if writer.write_all(&batch).await.is_err() {
                break;
            }
        }
    };
    let ((), (ending, answers)) = tokio::join!(flood, peer.ending());
    let acks = answers
        .iter()
        .filter(|kind| matches!(kind, server_frame::Kind::HeartbeatAck(_)))
        .count();
    assert!(
        acks <= MAX_FRAMES_PER_SECOND as usize,
        "{acks} heartbeats answered past the limit"
    );
    assert_eq!(ctx.handle.state(id), None, "the session is closed");
    ending.into()
}

async fn attempt_login(ctx: &Ctx, user: &str, credential: &[u8]) -> Outcome {
    let mut peer = ctx.raw().await;
    peer.send_frame(&login_frame_with(user, credential, "raw", None))
        .await;
    match peer.grant().await {
        Ok(_) => Outcome::Served,
        Err(code) => Outcome::Rejected(code),
    }
}

async fn login_brute_force(ctx: &mut Ctx) -> Outcome {
    for guess in 0..FAILED_LOGIN_BURST {
        assert_eq!(
            attempt_login(ctx, "alice", format!("guess {guess}").as_bytes()).await,
            Outcome::Rejected(RejectCode::BadCredentials)
        );
    }
    // The burst is spent: even the right password is refused for now.
    attempt_login(ctx, "alice", b"alice-secret").await
}

async fn resume_brute_force(ctx: &mut Ctx) -> Outcome {
    let (mut victim, id, _) = ctx.logged_in("alice").await;
    let mut last = Outcome::Served;
    for guess in 0..=FAILED_LOGIN_BURST {
        let mut peer = ctx.raw().await;
        let token = Bytes::from(vec![guess as u8; 32]);
        last = match peer.resume(id, &token, 0).await {
            Ok(_) => Outcome::Served,
            Err(code) => Outcome::Rejected(code),
        };
    }
    // The failed resumes did spend the address's tokens: a password login
    // from it is now refused.
    assert_eq!(
        attempt_login(ctx, "carol", b"carol-secret").await,
        Outcome::Rejected(RejectCode::RateLimited)
    );
    assert!(victim.heartbeat(0).await, "the victim is untouched");
    last
}

async fn stalled_handshake(ctx: &mut Ctx) -> Outcome {
    let mut stream = RawPeer::connect_unupgraded(ctx.addr).await;
    let half = if ctx.kind == "ws" {
        // Half an upgrade request.
        common::raw::upgrade_request().as_bytes()[..40].to_vec()
    } else {
        // A prefix declaring 100 bytes, and 10 of them.
        let mut half = varint(100);
        half.extend_from_slice(&[0x0a; 10]);
        half
    };
    stream.write_all(&half).await.unwrap();
    let started = Instant::now();
    let outcome = read_ending(stream, ctx.kind).await;
    assert!(
        started.elapsed() >= LOGIN_TIMEOUT - Duration::from_millis(50),
        "dropped at the login deadline, not before ({:?})",
        started.elapsed()
    );
    outcome
}

/// Reads what the server sends on a connection that never completed its
/// handshake (WebSocket) or its first frame (TCP), until it ends.
async fn read_ending(stream: tokio::net::TcpStream, kind: &str) -> Outcome {
    use tokio::io::AsyncReadExt;
    let mut stream = stream;
    let mut received = Vec::new();
    tokio::time::timeout(SOON, async {
        let mut chunk = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the server ends the connection");
    if received.is_empty() {
        return Outcome::Dropped;
    }
    assert_eq!(kind, "tcp", "nothing can be sent before the upgrade");
    use session_core::proto::prost::Message;
    let frame =
        v1::ServerFrame::decode_length_delimited(received.as_slice()).expect("one delimited frame");
    match frame.kind {
        Some(server_frame::Kind::CloseSignal(signal)) => {
            Outcome::Closed(CloseCode::from_wire(signal.code))
        }
        other => panic!("expected a close signal, got {other:?}"),
    }
}

async fn stalled_login(ctx: &mut Ctx) -> Outcome {
    let mut peer = ctx.raw().await;
    let started = Instant::now();
    let outcome = peer.ending().await.0.into();
    assert!(started.elapsed() >= LOGIN_TIMEOUT - Duration::from_millis(50));
    outcome
}

async fn resume_wrong_token(ctx: &mut Ctx) -> Outcome {
    let (mut victim, id, token) = ctx.logged_in("alice").await;
    let mut wrong = token.to_vec();
    wrong[0] ^= 1;
    let mut peer = ctx.raw().await;
    let outcome = match peer.resume(id, &wrong.into(), 0).await {
        Ok(_) => Outcome::Served,
        Err(code) => Outcome::Rejected(code),
    };
    // An unknown session id is answered the same way.
    let mut other = ctx.raw().await;
    assert_eq!(
        other.resume(SessionId(id.0 ^ 1), &token, 0).await.err(),
        Some(RejectCode::SessionNotFound)
    );
    assert!(victim.heartbeat(0).await, "the victim is untouched");
    assert_eq!(ctx.handle.state(id), Some(ServerState::Open));
    outcome
}

async fn resume_stale_token(ctx: &mut Ctx) -> Outcome {
    let (first, id, old_token) = ctx.logged_in("alice").await;
    first.reset();
    ctx.wait_state(id, Some(ServerState::Detached)).await;
    let mut second = ctx.raw().await;
    let grant = second.resume(id, &old_token, 0).await.expect("resumes");
    assert!(grant.resumed);
    assert_ne!(grant.token, old_token, "the token is rotated on resume");
    // Once the client has shown it holds the new token (any frame after
    // the `LoginOk`), the token used once is stale.
    assert!(second.heartbeat(0).await, "the resumed session answers");
    let mut third = ctx.raw().await;
    let outcome = match third.resume(id, &old_token, 0).await {
        Ok(_) => Outcome::Served,
        Err(code) => Outcome::Rejected(code),
    };
    assert!(
        second.heartbeat(0).await,
        "the resumed session is untouched"
    );
    assert_eq!(ctx.handle.state(id), Some(ServerState::Open));
    outcome
}

async fn resume_foreign_token(ctx: &mut Ctx) -> Outcome {
    let (mut alice, alice_id, _) = ctx.logged_in("alice").await;
    let (mut carol, carol_id, carol_token) = ctx.logged_in("carol").await;
    let mut thief = ctx.raw().await;
    let outcome = match thief.resume(alice_id, &carol_token, 0).await {
        Ok(_) => Outcome::Served,
        Err(code) => Outcome::Rejected(code),
    };
    assert!(alice.heartbeat(0).await && carol.heartbeat(0).await);
    assert_eq!(ctx.handle.state(alice_id), Some(ServerState::Open));
    assert_eq!(ctx.handle.state(carol_id), Some(ServerState::Open));
    outcome
}

async fn resumes_racing(ctx: &mut Ctx) -> Outcome {
    // The old connection is still attached (half-open, as after a
    // partition the server did not notice).
    let (mut old, id, token) = ctx.logged_in("alice").await;
    ctx.handle.publish(id, "before".into()).unwrap();
    let mut racers = [ctx.raw().await, ctx.raw().await];
    let claim = resume_frame(id, &token, 0);
    let wires: Vec<Vec<u8>> = racers.iter().map(|r| r.wire(&claim)).collect();
    // Both claims leave at once, with the same (valid) token: the server
    // takes them in turn, and the later one takes the session over from
    // the earlier, whose connection is then closed without a word (before
    // or after its `LoginOk`).
    let (a, b) = racers.split_at_mut(1);
    let (sent_a, sent_b) = tokio::join!(a[0].send_bytes(&wires[0]), b[0].send_bytes(&wires[1]));
    assert!(sent_a && sent_b);
    let mut granted = Vec::new();
    for (i, racer) in racers.iter_mut().enumerate() {
        match racer.try_grant().await {
            Some(Ok(grant)) => {
                assert!(grant.resumed);
                granted.push(i);
            }
            Some(Err(other)) => panic!("unexpected rejection {other:?}"),
            None => {}
        }
    }
    // Exactly one connection holds the session: the one that answers.
    let mut holders = 0;
    for i in granted {
        if racers[i].heartbeat(0).await {
            holders += 1;
        }
    }
    assert_eq!(ctx.handle.state(id), Some(ServerState::Open));
    // The replaced half-open connection is closed without a word.
    let (ending, _) = old.ending().await;
    assert_eq!(
        ending,
        Ending::Silent,
        "the replaced connection is told nothing"
    );
    Outcome::Raced { holders }
}

async fn slow_consumer(ctx: &mut Ctx) -> Outcome {
    let mut lifecycle = ctx.handle.subscribe();
    // Logs in, then never reads again (and so never acknowledges).
    let (_peer, id, _) = ctx.logged_in("alice").await;
    let body = Bytes::from(vec![b'e'; 60 * 1024]);
    let mut accepted = 0;
    let refused = loop {
        match ctx.handle.publish(id, body.clone()) {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted <= MAX_UNACKED_EVENTS, "the buffer is bounded");
    };
    assert_eq!(accepted, MAX_UNACKED_EVENTS);
    assert_eq!(refused, SendError::Publish(PublishError::SlowConsumer));
    let code = loop {
        let change = tokio::time::timeout(SOON, lifecycle.recv())
            .await
            .expect("the session closes")
            .unwrap();
        if change.session.id == id {
            if let LifecycleKind::Closed { code, .. } = change.kind {
                break code;
            }
        }
    };
    assert_eq!(ctx.handle.state(id), None);
    // Its connection goes too (at the latest when the write deadline
    // passes): only the bystander's remains.
    let deadline = Instant::now() + SOON;
    while ctx.handle.connection_count() > 1 {
        assert!(Instant::now() < deadline, "the connection was never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Outcome::SessionClosed(code)
}

async fn reset_mid_request(ctx: &mut Ctx) -> Outcome {
    let (mut peer, id, token) = ctx.logged_in("alice").await;
    let wire = peer.wire(&request(1, "a request cut in half by a reset"));
    peer.send_bytes(&wire[..wire.len() / 2]).await;
    peer.reset();
    ctx.wait_state(id, Some(ServerState::Detached)).await;
    let mut again = ctx.raw().await;
    let grant = again.resume(id, &token, 0).await.expect("resumes");
    assert!(grant.resumed && grant.session_id == id);
    // The half request was never a request: id 1 is still free.
    assert!(again.send_frame(&request(1, "whole")).await);
    loop {
        match again.next_kind().await {
            Some(server_frame::Kind::Response(response)) => {
                assert_eq!(response.request_id, 1);
                assert_eq!(
                    response.result,
                    Some(v1::response::Result::Body("whole".into()))
                );
                break;
            }
            Some(_) => {}
            None => panic!("the resumed connection closed"),
        }
    }
    if ctx.handle.state(id) == Some(ServerState::Open) {
        Outcome::DetachedThenResumed
    } else {
        Outcome::Dropped
    }
}

async fn shutdown_with_events_in_flight(ctx: &mut Ctx) -> Outcome {
    let url = url(ctx.server.as_ref().unwrap(), ctx.kind);
    let mut client = TestClient::online(&url, "alice", "web").await;
    let id = client.session.session_id().unwrap();
    let published: Vec<String> = (1..=MAX_UNACKED_EVENTS).map(|n| format!("e{n}")).collect();
    for body in &published {
        ctx.handle.publish(id, body.clone().into()).unwrap();
    }
    // The client has not read a thing yet when the shutdown starts.
    let server = ctx.server.take().unwrap();
    let (report, reason) = tokio::join!(server.shutdown(), client.offline());
    assert_eq!(report.connections_left, 0);
    assert_eq!(report.sessions_closed, 2, "alice and the bystander");
    assert_eq!(
        client.messages(),
        published,
        "every accepted event arrived first"
    );
    match reason {
        CloseReason::Server { code, .. } => Outcome::Closed(code),
        other => panic!("expected a close signal, got {other:?}"),
    }
}

// ---- the harness ----

async fn run_row(row: &Row, kind: &'static str, expected: Outcome) {
    // Shown with a failure, for the scenarios' own assertions.
    eprintln!("row: {} over {kind}", row.name);
    let server = start(options(), Recorder::default()).await;
    let handle = server.handle();
    let mut bystander = TestClient::online(&url(&server, kind), "bob", "web").await;
    let bystander_id = bystander.session.session_id().unwrap();
    // The bystander keeps heartbeating while the row runs.
    let stop = Arc::new(AtomicBool::new(false));
    let driver = tokio::spawn({
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::SeqCst) {
                bystander
                    .step(Instant::now() + Duration::from_millis(20))
                    .await;
            }
            bystander
        }
    });
    let mut ctx = Ctx {
        kind,
        addr: server.local_addr(kind).unwrap(),
        server: Some(server),
        handle: handle.clone(),
    };
    let outcome = (row.scenario)(&mut ctx).await;
    stop.store(true, Ordering::SeqCst);
    let mut bystander = driver.await.unwrap();
    assert_eq!(outcome, expected, "{} over {kind}", row.name);

    match row.bystander {
        Bystander::Untouched => {
            let troubled: Vec<_> = bystander
                .events
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        ClientEvent::Disconnected(_)
                            | ClientEvent::Offline(_)
                            | ClientEvent::LoginFailed(_)
                    )
                })
                .collect();
            assert!(
                troubled.is_empty(),
                "{} over {kind}: the bystander was touched: {troubled:?}",
                row.name
            );
            assert_eq!(
                bystander.request("still there?").await.unwrap(),
                "still there?".as_bytes(),
                "{} over {kind}",
                row.name
            );
            assert_eq!(handle.state(bystander_id), Some(ServerState::Open));
        }
        Bystander::ShutDown => {
            let reason = bystander.offline().await;
            assert_eq!(reason.code(), CloseCode::ServerShutdown, "{reason:?}");
        }
    }
    if let Some(server) = ctx.server.take() {
        // Driven meanwhile, the bystander closes its side as soon as it
        // reads the signal, so the shutdown does not wait for it.
        let (_, reason) = tokio::join!(server.shutdown(), bystander.offline());
        assert_eq!(reason.code(), CloseCode::ServerShutdown);
    }
}

async fn run_catalogue(kind: &'static str) {
    let rows = catalogue();
    for row in &rows {
        let expected = match kind {
            "ws" => row.ws,
            _ => row.tcp,
        };
        if let Some(expected) = expected {
            run_row(row, kind, expected).await;
        }
    }
}

#[tokio::test]
async fn the_catalogue_over_tcp() {
    run_catalogue("tcp").await;
}

#[tokio::test]
async fn the_catalogue_over_websocket() {
    run_catalogue("ws").await;
}
