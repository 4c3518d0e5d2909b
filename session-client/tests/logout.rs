//! Logout: the logout is sent, flushed and the connection closed; the
//! session ends as LOGGED_OUT, each listener firing exactly once, in order.

mod common;

use common::{Kind, TestServer, next_shapes, online, server_sees};
use futures_util::StreamExt;
use session_client::{ClientState, CloseCode, CloseReason, LogoutError, RequestError};
use session_server::LifecycleKind;

async fn logout_ends_the_session_as_logged_out(kind: Kind) {
    let server = TestServer::start().await;
    let mut on_server = server.handle().subscribe();
    let (client, recorder, info) = online(&server.url(kind), "alice", "web").await;
    let mut lifecycle = client.lifecycle();
    assert!(!info.resumed);
    assert_eq!(client.state(), ClientState::Online);
    assert_eq!(client.session_id(), Some(info.session_id));
    assert_eq!(client.request("echo").await.unwrap(), "echo");

    client.logout().await.unwrap();

    // `logout` returns once the connection is closed: everything is reported.
    assert_eq!(
        recorder.shapes(),
        [
            "connected",
            "online",
            "offline: logged out",
            "disconnected: Closed"
        ]
    );
    assert_eq!(recorder.offline_reasons(), [CloseReason::LoggedOut]);
    assert_eq!(recorder.offline_reasons()[0].code(), CloseCode::LoggedOut);
    assert_eq!(client.state(), ClientState::Closed);
    // The stream saw the same changes from the moment it was taken.
    assert_eq!(
        next_shapes(&mut lifecycle, 2).await,
        ["offline: logged out", "disconnected: Closed"]
    );
    // The server got the logout: the session closed as LOGGED_OUT.
    let closed = server_sees(&mut on_server, info.session_id, |kind| {
        matches!(kind, LifecycleKind::Closed { .. })
    })
    .await;
    assert!(
        matches!(
            closed,
            LifecycleKind::Closed {
                code: CloseCode::LoggedOut,
                ..
            }
        ),
        "{closed:?}"
    );

    // After the session: typed errors, and nothing more fires.
    assert_eq!(
        client.request("late").await,
        Err(RequestError::SessionClosed(CloseReason::LoggedOut))
    );
    assert_eq!(client.logout().await, Err(LogoutError::NotLoggedIn));
    assert_eq!(recorder.shapes().len(), 4, "{:?}", recorder.shapes());
}

async fn logout_while_suspended_ends_the_session_locally(kind: Kind) {
    let server = TestServer::start().await;
    let (client, recorder, _) = online(&server.url(kind), "alice", "web").await;
    client.drop_connection().await;
    assert_eq!(client.state(), ClientState::Suspended);
    client.logout().await.unwrap();
    assert_eq!(
        recorder.shapes(),
        [
            "connected",
            "online",
            "disconnected: Lost",
            "offline: logged out"
        ]
    );
    assert_eq!(client.state(), ClientState::Closed);
}

async fn dropping_the_last_handle_logs_out(kind: Kind) {
    let server = TestServer::start().await;
    let mut on_server = server.handle().subscribe();
    let (client, recorder, info) = online(&server.url(kind), "alice", "web").await;
    let events = client.take_events().unwrap();
    let copy = client.clone();
    drop(client);
    assert_eq!(copy.request("still here").await.unwrap(), "still here");
    drop(copy);

    // The client's task logs out and ends; the event stream alone does not
    // keep it alive, so the stream ends too.
    let rest: Vec<_> = tokio::time::timeout(common::SOON, events.collect())
        .await
        .expect("the stream ends");
    assert!(rest.is_empty());
    assert_eq!(recorder.offline_reasons(), [CloseReason::LoggedOut]);
    let closed = server_sees(&mut on_server, info.session_id, |kind| {
        matches!(kind, LifecycleKind::Closed { .. })
    })
    .await;
    assert!(
        matches!(
            closed,
            LifecycleKind::Closed {
                code: CloseCode::LoggedOut,
                ..
            }
        ),
        "{closed:?}"
    );
}

over_tcp_and_ws!(
    logout_ends_the_session_as_logged_out,
    logout_while_suspended_ends_the_session_locally,
    dropping_the_last_handle_logs_out,
);
