//! A client that does not acknowledge events is closed with
//! `SLOW_CONSUMER`; one that does is not.

mod common;

use common::{KINDS, Recorder, Seen, TestClient, fast_options, start, url};
use session_core::{ClientEvent, CloseCode};
use session_server::SendError;

#[tokio::test]
async fn an_unacknowledging_client_is_closed_with_slow_consumer() {
    for kind in KINDS {
        let mut options = fast_options();
        options.core.max_unacked_events = 8;
        let recorder = Recorder::default();
        let server = start(options, recorder.clone()).await;
        let mut lazy = TestClient::online(&url(&server, kind), "alice", "web").await;
        let mut diligent = TestClient::online(&url(&server, kind), "bob", "web").await;
        let handle = server.handle();
        let (a, b) = (
            handle.user_sessions("alice")[0].id,
            handle.user_sessions("bob")[0].id,
        );
        for i in 0..8 {
            handle.publish(a, format!("{i}").into()).unwrap();
            handle.publish(b, format!("{i}").into()).unwrap();
            diligent
                .until(|e| matches!(e, ClientEvent::Message { seq, .. } if *seq == i + 1))
                .await;
            diligent.ack_all().await;
        }
        // Let bob's acknowledgements land before the ninth event.
        diligent.request("sync").await.unwrap();
        assert!(matches!(
            handle.publish(a, "one too many".into()),
            Err(SendError::Publish(session_core::PublishError::SlowConsumer))
        ));
        handle.publish(b, "fine".into()).unwrap();
        assert_eq!(lazy.closed_with().await, CloseCode::SlowConsumer);
        assert_eq!(
            lazy.messages().len(),
            8,
            "every accepted event was delivered"
        );
        recorder
            .wait_for(|s| s.contains(&Seen::Close("alice".into(), CloseCode::SlowConsumer)))
            .await;
        diligent
            .until(|e| matches!(e, ClientEvent::Message { seq: 9, .. }))
            .await;
        common::close_and_shut_down(server, (lazy, diligent)).await;
    }
}
