//! When a session ends, every request still pending fails at once with a
//! typed error carrying the close reason: the reason `on_offline` reports.

mod common;

use std::time::Duration;

use common::{Kind, TestServer, online};
use futures_util::future::join_all;
use session_client::{CloseCode, CloseReason, RequestError};

async fn pending_requests_fail_with_the_close_reason_when_kicked(kind: Kind) {
    let server = TestServer::start().await;
    let (client, recorder, info) = online(&server.url(kind), "alice", "web").await;
    // 200 requests the server holds: 128 sent (the window), 72 waiting here.
    let requests = join_all((0..200).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.request(format!("hold {i}")).await })
    }));
    let requests = tokio::spawn(requests);
    server.app.executed_any(128).await;

    server.handle().kick(info.session_id, "go away").unwrap();

    // All fail at once: long before any timeout.
    let results = tokio::time::timeout(Duration::from_secs(5), requests)
        .await
        .expect("failed at once")
        .unwrap();
    let reason = recorder.offline_reasons()[0].clone();
    assert_eq!(reason.code(), CloseCode::Kicked);
    for result in results {
        assert_eq!(
            result.unwrap(),
            Err(RequestError::SessionClosed(reason.clone()))
        );
    }
}

async fn pending_requests_fail_as_logged_out_on_logout(kind: Kind) {
    let server = TestServer::start().await;
    let (client, _recorder, _) = online(&server.url(kind), "alice", "web").await;
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.request("hold").await }
    });
    server.app.executed("hold", 1).await;
    client.logout().await.unwrap();
    assert_eq!(
        pending.await.unwrap(),
        Err(RequestError::SessionClosed(CloseReason::LoggedOut))
    );
}

over_tcp_and_ws!(
    pending_requests_fail_with_the_close_reason_when_kicked,
    pending_requests_fail_as_logged_out_on_logout,
);
