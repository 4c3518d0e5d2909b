//! The whole lifecycle over real sockets: connect, login, requests, events,
//! logout, reported as `LOGGED_OUT` on both sides.

mod common;

use common::{KINDS, Recorder, Seen, TestClient, fast_options, start, url};
use session_core::{
    ClientEvent, CloseCode, CloseReason, DisconnectReason, LoginFailure, RejectCode,
};
use session_server::LifecycleKind;

#[tokio::test]
async fn login_requests_events_and_logout() {
    for kind in KINDS {
        let recorder = Recorder::default();
        let server = start(fast_options(), recorder.clone()).await;
        let mut lifecycle = server.handle().subscribe();
        let url = url(&server, kind);
        let mut alice = TestClient::online(&url, "alice", "web").await;
        let mut bob = TestClient::online(&url, "bob", "web").await;
        assert_eq!(server.handle().session_count(), 2);

        // A request is echoed.
        assert_eq!(alice.request("hello").await.unwrap(), "hello".as_bytes());
        // A relay request reaches bob as an event.
        assert_eq!(
            alice.request("to bob hi bob").await.unwrap(),
            "delivered to 1 sessions".as_bytes()
        );
        bob.until(|e| matches!(e, ClientEvent::Message { .. }))
            .await;
        assert_eq!(bob.messages(), ["alice: hi bob"]);
        // The backend publishes directly too.
        let id = server.handle().user_sessions("bob")[0].id;
        server
            .handle()
            .publish(id, "from the backend".into())
            .unwrap();
        bob.until(|e| matches!(e, ClientEvent::Message { seq: 2, .. }))
            .await;

        // Logout: LOGGED_OUT on both sides, then the connection closes.
        alice
            .session
            .logout(std::time::Instant::now(), "bye")
            .unwrap();
        assert_eq!(alice.offline().await, CloseReason::LoggedOut);
        alice
            .until(|e| matches!(e, ClientEvent::Disconnected(DisconnectReason::Closed)))
            .await;
        recorder
            .wait_for(|s| s.contains(&Seen::Close("alice".into(), CloseCode::LoggedOut)))
            .await;
        assert_eq!(
            recorder.seen()[..2],
            [Seen::Open("alice".into()), Seen::Open("bob".into())]
        );
        assert_eq!(server.handle().user_sessions("alice"), vec![]);
        // Subscribers saw the same story.
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            let event = tokio::time::timeout(common::SOON, lifecycle.recv())
                .await
                .unwrap()
                .unwrap();
            kinds.push((event.session.user_id.to_string(), event.kind));
        }
        assert_eq!(
            kinds,
            [
                ("alice".to_owned(), LifecycleKind::Opened),
                ("bob".to_owned(), LifecycleKind::Opened),
                (
                    "alice".to_owned(),
                    LifecycleKind::Closed {
                        code: CloseCode::LoggedOut,
                        reason: "bye".into()
                    }
                ),
            ]
        );
        common::close_and_shut_down(server, (alice, bob)).await;
    }
}

#[tokio::test]
async fn a_bad_password_is_rejected_with_bad_credentials() {
    for kind in KINDS {
        let server = start(fast_options(), Recorder::default()).await;
        let mut client = TestClient::connect(&url(&server, kind), Default::default()).await;
        let credentials = session_core::Credentials {
            user_id: "alice".into(),
            credential: "wrong".into(),
            ..Default::default()
        };
        client
            .session
            .login(std::time::Instant::now(), credentials)
            .unwrap();
        let failed = client
            .until(|e| matches!(e, ClientEvent::LoginFailed(_)))
            .await;
        assert!(matches!(
            failed,
            ClientEvent::LoginFailed(LoginFailure::Rejected {
                code: RejectCode::BadCredentials,
                ..
            })
        ));
        client
            .until(|e| matches!(e, ClientEvent::Disconnected(_)))
            .await;
        server.shutdown().await;
    }
}

/// `Duration::MAX` as the server's login, write and shutdown timeouts
/// means "none", with reactors and with tasks.
#[tokio::test]
async fn timeouts_of_duration_max_mean_none() {
    use std::time::Duration;

    for reactor_threads in [0, 1] {
        let mut options = fast_options();
        options.reactor_threads = reactor_threads;
        options.core.login_timeout = Duration::MAX;
        options.write_timeout = Duration::MAX;
        options.shutdown_timeout = Duration::MAX;
        let server = start(options, Recorder::default()).await;
        for kind in KINDS {
            let mut alice = TestClient::online(&url(&server, kind), "alice", kind).await;
            assert_eq!(alice.request("hi").await.unwrap(), "hi".as_bytes());
            drop(alice);
        }
        server.shutdown().await;
    }
}
