//! TCP and WebSocket sessions behave the same whichever drives them: a
//! task each (`reactor_threads: 0`), one reactor, or several, with sessions
//! spread across reactors and moved between them by a resume.

mod common;

use std::time::Duration;

use common::{KINDS, Recorder, Seen, TestClient, fast_options, start, url};
use session_core::{ClientEvent, ClientState, CloseCode, ServerState};
use session_server::{LifecycleKind, ServerOptions};

/// Sessions per server: more than the largest reactor count, so several
/// share a reactor and every reactor gets some.
const USERS: [&str; 6] = ["load-0", "load-1", "load-2", "load-3", "load-4", "load-5"];

fn options(reactor_threads: usize) -> ServerOptions {
    ServerOptions {
        reactor_threads,
        ..fast_options()
    }
}

#[tokio::test]
async fn sessions_work_alike_with_tasks_one_reactor_and_several() {
    for (threads, kind) in [0, 1, 3]
        .into_iter()
        .flat_map(|n| KINDS.map(|kind| (n, kind)))
    {
        // What a failed assertion names.
        let reactors = format!("{threads} reactors, {kind}");
        let recorder = Recorder::default();
        let server = start(options(threads), recorder.clone()).await;
        let url = url(&server, kind);
        let mut clients = Vec::new();
        for user in USERS {
            clients.push(TestClient::online(&url, user, "web").await);
        }
        assert_eq!(server.handle().session_count(), USERS.len(), "{reactors}");

        // Requests are answered, and relays cross between sessions (and so
        // between reactors).
        for (i, client) in clients.iter_mut().enumerate() {
            let next = USERS[(i + 1) % USERS.len()];
            let body = format!("to {next} hello from {}", USERS[i]);
            assert_eq!(
                client.request(&body).await.unwrap(),
                "delivered to 1 sessions".as_bytes(),
                "{reactors}"
            );
        }
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .until(|e| matches!(e, ClientEvent::Message { .. }))
                .await;
            let from = USERS[(i + USERS.len() - 1) % USERS.len()];
            assert_eq!(client.messages(), [format!("{from}: hello from {from}")]);
        }

        // A dropped connection detaches its session; events published
        // meanwhile are replayed on the resumed connection, which may be on
        // another reactor.
        let id = server.handle().user_sessions("load-2")[0].id;
        clients[2].drop_connection();
        let detached = async {
            while server.handle().state(id) != Some(ServerState::Detached) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(common::SOON, detached).await.unwrap();
        server.handle().publish(id, "while away".into()).unwrap();
        clients[2].resume().await;
        assert_eq!(clients[2].session.state(), ClientState::Online);
        clients[2]
            .until(|e| matches!(e, ClientEvent::Message { seq: 2, .. }))
            .await;
        assert_eq!(
            clients[2].messages(),
            ["load-1: hello from load-1", "while away"],
            "{reactors}"
        );
        // The resumed session still answers.
        assert_eq!(
            clients[2].request("still here").await.unwrap(),
            "still here".as_bytes()
        );

        // A kick reaches the session wherever it is driven, and its socket
        // closes.
        server.handle().kick(id, "bye").unwrap();
        assert_eq!(clients[2].closed_with().await, CloseCode::Kicked);
        recorder
            .wait_for(|s| s.contains(&Seen::Close("load-2".into(), CloseCode::Kicked)))
            .await;

        // Shutdown closes every session and every connection. Each client
        // reads its close signal while the shutdown runs, then closes its
        // end, as a peer would, so the shutdown need not wait out a linger.
        let mut lifecycle = server.handle().subscribe();
        let peers = async {
            for client in clients
                .iter_mut()
                .filter(|c| c.session.state() == ClientState::Online)
            {
                assert_eq!(client.closed_with().await, CloseCode::ServerShutdown);
                client.drop_connection();
            }
        };
        let (report, ()) = tokio::join!(server.shutdown(), peers);
        assert_eq!(report.connections_left, 0, "{reactors}");
        assert_eq!(report.sessions_closed, USERS.len() - 1);
        let closed = lifecycle.recv().await.unwrap();
        assert!(matches!(closed.kind, LifecycleKind::Closed { .. }));
    }
}

/// A WebSocket client over a raw socket, to send what tungstenite would not
/// (pings, and frames before the login's answer).
mod raw_ws {
    use std::time::Instant;

    use bytes::{Bytes, BytesMut};
    use session_core::{ClientEvent, ClientSession, Framing, Transmit};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub(crate) async fn upgrade(addr: std::net::SocketAddr) -> TcpStream {
        upgrade_on(TcpStream::connect(addr).await.unwrap(), addr).await
    }

    /// The WebSocket upgrade on a connected `stream`.
    pub(crate) async fn upgrade_on(mut stream: TcpStream, addr: std::net::SocketAddr) -> TcpStream {
        let request = format!(
            "GET /session HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: session.v1\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\n") {
            response.push(stream.read_u8().await.unwrap());
        }
        assert!(
            response.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&response)
        );
        stream
    }

    /// A masked client frame that ends its message.
    pub(crate) fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        fragment(true, opcode, payload)
    }

    /// A masked client frame, with FIN as given.
    pub(crate) fn fragment(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let key = [1, 2, 3, 4];
        let mut out = vec![(u8::from(fin) << 7) | opcode, 0x80 | payload.len() as u8];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        out
    }

    /// What `session` has queued, as masked binary frames.
    pub(crate) fn frames_of(session: &mut ClientSession) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = BytesMut::new();
        while let Some(Transmit::Frame) = session.poll_transmit(&mut buf, Framing::Bare) {
            out.extend(frame(0x2, &buf.split()));
        }
        out
    }

    /// The next server frame: its opcode and payload (servers do not mask).
    pub(crate) async fn next(stream: &mut TcpStream) -> (u8, Bytes) {
        let first = stream.read_u8().await.unwrap();
        let len = match stream.read_u8().await.unwrap() {
            126 => usize::from(stream.read_u16().await.unwrap()),
            127 => stream.read_u64().await.unwrap() as usize,
            short => usize::from(short),
        };
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).await.unwrap();
        (first & 0x0f, payload.into())
    }

    /// A client session logging in as `user`, and its `Login` as masked
    /// frames, for the test to send (with whatever it puts behind them).
    pub(crate) fn logging_in(
        user: &str,
        config: session_core::ClientConfig,
    ) -> (ClientSession, Vec<u8>) {
        let mut session = ClientSession::new(config);
        session.handle_connected(Instant::now());
        session
            .login(Instant::now(), super::credentials(user))
            .unwrap();
        let wire = frames_of(&mut session);
        (session, wire)
    }

    /// Logs in as `user` over the upgraded `stream`; returns the session,
    /// online.
    pub(crate) async fn log_in(
        stream: &mut TcpStream,
        user: &str,
        config: session_core::ClientConfig,
    ) -> ClientSession {
        let (mut session, wire) = logging_in(user, config);
        stream.write_all(&wire).await.unwrap();
        until(stream, &mut session, |s| {
            s.state() == session_core::ClientState::Online
        })
        .await;
        session
    }

    /// A connection logged in as `user`, its session online.
    pub(crate) async fn online(
        addr: std::net::SocketAddr,
        user: &str,
    ) -> (TcpStream, ClientSession) {
        let mut stream = upgrade(addr).await;
        let session = log_in(&mut stream, user, Default::default()).await;
        (stream, session)
    }

    /// Sends a close frame with `payload`, reads server frames into
    /// `session` up to the server's close frame, and returns what the
    /// session reported meanwhile.
    pub(crate) async fn close_with(
        stream: &mut TcpStream,
        session: &mut ClientSession,
        payload: &[u8],
    ) -> Vec<ClientEvent> {
        stream.write_all(&frame(0x8, payload)).await.unwrap();
        loop {
            match next(stream).await {
                (0x8, _) => break,
                (0x2, payload) => {
                    let _ = session.handle_frame(Instant::now(), payload);
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
        std::iter::from_fn(|| session.poll_event()).collect()
    }

    /// Reads server frames into `session` until `done` holds.
    pub(crate) async fn until(
        stream: &mut TcpStream,
        session: &mut ClientSession,
        done: impl Fn(&ClientSession) -> bool,
    ) {
        while !done(session) {
            let (opcode, payload) = next(stream).await;
            assert_eq!(opcode, 0x2, "a binary frame");
            session.handle_frame(Instant::now(), payload).unwrap();
        }
    }
}

fn credentials(user: &str) -> session_core::Credentials {
    session_core::Credentials {
        user_id: user.into(),
        credential: bytes::Bytes::from_static(b"load"),
        device: "raw".into(),
        properties: Default::default(),
    }
}

#[tokio::test]
async fn websocket_pings_are_answered_and_frames_behind_the_login_are_kept() {
    use std::time::Instant;

    use session_core::ClientConfig;
    use tokio::io::AsyncWriteExt;

    for threads in [0, 2] {
        let server = start(options(threads), Recorder::default()).await;
        let addr = server.local_addr("ws").unwrap();

        // A ping after login gets its pong, between the session's frames.
        let (mut stream, mut session) = raw_ws::online(addr, "load-1").await;
        stream
            .write_all(&raw_ws::frame(0x9, b"are you there"))
            .await
            .unwrap();
        let (opcode, payload) = raw_ws::next(&mut stream).await;
        assert_eq!(
            (opcode, &payload[..]),
            (0xa, &b"are you there"[..]),
            "{threads} reactors"
        );
        let id = session.request(Instant::now(), "echo me".into()).unwrap();
        stream
            .write_all(&raw_ws::frames_of(&mut session))
            .await
            .unwrap();
        raw_ws::until(&mut stream, &mut session, |s| s.pending_requests() == 0).await;
        let answered = std::iter::from_fn(|| session.poll_event()).any(|event| {
            matches!(event, ClientEvent::Response { id: got, result: Ok(body) } if got == id && body == "echo me")
        });
        assert!(answered, "{threads} reactors");

        // A ping right behind the login, before its answer, is answered
        // too (tungstenite then holds bytes the login phase read, so the
        // connection stays with a task).
        let mut stream = raw_ws::upgrade(addr).await;
        let (mut session, mut wire) = raw_ws::logging_in("load-2", ClientConfig::default());
        wire.extend(raw_ws::frame(0x9, b"early ping"));
        stream.write_all(&wire).await.unwrap();
        let mut ponged = false;
        while !ponged || session.state() != ClientState::Online {
            match raw_ws::next(&mut stream).await {
                (0xa, payload) => {
                    assert_eq!(&payload[..], b"early ping");
                    ponged = true;
                }
                (0x2, frame) => session.handle_frame(Instant::now(), frame).unwrap(),
                other => panic!("unexpected frame {other:?}"),
            }
        }
        assert_eq!(server.handle().session_count(), 2);
    }
}

/// A message may begin with an empty frame that does not end it (RFC 6455
/// sets no lower bound on a fragment). Sent right behind the login, that
/// leaves a message in progress in tungstenite, so the connection stays with
/// it rather than going to a reactor, and the message's last fragment, sent
/// after the login's answer, completes the message on either path.
#[tokio::test]
async fn a_message_begun_by_an_empty_fragment_behind_the_login_is_completed() {
    use std::time::Instant;

    use bytes::BytesMut;
    use session_core::{ClientConfig, Framing, Transmit};
    use tokio::io::AsyncWriteExt;

    for threads in [0, 2] {
        let server = start(options(threads), Recorder::default()).await;
        let addr = server.local_addr("ws").unwrap();
        let mut stream = raw_ws::upgrade(addr).await;
        let (mut session, mut wire) = raw_ws::logging_in("load-1", ClientConfig::default());
        wire.extend(raw_ws::fragment(false, 0x2, b""));
        stream.write_all(&wire).await.unwrap();
        raw_ws::until(&mut stream, &mut session, |s| {
            s.state() == ClientState::Online
        })
        .await;

        // The request goes as the message's final continuation frame.
        let id = session.request(Instant::now(), "echo me".into()).unwrap();
        let mut request = BytesMut::new();
        let Some(Transmit::Frame) = session.poll_transmit(&mut request, Framing::Bare) else {
            panic!("a request frame");
        };
        stream
            .write_all(&raw_ws::fragment(true, 0x0, &request))
            .await
            .unwrap();
        raw_ws::until(&mut stream, &mut session, |s| s.pending_requests() == 0).await;
        let events: Vec<ClientEvent> = std::iter::from_fn(|| session.poll_event()).collect();
        assert!(
            events.iter().any(|event| matches!(
                event,
                ClientEvent::Response { id: got, result: Ok(body) } if *got == id && body == "echo me"
            )),
            "{threads} reactors: {events:?}"
        );
        assert_eq!(session.state(), ClientState::Online, "{threads} reactors");
        common::close_and_shut_down(server, stream).await;
    }
}

/// A close frame that RFC 6455 forbids (a 1-byte payload, a code that is
/// not sent on the wire, a reason that is not UTF-8) is a protocol error on
/// either path, tungstenite's (tasks) and `ws_frames` (reactors): the
/// client gets the close signal `PROTOCOL_ERROR` naming a malformed
/// WebSocket frame, and the session closes. A valid close frame still just
/// ends the connection, and the session waits for a resume.
#[tokio::test]
async fn a_forbidden_close_frame_is_a_protocol_error_on_either_path() {
    use session_core::CloseReason;

    let forbidden: [(&str, &[u8]); 6] = [
        ("one byte", &[0x03]),
        ("code 999", &[0x03, 0xe7]),
        ("code 1005", &[0x03, 0xed]),
        ("code 2999", &[0x0b, 0xb7]),
        ("code 5000", &[0x13, 0x88]),
        ("reason not UTF-8", &[0x03, 0xe8, b'o', 0xff]),
    ];
    let valid: [(&str, &[u8]); 3] = [
        ("empty", &[]),
        ("code 1000", &[0x03, 0xe8, b'b', b'y', b'e']),
        ("code 4999, reason in UTF-8", &[0x13, 0x87, 0xc3, 0xa0]),
    ];
    for threads in [0, 2] {
        let recorder = Recorder::default();
        // The raw clients send no heartbeats: a 20 s window keeps their
        // sessions from expiring during the test.
        let mut options = options(threads);
        options.core.heartbeat = Duration::from_secs(10);
        let server = start(options, recorder.clone()).await;
        let addr = server.local_addr("ws").unwrap();
        for (i, (what, payload)) in forbidden.into_iter().enumerate() {
            let user = USERS[i];
            let (mut stream, mut session) = raw_ws::online(addr, user).await;
            let events = raw_ws::close_with(&mut stream, &mut session, payload).await;
            let closed = events.iter().any(|event| {
                matches!(
                    event,
                    ClientEvent::Offline(CloseReason::Server { code: CloseCode::ProtocolError, message, .. })
                        if message == "unexpected malformed WebSocket frame while reading messages"
                )
            });
            assert!(closed, "{what}, {threads} reactors: {events:?}");
            recorder
                .wait_for(|seen| seen.contains(&Seen::Close(user.into(), CloseCode::ProtocolError)))
                .await;
        }
        for (what, payload) in valid {
            let (mut stream, mut session) = raw_ws::online(addr, "load-5").await;
            let id = server.handle().user_sessions("load-5")[0].id;
            let events = raw_ws::close_with(&mut stream, &mut session, payload).await;
            assert!(
                !events
                    .iter()
                    .any(|event| matches!(event, ClientEvent::Offline(_))),
                "{what}, {threads} reactors: {events:?}"
            );
            let detached = async {
                while server.handle().state(id) != Some(ServerState::Detached) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::time::timeout(common::SOON, detached)
                .await
                .unwrap_or_else(|_| panic!("{what}, {threads} reactors: not detached"));
            server.handle().kick(id, "next").unwrap();
        }
        server.shutdown().await;
    }
}

/// A client that sends a frame and closes at once (its data and its FIN in
/// one readiness event) is seen to have gone at once: the reactor ends a
/// turn on a short read only when the event did not also report the close,
/// which no later event would repeat. Without that, the session would stay
/// attached until its timeout (20 s here).
#[tokio::test]
async fn a_close_right_behind_a_frame_is_noticed() {
    for reactor_threads in [1, 2] {
        for kind in KINDS {
            let server = start(options(reactor_threads), Recorder::default()).await;
            let heartbeat = Duration::from_secs(10);
            let mut client =
                TestClient::online_with(&url(&server, kind), "alice", "web", heartbeat).await;
            let handle = server.handle();
            let id = handle.user_sessions("alice")[0].id;
            // The last frame is an acknowledgement, which the server does
            // not answer: no write of its own would run into the closed
            // socket and reveal the close some other way.
            handle.publish(id, "e1".into()).expect("publish");
            client
                .until(|e| matches!(e, ClientEvent::Message { seq: 1, .. }))
                .await;
            client.session.ack(1).expect("an ack");
            client.flush().await;
            client.drop_connection();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while handle.state(id) == Some(ServerState::Open) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{kind} with {reactor_threads} reactors: the close went unnoticed"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(handle.state(id), Some(ServerState::Detached), "{kind}");
            server.shutdown().await;
        }
    }
}

/// When a crowd of reactor-driven clients vanishes at once, every session's
/// `Detached`, `on_expire` and `on_close` reach the backend, in that order
/// for each session. The reactors defer their wake-ups of the dispatchers
/// to the end of a turn; none may be lost, nor hold up the watchdogs'
/// events queued behind it.
#[tokio::test]
async fn a_crowd_vanishing_at_once_reaches_the_backend_whole() {
    const CROWD: usize = 60;
    let recorder = Recorder::default();
    let server = start(options(2), recorder.clone()).await;
    let url = url(&server, "tcp");
    let mut lifecycle = server.handle().subscribe();
    let mut clients = Vec::new();
    for i in 0..CROWD {
        let user = format!("load-{i}");
        clients.push(TestClient::online_with(&url, &user, "web", Duration::from_millis(100)).await);
    }
    // Every socket closes at once.
    drop(clients);

    let expired = |seen: &[Seen]| {
        seen.iter()
            .filter(|e| matches!(e, Seen::Close(_, CloseCode::Expired)))
            .count()
    };
    let seen = recorder.wait_for(|seen| expired(seen) == CROWD).await;
    for i in 0..CROWD {
        let user = format!("load-{i}");
        let mine: Vec<&Seen> = seen
            .iter()
            .filter(|e| match e {
                Seen::Open(u) | Seen::Expire(u) | Seen::Close(u, _) => *u == user,
            })
            .collect();
        assert_eq!(
            mine,
            [
                &Seen::Open(user.clone()),
                &Seen::Expire(user.clone()),
                &Seen::Close(user.clone(), CloseCode::Expired)
            ]
        );
    }
    // The subscribers heard every detach, each between its session's
    // opening and its expiry.
    let mut detached = 0;
    let mut last = std::collections::HashMap::new();
    while detached < CROWD || last.values().any(|kind| *kind != "closed") {
        let change = tokio::time::timeout(common::SOON, lifecycle.recv())
            .await
            .expect("every change is heard")
            .expect("no change is dropped");
        let user = change.session.user_id.to_string();
        let kind = match change.kind {
            LifecycleKind::Opened => "opened",
            LifecycleKind::Detached => {
                detached += 1;
                "detached"
            }
            LifecycleKind::Expired => "expired",
            LifecycleKind::Closed { .. } => "closed",
            other => panic!("{user}: unexpected {other:?}"),
        };
        let before = last.insert(user.clone(), kind);
        let expected = match kind {
            "opened" => None,
            "detached" => Some("opened"),
            "expired" => Some("detached"),
            _ => Some("expired"),
        };
        assert_eq!(before, expected, "{user}: {kind} after {before:?}");
    }
    assert_eq!(detached, CROWD);
    assert_eq!(last.len(), CROWD);
}

/// A client that floods pings while the server's output to it waits (it
/// does not read) costs the server one owed pong, not one per ping: the
/// pong answers the latest ping once the output has gone out.
#[tokio::test]
async fn pings_while_output_waits_are_answered_by_one_pong() {
    use std::time::Instant;

    use session_core::ClientConfig;
    use tokio::io::AsyncWriteExt;

    const EVENTS: usize = 96;
    const EVENT_LEN: usize = 256 * 1024;
    const PINGS: usize = 20_000;
    let mut options = options(2);
    options.core.max_unacked_bytes = u32::MAX;
    let server = start(options, Recorder::default()).await;
    let addr = server.local_addr("ws").unwrap();
    // A small receive buffer, so that the events below wait on the
    // server's side.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut stream = raw_ws::upgrade_on(stream, addr).await;
    let config = ClientConfig {
        requested_heartbeat: Some(Duration::from_secs(60)),
        ..ClientConfig::default()
    };
    let mut session = raw_ws::log_in(&mut stream, "load-1", config).await;
    let id = session.session_id().unwrap();
    for _ in 0..EVENTS {
        let body = bytes::Bytes::from(vec![7u8; EVENT_LEN]);
        server.handle().publish(id, body).unwrap();
    }
    let mut pings = Vec::with_capacity(PINGS * 110);
    for i in 0..PINGS {
        pings.extend(raw_ws::frame(0x9, format!("ping {i:05}").as_bytes()));
    }
    stream.write_all(&pings).await.unwrap();
    // Now read everything, then one last ping marks the end.
    let (mut events, mut pongs) = (0, Vec::new());
    while events < EVENTS {
        match raw_ws::next(&mut stream).await {
            (0x2, payload) => {
                session.handle_frame(Instant::now(), payload).unwrap();
                events += std::iter::from_fn(|| session.poll_event())
                    .filter(|e| matches!(e, ClientEvent::Message { .. }))
                    .count();
            }
            (0xa, payload) => pongs.push(payload),
            (opcode, _) => panic!("opcode {opcode} after {events} events"),
        }
    }
    stream
        .write_all(&raw_ws::frame(0x9, b"last"))
        .await
        .unwrap();
    loop {
        let (opcode, payload) = raw_ws::next(&mut stream).await;
        if opcode == 0xa && payload == "last" {
            break;
        }
        assert_eq!(opcode, 0xa, "only pongs are left");
        pongs.push(payload);
    }
    // A pong may go out at once for the latest ping of a read that found
    // no output waiting; the rest wait as one, for the latest ping so far
    // (which may be `last` itself, if it came while output still waited).
    // Each pong answers a ping that was sent, in order, and there are few.
    let answered: Vec<u32> = pongs
        .iter()
        .map(|p| {
            let text = std::str::from_utf8(p).unwrap();
            text.strip_prefix("ping ").unwrap().parse().unwrap()
        })
        .collect();
    assert!(answered.windows(2).all(|w| w[0] < w[1]), "{answered:?}");
    assert!(answered.iter().all(|&n| n < PINGS as u32), "{answered:?}");
    assert!(pongs.len() <= PINGS / 100, "{} pongs", pongs.len());
    common::close_and_shut_down(server, stream).await;
}
