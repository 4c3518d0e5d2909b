//! The backend kicks a session: the client reads `KICKED`, and pending
//! requests fail with it.

mod common;

use common::{KINDS, Recorder, Seen, TestClient, fast_options, start, url};
use session_core::CloseCode;

#[tokio::test]
async fn a_kicked_client_sees_kicked() {
    for kind in KINDS {
        let recorder = Recorder::default();
        let server = start(fast_options(), recorder.clone()).await;
        let mut client = TestClient::online(&url(&server, kind), "alice", "web").await;
        let id = server.handle().user_sessions("alice")[0].id;
        server.handle().kick(id, "operator said so").unwrap();
        assert_eq!(client.closed_with().await, CloseCode::Kicked);
        recorder
            .wait_for(|s| s.contains(&Seen::Close("alice".into(), CloseCode::Kicked)))
            .await;
        assert!(server.handle().session(id).is_none());
        assert!(server.handle().kick(id, "again").is_err());
        server.shutdown().await;
    }
}
