//! Graceful shutdown reaches every session with `SERVER_SHUTDOWN`, and
//! every connection closes within the bound.

mod common;

use common::{Recorder, TestClient, fast_options, start, url};
use session_core::{ClientEvent, CloseCode, CloseReason};
use session_transport::ConnectOptions;

#[tokio::test]
async fn shutdown_reaches_every_session_on_every_transport() {
    let recorder = Recorder::default();
    let server = start(fast_options(), recorder.clone()).await;
    let mut clients = Vec::new();
    for (i, kind) in ["tcp", "ws", "tcp", "ws"].into_iter().enumerate() {
        clients.push(TestClient::online(&url(&server, kind), "alice", &format!("d{i}")).await);
    }
    // A connection still logging in is told too.
    let mut pending = session_transport::connect(&url(&server, "tcp"), &ConnectOptions::default())
        .await
        .unwrap();
    while server.handle().connection_count() < 5 {
        tokio::task::yield_now().await;
    }

    let (report, codes) = tokio::join!(server.shutdown(), async {
        let mut codes = Vec::new();
        for client in &mut clients {
            codes.push(client.closed_with().await);
        }
        codes
    });
    assert_eq!(codes, [CloseCode::ServerShutdown; 4]);
    assert_eq!(report.sessions_closed, 4);
    assert_eq!(report.connections_left, 0);
    for client in &clients {
        let offline = client
            .events
            .iter()
            .find_map(|e| match e {
                ClientEvent::Offline(CloseReason::Server { retry_after, .. }) => Some(*retry_after),
                _ => None,
            })
            .unwrap();
        assert!(offline.is_some(), "shutdown carries a retry hint");
    }
    assert_eq!(
        common::read_close_signal(&mut pending).await,
        Some(CloseCode::ServerShutdown)
    );
}

/// The demo users, with bob's logins held in the authenticator until the
/// test lets them through.
struct Gated {
    users: session_server::demo::UserTable,
    arrived: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

impl session_server::Authenticator for Gated {
    async fn authenticate(
        &self,
        attempt: &session_server::LoginAttempt,
    ) -> Result<session_server::Identity, session_server::Rejection> {
        if attempt.user_id == "bob" {
            self.arrived.notify_one();
            self.release.notified().await;
        }
        self.users.authenticate(attempt).await
    }
}

/// A login the authenticator accepts after the shutdown began is not
/// opened behind the shutdown's back: it is refused with `SERVER_SHUTDOWN`,
/// and the shutdown does not wait for it.
#[tokio::test]
async fn a_login_decided_during_the_shutdown_gets_server_shutdown() {
    use std::sync::Arc;

    use session_core::LoginFailure;
    use session_server::ServerOptions;
    use session_server::demo::{DemoApp, UserTable};

    let (arrived, release) = (Arc::default(), Arc::default());
    let recorder = Recorder::default();
    let server = common::loopback()
        .options(ServerOptions {
            shutdown_timeout: std::time::Duration::from_secs(30),
            ..fast_options()
        })
        .authenticator(Gated {
            users: UserTable::demo(),
            arrived: Arc::clone(&arrived),
            release: Arc::clone(&release),
        })
        .request_handler(DemoApp)
        .session_listener(recorder.clone())
        .start()
        .await
        .unwrap();
    let mut alice = TestClient::online(&url(&server, "tcp"), "alice", "web").await;
    let mut bob = TestClient::connect(&url(&server, "tcp"), Default::default()).await;
    let bob = tokio::spawn(async move {
        bob.login("bob", "web").await;
        bob
    });
    arrived.notified().await;

    let shutdown = tokio::spawn(server.shutdown());
    // Alice hears of the shutdown once its flag is up; only then does the
    // authenticator let bob in.
    assert_eq!(alice.closed_with().await, CloseCode::ServerShutdown);
    release.notify_one();
    let bob = bob.await.unwrap();
    let refused = bob.events.iter().any(|e| {
        matches!(
            e,
            ClientEvent::LoginFailed(LoginFailure::Closed(CloseReason::Server {
                code: CloseCode::ServerShutdown,
                ..
            }))
        )
    });
    assert!(refused, "{:?}", bob.events);
    drop((alice, bob));
    let report = shutdown.await.unwrap();
    assert_eq!(report.sessions_closed, 1);
    assert_eq!(report.connections_left, 0);
    assert_eq!(
        recorder.seen(),
        [
            common::Seen::Open("alice".into()),
            common::Seen::Close("alice".into(), CloseCode::ServerShutdown)
        ]
    );
}

/// A connection accepted before the shutdown but still in its WebSocket
/// upgrade when the shutdown starts hears `SERVER_SHUTDOWN` when it gets to
/// log in: the shutdown's flag is kept for it, though no login listened
/// when it went up.
#[tokio::test]
async fn a_connection_still_upgrading_when_the_shutdown_starts_is_told() {
    use common::raw::{RawPeer, login_frame};
    use session_proto::v1::server_frame::Kind;

    let recorder = Recorder::default();
    let server = start(fast_options(), recorder.clone()).await;
    let addr = server.local_addr("ws").unwrap();
    let stalled = RawPeer::connect_unupgraded(addr).await;
    while server.handle().connection_count() < 1 {
        tokio::task::yield_now().await;
    }
    let shutdown = tokio::spawn(server.shutdown());
    // This runtime has one thread: the shutdown runs to its first wait,
    // its flag up, before this test goes on.
    tokio::task::yield_now().await;
    let mut peer = RawPeer::upgrade_later(stalled).await;
    peer.send_frame(&login_frame("alice", "web", None)).await;
    match peer.next_kind().await {
        Some(Kind::CloseSignal(signal)) => {
            assert_eq!(CloseCode::from_wire(signal.code), CloseCode::ServerShutdown);
        }
        other => panic!("expected SERVER_SHUTDOWN, got {other:?}"),
    }
    drop(peer);
    let report = shutdown.await.unwrap();
    assert_eq!((report.sessions_closed, report.connections_left), (0, 0));
    assert_eq!(recorder.seen(), []);
}
