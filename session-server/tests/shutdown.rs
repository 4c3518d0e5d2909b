//! Graceful shutdown reaches every session with `SERVER_SHUTDOWN`, and
//! every connection closes within the bound.

mod common;

use common::{Recorder, TestClient, fast_options, start, url};
use session_core::{ClientEvent, CloseCode, CloseReason};
use session_transport::ConnectOptions;

#[tokio::test]
async fn shutdown_reaches_every_session_on_every_transport() {
    let recorder = Recorder::default();
    let server = start(fast_options(), recorder.clone()).await;
    let mut clients = Vec::new();
    for (i, kind) in ["tcp", "ws", "tcp", "ws"].into_iter().enumerate() {
        clients.push(TestClient::online(&url(&server, kind), "alice", &format!("d{i}")).await);
    }
    // A connection still logging in is told too.
    let mut pending = session_transport::connect(&url(&server, "tcp"), &ConnectOptions::default())
        .await
        .unwrap();
    while server.handle().connection_count() < 5 {
        tokio::task::yield_now().await;
    }

    let (report, codes) = tokio::join!(server.shutdown(), async {
        let mut codes = Vec::new();
        for client in &mut clients {
            codes.push(client.closed_with().await);
        }
        codes
    });
    assert_eq!(codes, [CloseCode::ServerShutdown; 4]);
    assert_eq!(report.sessions_closed, 4);
    assert_eq!(report.connections_left, 0);
    for client in &clients {
        let offline = client
            .events
            .iter()
            .find_map(|e| match e {
                ClientEvent::Offline(CloseReason::Server { retry_after, .. }) => Some(*retry_after),
                _ => None,
            })
            .unwrap();
        assert!(offline.is_some(), "shutdown carries a retry hint");
    }
    assert_eq!(
        common::read_close_signal(&mut pending).await,
        Some(CloseCode::ServerShutdown)
    );
}
