//! A kicked client sees KICKED with the server's message, not a generic
//! close: offline once, then disconnected once, and the session cannot be
//! resumed.

mod common;

use common::{Kind, TestServer, next_shapes, online};
use session_client::{ClientState, CloseCode, CloseReason, ResumeError};

async fn a_kicked_client_sees_kicked(kind: Kind) {
    let server = TestServer::start().await;
    let (client, recorder, info) = online(&server.url(kind), "alice", "web").await;
    let mut lifecycle = client.lifecycle();

    server.handle().kick(info.session_id, "bye now").unwrap();

    assert_eq!(
        next_shapes(&mut lifecycle, 2).await,
        ["offline by server: kicked", "disconnected: Closed"]
    );
    assert_eq!(
        recorder.shapes(),
        [
            "connected",
            "online",
            "offline by server: kicked",
            "disconnected: Closed"
        ]
    );
    let reasons = recorder.offline_reasons();
    let CloseReason::Server { code, message, .. } = &reasons[0] else {
        panic!("{reasons:?}");
    };
    assert_eq!((*code, message.as_str()), (CloseCode::Kicked, "bye now"));
    assert_eq!(client.state(), ClientState::Closed);

    // Over for good: no resume, and the reason is kept.
    match client.resume().await {
        Err(ResumeError::SessionEnded(reason)) => assert_eq!(reason, reasons[0]),
        other => panic!("{other:?}"),
    }
    assert_eq!(recorder.shapes().len(), 4, "{:?}", recorder.shapes());
}

over_tcp_and_ws!(a_kicked_client_sees_kicked);
