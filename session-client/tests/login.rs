//! Connecting and logging in: typed errors for a refused connection and
//! bad credentials, no session-layer callback for a login that never got
//! online, and a new connection for a new login.

mod common;

use common::{Kind, Recorder, TestServer, credentials};
use session_client::core::RejectCode;
use session_client::{
    Client, ClientOptions, ClientState, ConnectError, LoginError, TransportError,
};

async fn bad_credentials_are_rejected_then_a_new_connection_logs_in(kind: Kind) {
    let server = TestServer::start().await;
    let recorder = Recorder::default();
    let client = Client::connect(&server.url(kind), recorder.options())
        .await
        .unwrap();
    assert_eq!(client.state(), ClientState::Connected);
    let mut wrong = credentials("alice", "web");
    wrong.credential = "guess".into();

    match client.login(wrong).await {
        Err(LoginError::Rejected { code, .. }) => assert_eq!(code, RejectCode::BadCredentials),
        other => panic!("{other:?}"),
    }
    // The server closed the connection; no session was ever online. The
    // changes are reported by the time `login` returns.
    assert_eq!(recorder.shapes(), ["connected", "disconnected: Closed"]);
    assert_eq!(client.state(), ClientState::Disconnected);
    assert_eq!(
        client.login(credentials("alice", "web")).await,
        Err(LoginError::NotConnected)
    );

    client.reconnect().await.unwrap();
    // Reported by the time `reconnect` returns.
    assert_eq!(
        recorder.shapes(),
        ["connected", "disconnected: Closed", "connected"]
    );
    assert_eq!(client.state(), ClientState::Connected);
    assert!(matches!(
        client.reconnect().await,
        Err(ConnectError::AlreadyConnected)
    ));
    let info = client.login(credentials("alice", "web")).await.unwrap();
    assert!(!info.resumed);
    assert_eq!(
        client.login(credentials("alice", "web")).await,
        Err(LoginError::SessionInProgress)
    );
    assert_eq!(
        recorder.shapes(),
        ["connected", "disconnected: Closed", "connected", "online"]
    );
}

async fn a_new_session_after_logout_on_the_same_client(kind: Kind) {
    let server = TestServer::start().await;
    let recorder = Recorder::default();
    let client = Client::connect(&server.url(kind), recorder.options())
        .await
        .unwrap();
    let first = client.login(credentials("alice", "web")).await.unwrap();
    client.logout().await.unwrap();
    client.reconnect().await.unwrap();
    let second = client.login(credentials("alice", "web")).await.unwrap();
    assert_ne!(first.session_id, second.session_id);
    assert_eq!(client.session_id(), Some(second.session_id));
    assert_eq!(client.request("again").await.unwrap(), "again");
    assert_eq!(
        recorder.shapes(),
        [
            "connected",
            "online",
            "offline: logged out",
            "disconnected: Closed",
            "connected",
            "online"
        ]
    );
}

async fn connection_errors_are_typed(kind: Kind) {
    // A port nobody listens on: bind one, then free it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    match Client::connect(&common::url(kind, addr), ClientOptions::default()).await {
        Err(ConnectError::Transport(TransportError::Refused { .. })) => {}
        other => panic!("{other:?}"),
    }
    match Client::connect("http://127.0.0.1:1", ClientOptions::default()).await {
        Err(ConnectError::Transport(TransportError::InvalidUrl { .. })) => {}
        other => panic!("{other:?}"),
    }
}

over_tcp_and_ws!(
    bad_credentials_are_rejected_then_a_new_connection_logs_in,
    a_new_session_after_logout_on_the_same_client,
    connection_errors_are_typed,
);
