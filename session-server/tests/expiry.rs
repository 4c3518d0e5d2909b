//! A silent client expires: the listener sees open, expire, close; the
//! client reads `EXPIRED`.

mod common;

use std::time::Duration;

use common::{KINDS, Recorder, Seen, TestClient, fast_options, start, url};
use session_core::CloseCode;

const FAST: Duration = Duration::from_millis(100);

#[tokio::test]
async fn a_silent_client_expires_with_expired() {
    for kind in KINDS {
        let recorder = Recorder::default();
        let server = start(fast_options(), recorder.clone()).await;
        let mut client = TestClient::online_with(&url(&server, kind), "alice", "web", FAST).await;
        // The client stops sending anything (no heartbeats).
        client.timers = false;
        let seen = recorder
            .wait_for(|s| s.iter().any(|e| matches!(e, Seen::Close(..))))
            .await;
        assert_eq!(
            seen,
            [
                Seen::Open("alice".into()),
                Seen::Expire("alice".into()),
                Seen::Close("alice".into(), CloseCode::Expired)
            ]
        );
        // The close signal was sent before the connection closed.
        assert_eq!(client.closed_with().await, CloseCode::Expired);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn heartbeats_keep_a_session_alive_well_past_its_timeout() {
    for kind in KINDS {
        let recorder = Recorder::default();
        let server = start(fast_options(), recorder.clone()).await;
        let mut client = TestClient::online_with(&url(&server, kind), "alice", "web", FAST).await;
        // Timeout is 2 x 100 ms; run for ten times that.
        client.run_for(Duration::from_secs(2)).await;
        assert_eq!(recorder.seen(), [Seen::Open("alice".into())]);
        assert_eq!(
            client.request("still here").await.unwrap(),
            "still here".as_bytes()
        );
        common::close_and_shut_down(server, client).await;
    }
}
