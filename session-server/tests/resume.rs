//! Resume over a new connection: every missed event replayed once and in
//! order, and a request retried across the resume executed once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{KINDS, Recorder, TestClient, fast_options, start, url};
use session_core::{ClientEvent, ClientState, CloseReason, RejectCode, ResponseError};
use session_server::demo::UserTable;
use session_server::{RequestHandler, ServerHandle, SessionInfo};

#[tokio::test]
async fn resume_replays_every_missed_event_once_and_in_order() {
    for kind in KINDS {
        let server = start(fast_options(), Recorder::default()).await;
        let mut client = TestClient::online(&url(&server, kind), "alice", "web").await;
        let handle = server.handle();
        let id = handle.user_sessions("alice")[0].id;
        for i in 1..=3 {
            handle.publish(id, format!("e{i}").into()).unwrap();
        }
        client
            .until(|e| matches!(e, ClientEvent::Message { seq: 3, .. }))
            .await;
        client.ack_all().await;
        handle.publish(id, "e4".into()).unwrap();
        client
            .until(|e| matches!(e, ClientEvent::Message { seq: 4, .. }))
            .await;
        // The connection drops; the server may or may not have noticed yet.
        client.drop_connection();
        for i in 5..=7 {
            handle.publish(id, format!("e{i}").into()).unwrap();
        }
        client.resume().await;
        assert_eq!(client.session.state(), ClientState::Online);
        client
            .until(|e| matches!(e, ClientEvent::Message { seq: 7, .. }))
            .await;
        assert_eq!(
            client.messages(),
            ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
        );
        assert!(
            !client
                .events
                .iter()
                .any(|e| matches!(e, ClientEvent::Offline(_)))
        );
        // Still the same session, still usable.
        assert_eq!(handle.user_sessions("alice").len(), 1);
        assert_eq!(client.request("after").await.unwrap(), "after".as_bytes());
        common::close_and_shut_down(server, client).await;
    }
}

#[tokio::test]
async fn resume_after_expiry_is_rejected() {
    for kind in KINDS {
        let server = start(fast_options(), Recorder::default()).await;
        let mut client = TestClient::online_with(
            &url(&server, kind),
            "alice",
            "web",
            Duration::from_millis(100),
        )
        .await;
        client.drop_connection();
        // The session timeout is 200 ms.
        let deadline = Instant::now() + common::SOON;
        while server.handle().session_count() > 0 {
            assert!(
                Instant::now() < deadline,
                "the detached session never expired"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The client's own clock is stopped, so the outcome is the server's
        // explicit answer: the session is gone.
        client.timers = false;
        assert_eq!(client.session.state(), ClientState::Suspended);
        client.resume().await;
        assert!(matches!(
            client.offline().await,
            CloseReason::ResumeRejected {
                code: RejectCode::SessionNotFound,
                ..
            }
        ));
        server.shutdown().await;
    }
}

/// Answers after a pause, counting executions.
#[derive(Clone, Default)]
struct Slow(Arc<AtomicUsize>);

impl RequestHandler for Slow {
    async fn handle(
        &self,
        _session: &SessionInfo,
        body: Bytes,
        _server: &ServerHandle,
    ) -> Result<Bytes, ResponseError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok(body)
    }
}

#[tokio::test]
async fn a_request_retried_across_a_resume_is_executed_once() {
    for kind in KINDS {
        let slow = Slow::default();
        let server = common::loopback()
            .options(fast_options())
            .authenticator(UserTable::demo())
            .request_handler(slow.clone())
            .start()
            .await
            .unwrap();
        let mut client = TestClient::online(&url(&server, kind), "alice", "web").await;
        let id = client
            .session
            .request(Instant::now(), "transfer 10".into())
            .unwrap();
        client.flush().await;
        // Wait until the server runs it, then lose the connection before
        // the answer can arrive.
        while slow.0.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client.drop_connection();
        client.resume().await;
        assert_eq!(client.response(id).await.unwrap(), "transfer 10".as_bytes());
        assert_eq!(slow.0.load(Ordering::SeqCst), 1, "executed exactly once");
        common::close_and_shut_down(server, client).await;
    }
}
