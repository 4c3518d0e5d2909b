//! Resume after a connection loss: the session is suspended (not over),
//! `resume` re-attaches it, every missed event arrives once and in order,
//! requests wait and are sent after the resume, and a request re-sent
//! after a resume is not executed twice. The opt-in backoff helper retries
//! until the server is reachable, and waits as long as the server asks. A
//! resume the server refuses for now, or answers with a close signal,
//! leaves the session suspended.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    Kind, Proxy, TestServer, credentials, next_event, next_shapes, online, server_options,
    server_sees,
};
use session_client::{
    Client, ClientOptions, ClientState, CloseCode, CloseReason, LoginError, RejectCode,
    ResumeError, RetryPolicy,
};
use session_server::{LifecycleKind, Rate, ServerOptions};

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

/// Test options with a session window of 10 s, so that the waits below
/// (a second or two) stay well inside it.
fn roomy_options() -> ServerOptions {
    let mut options = server_options();
    options.core.timeout_heartbeats = 10;
    options
}

async fn a_resume_closed_before_the_answer_waits_for_the_servers_hint(kind: Kind) {
    // One new connection per second from an address, and a hint to match:
    // a connection beyond the rate is closed with POLICY_VIOLATION and
    // `retry_after` before its login is read.
    let hint = Duration::from_millis(1200);
    let server = TestServer::start_with(ServerOptions {
        connection_rate: Rate {
            burst: 1,
            per_second: 1.0,
        },
        retry_after: hint,
        ..roomy_options()
    })
    .await;
    let handle = server.handle();
    let (client, recorder, info) = online(&server.url(kind), "alice", "web").await;
    let mut events = client.take_events().unwrap();
    client.drop_connection().await;
    handle
        .publish(info.session_id, Bytes::from("while away"))
        .unwrap();

    // The login spent the address's only token: this connection is closed
    // at the door. That says nothing about the session.
    let error = client.resume().await.unwrap_err();
    assert!(
        matches!(
            &error,
            ResumeError::Closed(CloseReason::Server {
                code: CloseCode::PolicyViolation,
                retry_after: Some(after),
                ..
            }) if *after == hint
        ),
        "{error:?}"
    );
    assert_eq!(error.retry_after(), Some(hint));
    still_suspended(&error, &client, &recorder);

    // Backoff alone would spend three attempts within 50 ms, all refused;
    // waiting out the hint, the second attempt finds a token.
    let policy = RetryPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_secs(5),
        max_attempts: Some(3),
        ..RetryPolicy::default()
    };
    let resumed = client.resume_with_backoff(&policy).await.unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.session_id, info.session_id);
    assert_eq!(next_event(&mut events).await, (1, "while away".into()));
    assert!(recorder.offline_reasons().is_empty());
}

/// After a resume that failed for now: the error says to try again, the
/// session is still suspended, and the listener saw the new connection
/// come and go, with no `on_offline`.
fn still_suspended(error: &ResumeError, client: &Client, recorder: &common::Recorder) {
    assert!(error.is_retryable(), "{error:?}");
    assert_eq!(client.state(), ClientState::Suspended);
    assert_eq!(
        recorder.shapes(),
        [
            "connected",
            "online",
            "disconnected: Lost",
            "connected",
            "disconnected: Closed"
        ],
        "no on_offline: the session is not over"
    );
}

async fn a_resume_refused_for_now_leaves_the_session_suspended(kind: Kind) {
    // One failed login from an address, refilled in 2 s; once it is spent,
    // logins and resumes from the address are refused with RATE_LIMITED.
    let server = TestServer::start_with(ServerOptions {
        failed_login_rate: Rate {
            burst: 1,
            per_second: 0.5,
        },
        ..roomy_options()
    })
    .await;
    let url = server.url(kind);
    let (client, recorder, info) = online(&url, "alice", "web").await;
    client.drop_connection().await;

    // Someone else at the same address gets a password wrong.
    let guesser = Client::connect(&url, ClientOptions::default())
        .await
        .unwrap();
    let mut wrong = credentials("bob", "web");
    wrong.credential = Bytes::from("wrong");
    assert!(matches!(
        guesser.login(wrong).await,
        Err(LoginError::Rejected {
            code: RejectCode::BadCredentials,
            ..
        })
    ));

    // The server still holds alice's session, but refuses to resume it
    // for now.
    let error = client.resume().await.unwrap_err();
    assert!(
        matches!(
            &error,
            ResumeError::Rejected {
                code: RejectCode::RateLimited,
                ..
            }
        ),
        "{error:?}"
    );
    still_suspended(&error, &client, &recorder);

    // Once the address has a token again, the resume goes through.
    let policy = RetryPolicy {
        initial: Duration::from_millis(200),
        max: Duration::from_millis(500),
        max_attempts: Some(20),
        ..RetryPolicy::default()
    };
    let resumed = client.resume_with_backoff(&policy).await.unwrap();
    assert_eq!(resumed.session_id, info.session_id);
    assert_eq!(client.request("back").await.unwrap(), "back");
    assert!(recorder.offline_reasons().is_empty());
}

over_tcp_and_ws!(
    missed_events_are_replayed_once_and_in_order,
    requests_made_while_suspended_go_out_after_the_resume,
    a_request_sent_again_after_a_resume_is_executed_once,
    resume_with_backoff_retries_until_the_server_is_reachable,
    a_resume_closed_before_the_answer_waits_for_the_servers_hint,
    a_resume_refused_for_now_leaves_the_session_suspended,
);
