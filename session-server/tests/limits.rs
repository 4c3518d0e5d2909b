//! Per-IP limits: connections at once, and failed logins.

mod common;

use common::{Recorder, TestClient, fast_options, start, url};
use session_core::{ClientEvent, CloseCode, Credentials, LoginFailure, RejectCode};
use session_server::Rate;
use session_transport::ConnectOptions;

#[tokio::test]
async fn connections_over_the_per_ip_limit_are_refused_with_policy_violation() {
    for kind in common::KINDS {
        let mut options = fast_options();
        options.max_connections_per_ip = 2;
        let server = start(options, Recorder::default()).await;
        let url = url(&server, kind);
        let mut first = TestClient::online(&url, "alice", "a").await;
        let second = TestClient::online(&url, "alice", "b").await;
        let mut third = session_transport::connect(&url, &ConnectOptions::default())
            .await
            .unwrap();
        assert_eq!(
            common::read_close_signal(&mut third).await,
            Some(CloseCode::PolicyViolation)
        );
        assert_eq!(
            first.request("still fine").await.unwrap(),
            "still fine".as_bytes()
        );
        common::close_and_shut_down(server, (first, second, third)).await;
    }
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_ip() {
    let mut options = fast_options();
    options.failed_login_rate = Rate {
        burst: 2,
        per_second: 0.01,
    };
    let server = start(options, Recorder::default()).await;
    let url = url(&server, "tcp");
    let attempt = |password: &'static str| {
        let url = url.clone();
        async move {
            let mut client = TestClient::connect(&url, Default::default()).await;
            client
                .session
                .login(
                    std::time::Instant::now(),
                    Credentials {
                        user_id: "alice".into(),
                        credential: password.into(),
                        ..Default::default()
                    },
                )
                .unwrap();
            match client
                .until(|e| matches!(e, ClientEvent::LoginFailed(_) | ClientEvent::Online(_)))
                .await
            {
                ClientEvent::LoginFailed(LoginFailure::Rejected { code, .. }) => Some(code),
                _ => None,
            }
        }
    };
    assert_eq!(attempt("guess1").await, Some(RejectCode::BadCredentials));
    assert_eq!(attempt("guess2").await, Some(RejectCode::BadCredentials));
    // The bucket is empty: even the right password is refused for now.
    assert_eq!(attempt("alice-secret").await, Some(RejectCode::RateLimited));
    server.shutdown().await;
}
