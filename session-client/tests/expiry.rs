//! Expiry, both ways: a client suspended past the session timeout ends the
//! session as EXPIRED on its own; a client whose heartbeats stop reaching
//! the server is expired by the server and sees the server's EXPIRED.

mod common;

use std::time::Duration;

use common::{Kind, Proxy, TestServer, next_shapes, online_with, server_sees};
use session_client::{ClientOptions, ClientState, CloseCode, CloseReason, ResumeError};
use session_server::LifecycleKind;

/// A 100 ms heartbeat: the server's session timeout is then 300 ms.
fn fast_heartbeat() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.heartbeat = Some(Duration::from_millis(100));
    options
}

async fn a_client_suspended_too_long_expires(kind: Kind) {
    let server = TestServer::start().await;
    let (client, recorder, info) =
        online_with(&server.url(kind), "alice", "web", fast_heartbeat()).await;
    assert_eq!(
        info.heartbeat,
        Duration::from_millis(100),
        "the server's answer"
    );
    assert_eq!(info.session_timeout, Duration::from_millis(300));
    let mut lifecycle = client.lifecycle();

    client.drop_connection().await;
    assert_eq!(client.state(), ClientState::Suspended);

    // No resume: the session ends when the server has surely expired it.
    assert_eq!(
        next_shapes(&mut lifecycle, 2).await,
        ["disconnected: Lost", "offline: expired while suspended"]
    );
    assert_eq!(recorder.offline_reasons(), [CloseReason::Expired]);
    assert_eq!(CloseReason::Expired.code(), CloseCode::Expired);
    assert_eq!(client.state(), ClientState::Closed);
    match client.resume().await {
        Err(ResumeError::SessionEnded(CloseReason::Expired)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        recorder.shapes(),
        [
            "connected",
            "online",
            "disconnected: Lost",
            "offline: expired while suspended"
        ]
    );
}

async fn a_client_the_server_stops_hearing_sees_expired(kind: Kind) {
    let server = TestServer::start().await;
    let mut on_server = server.handle().subscribe();
    let proxy = Proxy::start(server.addr(kind)).await;
    let mut options = fast_heartbeat();
    // The client keeps waiting for the server much longer than the server
    // waits for the client, so the server's verdict arrives first.
    options.silence_heartbeats = 30;
    let (client, recorder, info) = online_with(&proxy.url(kind), "alice", "web", options).await;
    let mut lifecycle = client.lifecycle();

    // Nothing the client sends arrives any more; the server still talks.
    proxy.blackhole_upstream(true);

    assert_eq!(
        next_shapes(&mut lifecycle, 2).await,
        ["offline by server: expired", "disconnected: Closed"]
    );
    assert_eq!(recorder.offline_reasons()[0].code(), CloseCode::Expired);
    assert_eq!(
        recorder.shapes(),
        [
            "connected",
            "online",
            "offline by server: expired",
            "disconnected: Closed"
        ]
    );
    assert_eq!(
        server_sees(&mut on_server, info.session_id, |k| *k
            != LifecycleKind::Opened)
        .await,
        LifecycleKind::Expired
    );
}

over_tcp_and_ws!(
    a_client_suspended_too_long_expires,
    a_client_the_server_stops_hearing_sees_expired,
);
