//! A server shutting down closes every session with SERVER_SHUTDOWN and a
//! retry hint; clients see exactly that, and pending requests fail with it.

mod common;

use std::time::Duration;

use common::{Kind, TestServer, next_shapes, online};
use session_client::{ClientState, CloseCode, CloseReason, RequestError};

async fn clients_see_server_shutdown(kind: Kind) {
    let server = TestServer::start().await;
    let url = server.url(kind);
    let (alice, alice_seen, _) = online(&url, "alice", "web").await;
    let (bob, bob_seen, _) = online(&url, "bob", "web").await;
    let mut lifecycle = alice.lifecycle();
    let pending = tokio::spawn({
        let bob = bob.clone();
        async move { bob.request("hold on").await }
    });
    server.app.executed("hold on", 1).await;

    let report = server.server.shutdown().await;
    assert_eq!(report.connections_left, 0);

    assert_eq!(
        next_shapes(&mut lifecycle, 2).await,
        ["offline by server: server shutdown", "disconnected: Closed"]
    );
    // Bob's request fails once his changes are reported.
    let failed = pending.await.unwrap();
    for seen in [&alice_seen, &bob_seen] {
        assert_eq!(
            seen.shapes(),
            [
                "connected",
                "online",
                "offline by server: server shutdown",
                "disconnected: Closed"
            ]
        );
        let reason = &seen.offline_reasons()[0];
        let CloseReason::Server {
            code, retry_after, ..
        } = reason
        else {
            panic!("{reason:?}");
        };
        assert_eq!(*code, CloseCode::ServerShutdown);
        assert_eq!(
            *retry_after,
            Some(Duration::from_secs(5)),
            "the server's hint"
        );
    }
    assert_eq!(
        failed,
        Err(RequestError::SessionClosed(
            bob_seen.offline_reasons()[0].clone()
        ))
    );
    assert_eq!(alice.state(), ClientState::Closed);
    assert_eq!(bob.state(), ClientState::Closed);
}

over_tcp_and_ws!(clients_see_server_shutdown);
