//! Resume after a connection loss: the session is suspended (not over),
//! `resume` re-attaches it, every missed event arrives once and in order,
//! requests wait and are sent after the resume, and a request re-sent
//! after a resume is not executed twice. The opt-in backoff helper retries
//! until the server is reachable.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Kind, Proxy, TestServer, next_event, next_shapes, online, server_sees};
use session_client::{ClientState, ResumeError, RetryPolicy};
use session_server::LifecycleKind;

async fn missed_events_are_replayed_once_and_in_order(kind: Kind) {
    let server = TestServer::start().await;
    let handle = server.handle();
    let mut on_server = handle.subscribe();
    let proxy = Proxy::start(server.addr(kind)).await;
    let (client, recorder, info) = online(&proxy.url(kind), "alice", "web").await;
    let mut lifecycle = client.lifecycle();
    let mut events = client.take_events().unwrap();
    let session = info.session_id;

    assert_eq!(handle.publish(session, Bytes::from("one")).unwrap(), 1);
    assert_eq!(next_event(&mut events).await, (1, "one".into()));

    // The network fails: suspended, not over.
    proxy.cut();
    assert_eq!(next_shapes(&mut lifecycle, 1).await, ["disconnected: Lost"]);
    assert_eq!(client.state(), ClientState::Suspended);
    server_sees(&mut on_server, session, |k| *k == LifecycleKind::Detached).await;
    for body in ["two", "three", "four"] {
        handle.publish(session, Bytes::from(body)).unwrap();
    }

    let resumed = client.resume().await.unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.session_id, session);
    assert_eq!(
        next_shapes(&mut lifecycle, 2).await,
        ["connected", "online: resumed"]
    );
    assert_eq!(next_event(&mut events).await, (2, "two".into()));
    assert_eq!(next_event(&mut events).await, (3, "three".into()));
    assert_eq!(next_event(&mut events).await, (4, "four".into()));
    // Nothing twice: the next event is the next one published.
    handle.publish(session, Bytes::from("five")).unwrap();
    assert_eq!(next_event(&mut events).await, (5, "five".into()));

    assert_eq!(
        recorder.shapes(),
        [
            "connected",
            "online",
            "disconnected: Lost",
            "connected",
            "online: resumed"
        ]
    );
    assert!(matches!(
        client.resume().await,
        Err(ResumeError::NotSuspended)
    ));
}

async fn requests_made_while_suspended_go_out_after_the_resume(kind: Kind) {
    let server = TestServer::start().await;
    let (client, _recorder, _) = online(&server.url(kind), "alice", "web").await;
    client.drop_connection().await;
    assert_eq!(client.state(), ClientState::Suspended);

    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.request("while away").await }
    });
    // Not sent while there is no connection...
    tokio::task::yield_now().await;
    assert_eq!(server.app.executions("while away"), 0);
    // ...but right after the resume.
    client.resume().await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap(), "while away");
    assert_eq!(server.app.executions("while away"), 1);
}

async fn a_request_sent_again_after_a_resume_is_executed_once(kind: Kind) {
    let server = TestServer::start().await;
    let mut on_server = server.handle().subscribe();
    let (client, _recorder, info) = online(&server.url(kind), "alice", "web").await;

    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.request("hold once").await }
    });
    server.app.executed("hold once", 1).await;
    // The connection goes while the server is executing the request; its
    // response is cached for the resume.
    client.drop_connection().await;
    server_sees(&mut on_server, info.session_id, |k| {
        *k == LifecycleKind::Detached
    })
    .await;
    server.app.open_gate();

    client.resume().await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap(), "hold once");
    // The client sent it again; the server answered from its cache.
    assert_eq!(server.app.executions("hold once"), 1);
}

async fn resume_with_backoff_retries_until_the_server_is_reachable(kind: Kind) {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr(kind)).await;
    let (client, _recorder, info) = online(&proxy.url(kind), "alice", "web").await;
    let policy = RetryPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        max_attempts: Some(5),
        ..RetryPolicy::default()
    };

    // The server is unreachable for two attempts.
    proxy.refuse_next(2);
    client.drop_connection().await;
    let resumed = client.resume_with_backoff(&policy).await.unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.session_id, info.session_id);
    assert_eq!(proxy.accepted(), 1 + 3, "the login, then three attempts");
    assert_eq!(client.request("back").await.unwrap(), "back");

    // Unreachable for longer than the policy allows: the last error, and
    // the session is still suspended.
    proxy.refuse_next(100);
    client.drop_connection().await;
    let policy = RetryPolicy {
        max_attempts: Some(2),
        ..policy
    };
    let error = client.resume_with_backoff(&policy).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert_eq!(proxy.accepted(), 4 + 2);
    assert_eq!(client.state(), ClientState::Suspended);
}

over_tcp_and_ws!(
    missed_events_are_replayed_once_and_in_order,
    requests_made_while_suspended_go_out_after_the_resume,
    a_request_sent_again_after_a_resume_is_executed_once,
    resume_with_backoff_retries_until_the_server_is_reachable,
);
