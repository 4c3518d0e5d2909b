//! Pushed events: none is missed before the stream is taken, and the ack
//! policy. Taking an event acknowledges it, so a client that keeps taking
//! never overflows the server's buffer; one that stops taking (or stops
//! acknowledging, under the manual policy) is closed as SLOW_CONSUMER.

mod common;

use bytes::Bytes;
use common::{Kind, TestServer, next_event, next_shapes, online, online_with, server_options};
use session_client::{AckPolicy, ClientOptions, ClientState, CloseCode};
use session_server::ServerOptions;

/// The server keeps at most 16 unacknowledged events per session.
fn small_buffer() -> ServerOptions {
    let mut options = server_options();
    options.core.max_unacked_events = 16;
    options
}

async fn events_wait_in_the_stream_until_taken(kind: Kind) {
    let server = TestServer::start().await;
    let (client, _recorder, info) = online(&server.url(kind), "alice", "web").await;
    for body in ["a", "b", "c"] {
        server
            .handle()
            .publish(info.session_id, Bytes::from(body))
            .unwrap();
    }
    // The relay of the demo application delivers to every session of a user.
    client.request("to alice d").await.unwrap();

    let mut events = client.take_events().unwrap();
    assert!(client.take_events().is_none(), "one stream per client");
    assert_eq!(next_event(&mut events).await, (1, "a".into()));
    assert_eq!(next_event(&mut events).await, (2, "b".into()));
    assert_eq!(next_event(&mut events).await, (3, "c".into()));
    assert_eq!(next_event(&mut events).await, (4, "alice: d".into()));
}

async fn taking_events_acknowledges_them(kind: Kind) {
    let server = TestServer::start_with(small_buffer()).await;
    let (client, recorder, info) = online(&server.url(kind), "alice", "web").await;
    let mut events = client.take_events().unwrap();
    // Far more than the server's buffer, one at a time.
    for seq in 1..=200u64 {
        server
            .handle()
            .publish(info.session_id, Bytes::from(seq.to_string()))
            .expect("acknowledged events leave room");
        assert_eq!(next_event(&mut events).await, (seq, seq.to_string()));
    }
    assert_eq!(client.state(), ClientState::Online);
    assert_eq!(recorder.shapes(), ["connected", "online"]);
}

async fn events_not_taken_overflow_the_server_buffer(kind: Kind) {
    let server = TestServer::start_with(small_buffer()).await;
    let (client, recorder, info) = online(&server.url(kind), "alice", "web").await;
    let mut lifecycle = client.lifecycle();
    for seq in 1..=16u64 {
        assert_eq!(
            server
                .handle()
                .publish(info.session_id, Bytes::from("x"))
                .unwrap(),
            seq
        );
    }
    assert!(
        server
            .handle()
            .publish(info.session_id, Bytes::from("x"))
            .is_err()
    );
    assert_eq!(
        next_shapes(&mut lifecycle, 2).await,
        ["offline by server: slow consumer", "disconnected: Closed"]
    );
    assert_eq!(
        recorder.offline_reasons()[0].code(),
        CloseCode::SlowConsumer
    );
    // Every event the server accepted was delivered all the same.
    let mut events = client.take_events().unwrap();
    for seq in 1..=16u64 {
        assert_eq!(next_event(&mut events).await.0, seq);
    }
}

async fn manual_acknowledgement(kind: Kind) {
    let server = TestServer::start_with(small_buffer()).await;
    let mut options = ClientOptions::default();
    options.ack = AckPolicy::Manual;
    let (client, recorder, info) = online_with(&server.url(kind), "alice", "web", options).await;
    let mut events = client.take_events().unwrap();
    for seq in 1..=200u64 {
        server
            .handle()
            .publish(info.session_id, Bytes::from("x"))
            .expect("acknowledged events leave room");
        let event = common::next(&mut events).await;
        assert_eq!(event.seq, seq);
        client.ack(&event);
    }
    assert_eq!(recorder.shapes(), ["connected", "online"]);

    // Taking without acknowledging fills the buffer.
    let mut lifecycle = client.lifecycle();
    let mut accepted = 0;
    while server
        .handle()
        .publish(info.session_id, Bytes::from("x"))
        .is_ok()
    {
        common::next(&mut events).await;
        accepted += 1;
        assert!(accepted <= 16, "the server kept accepting");
    }
    assert_eq!(
        next_shapes(&mut lifecycle, 2).await,
        ["offline by server: slow consumer", "disconnected: Closed"]
    );
}

over_tcp_and_ws!(
    events_wait_in_the_stream_until_taken,
    taking_events_acknowledges_them,
    events_not_taken_overflow_the_server_buffer,
    manual_acknowledgement,
);
