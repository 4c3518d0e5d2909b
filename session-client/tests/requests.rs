//! Requests: many in flight at once (more than the server's window), each
//! answered with its own response; timeouts; the server's errors; no
//! request without a session.

mod common;

use std::time::{Duration, Instant};

use common::{Kind, TestServer, credentials, online, online_with};
use futures_util::future::join_all;
use session_client::core::ErrorCode;
use session_client::{Client, ClientOptions, ClientState, RequestError};

async fn many_requests_in_flight_each_get_their_own_response(kind: Kind) {
    let server = TestServer::start().await;
    let (client, _recorder, _) = online(&server.url(kind), "alice", "web").await;
    // The server's window is 128 requests: the rest wait for a free slot.
    let bodies: Vec<String> = (0..300).map(|i| format!("request {i}")).collect();
    let responses = join_all(bodies.iter().map(|body| client.request(body.clone()))).await;
    for (body, response) in bodies.iter().zip(responses) {
        assert_eq!(response.unwrap(), body.as_str());
    }
    assert_eq!(server.app.log.borrow().len(), 300, "each executed once");
}

async fn a_request_without_an_answer_times_out(kind: Kind) {
    let server = TestServer::start().await;
    let mut options = ClientOptions::default();
    options.request_timeout = Duration::from_millis(200);
    let (client, _recorder, _) = online_with(&server.url(kind), "alice", "web", options).await;

    let started = Instant::now();
    assert_eq!(
        client.request("hold forever").await,
        Err(RequestError::TimedOut)
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The session carries on.
    assert_eq!(client.state(), ClientState::Online);
    assert_eq!(
        client.request("still online").await.unwrap(),
        "still online"
    );
}

async fn one_call_can_have_a_shorter_timeout(kind: Kind) {
    let server = TestServer::start().await;
    // The default request timeout is 30 s.
    let (client, _recorder, _) = online(&server.url(kind), "alice", "web").await;
    let answer = tokio::time::timeout(
        common::SOON,
        client.request_with_timeout("hold", Duration::from_millis(100)),
    )
    .await
    .expect("the call's own deadline applies");
    assert_eq!(answer, Err(RequestError::TimedOut));
    assert_eq!(
        client.request("still online").await.unwrap(),
        "still online"
    );
}

async fn the_servers_error_is_typed(kind: Kind) {
    let server = TestServer::start().await;
    let (client, _recorder, _) = online(&server.url(kind), "alice", "web").await;
    match client.request(&b"to \xff"[..]).await {
        Err(RequestError::Server(error)) => assert_eq!(error.code, ErrorCode::InvalidRequest),
        other => panic!("{other:?}"),
    }
}

async fn no_request_without_a_session(kind: Kind) {
    let server = TestServer::start().await;
    let client = Client::connect(&server.url(kind), ClientOptions::default())
        .await
        .unwrap();
    assert_eq!(
        client.request("too early").await,
        Err(RequestError::NotLoggedIn)
    );
    client.login(credentials("alice", "web")).await.unwrap();
    assert_eq!(client.request("now").await.unwrap(), "now");
}

over_tcp_and_ws!(
    many_requests_in_flight_each_get_their_own_response,
    a_request_without_an_answer_times_out,
    one_call_can_have_a_shorter_timeout,
    the_servers_error_is_typed,
    no_request_without_a_session,
);
