//! A second login of the same user and device replaces the first, which
//! reads `LOGIN_CONFLICT`; other devices are untouched.

mod common;

use common::{KINDS, Recorder, TestClient, fast_options, start, url};
use session_core::{
    ClientEvent, ClientState, CloseCode, ConflictPolicy, ConflictRules, LoginFailure, RejectCode,
};

#[tokio::test]
async fn the_older_session_is_replaced_with_login_conflict() {
    for kind in KINDS {
        let server = start(fast_options(), Recorder::default()).await;
        let url = url(&server, kind);
        let mut first = TestClient::online(&url, "alice", "web").await;
        let mut phone = TestClient::online(&url, "alice", "ios").await;
        let second = TestClient::online(&url, "alice", "web").await;
        assert_eq!(first.closed_with().await, CloseCode::LoginConflict);
        assert_eq!(phone.request("ping").await.unwrap(), "ping".as_bytes());
        assert_eq!(server.handle().user_sessions("alice").len(), 2);
        common::close_and_shut_down(server, (first, phone, second)).await;
    }
}

#[tokio::test]
async fn reject_newer_keeps_the_first_session() {
    for kind in KINDS {
        let mut options = fast_options();
        options.conflict = ConflictRules::uniform(ConflictPolicy::RejectNewer);
        let server = start(options, Recorder::default()).await;
        let url = url(&server, kind);
        let mut first = TestClient::online(&url, "alice", "web").await;
        let mut second = TestClient::connect(&url, Default::default()).await;
        second.login("alice", "web").await;
        assert!(second.events.iter().any(|e| matches!(
            e,
            ClientEvent::LoginFailed(LoginFailure::Rejected {
                code: RejectCode::LoginConflict,
                ..
            })
        )));
        assert_eq!(first.session.state(), ClientState::Online);
        assert_eq!(first.request("ping").await.unwrap(), "ping".as_bytes());
        common::close_and_shut_down(server, (first, second)).await;
    }
}
