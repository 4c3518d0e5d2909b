//! A server that goes silent (a partition the socket does not notice):
//! the client gives the connection up after `silence_heartbeats`
//! intervals, reports it as such, keeps the session suspended, and resumes
//! it once the server is reachable again.

mod common;

use std::time::Duration;

use common::{Kind, Proxy, TestServer, next_shapes, online_with};
use session_client::{ClientOptions, ClientState};

async fn a_silent_server_suspends_the_session_until_resumed(kind: Kind) {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr(kind)).await;
    let mut options = ClientOptions::default();
    // Heartbeat 200 ms (session timeout 600 ms); silent after 400 ms.
    options.heartbeat = Some(Duration::from_millis(200));
    options.close_linger = Duration::from_millis(100);
    let (client, recorder, info) = online_with(&proxy.url(kind), "alice", "web", options).await;
    let mut lifecycle = client.lifecycle();

    proxy.blackhole_downstream(true);
    assert_eq!(
        next_shapes(&mut lifecycle, 1).await,
        ["disconnected: ServerSilent"]
    );
    assert_eq!(client.state(), ClientState::Suspended);

    // The partition heals: the session comes back, same id, nothing lost.
    proxy.blackhole_downstream(false);
    let resumed = client.resume().await.unwrap();
    assert_eq!(resumed.session_id, info.session_id);
    assert_eq!(client.request("back").await.unwrap(), "back");
    assert_eq!(
        recorder.shapes(),
        [
            "connected",
            "online",
            "disconnected: ServerSilent",
            "connected",
            "online: resumed"
        ]
    );
}

over_tcp_and_ws!(a_silent_server_suspends_the_session_until_resumed);
