//! A client replaced by another login of the same user and device sees
//! LOGIN_CONFLICT; another device is not affected.

mod common;

use common::{Kind, TestServer, next_shapes, online};
use session_client::{ClientState, CloseCode};

async fn the_replaced_client_sees_login_conflict(kind: Kind) {
    let server = TestServer::start().await;
    let url = server.url(kind);
    let (first, first_seen, _) = online(&url, "alice", "web").await;
    let (phone, phone_seen, _) = online(&url, "alice", "ios").await;
    let mut lifecycle = first.lifecycle();

    let (second, second_seen, _) = online(&url, "alice", "web").await;

    assert_eq!(
        next_shapes(&mut lifecycle, 2).await,
        ["offline by server: login conflict", "disconnected: Closed"]
    );
    assert_eq!(
        first_seen.shapes(),
        [
            "connected",
            "online",
            "offline by server: login conflict",
            "disconnected: Closed"
        ]
    );
    assert_eq!(
        first_seen.offline_reasons()[0].code(),
        CloseCode::LoginConflict
    );
    assert_eq!(first.state(), ClientState::Closed);

    // The newer login and the other device carry on.
    assert_eq!(second_seen.shapes(), ["connected", "online"]);
    assert_eq!(second.request("still here").await.unwrap(), "still here");
    assert_eq!(phone_seen.shapes(), ["connected", "online"]);
    assert_eq!(phone.request("me too").await.unwrap(), "me too");
}

over_tcp_and_ws!(the_replaced_client_sees_login_conflict);
