//! Plain-TCP sessions behave the same whichever drives them: a task each
//! (`reactor_threads: 0`), one reactor, or several, with sessions spread
//! across reactors and moved between them by a resume.

mod common;

use std::time::Duration;

use common::{Recorder, Seen, TestClient, fast_options, start, url};
use session_core::{ClientEvent, ClientState, CloseCode, ServerState};
use session_server::{LifecycleKind, ServerOptions};

/// Sessions per server: more than the largest reactor count, so several
/// share a reactor and every reactor gets some.
const USERS: [&str; 6] = ["load-0", "load-1", "load-2", "load-3", "load-4", "load-5"];

fn options(reactor_threads: usize) -> ServerOptions {
    ServerOptions {
        reactor_threads,
        ..fast_options()
    }
}

#[tokio::test]
async fn sessions_work_alike_with_tasks_one_reactor_and_several() {
    for reactors in [0, 1, 3] {
        let recorder = Recorder::default();
        let server = start(options(reactors), recorder.clone()).await;
        let url = url(&server, "tcp");
        let mut clients = Vec::new();
        for user in USERS {
            clients.push(TestClient::online(&url, user, "web").await);
        }
        assert_eq!(
            server.handle().session_count(),
            USERS.len(),
            "{reactors} reactors"
        );

        // Requests are answered, and relays cross between sessions (and so
        // between reactors).
        for (i, client) in clients.iter_mut().enumerate() {
            let next = USERS[(i + 1) % USERS.len()];
            let body = format!("to {next} hello from {}", USERS[i]);
            assert_eq!(
                client.request(&body).await.unwrap(),
                "delivered to 1 sessions".as_bytes(),
                "{reactors} reactors"
            );
        }
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .until(|e| matches!(e, ClientEvent::Message { .. }))
                .await;
            let from = USERS[(i + USERS.len() - 1) % USERS.len()];
            assert_eq!(client.messages(), [format!("{from}: hello from {from}")]);
        }

        // A dropped connection detaches its session; events published
        // meanwhile are replayed on the resumed connection, which may be on
        // another reactor.
        let id = server.handle().user_sessions("load-2")[0].id;
        clients[2].drop_connection();
        let detached = async {
            while server.handle().state(id) != Some(ServerState::Detached) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(common::SOON, detached).await.unwrap();
        server.handle().publish(id, "while away".into()).unwrap();
        clients[2].resume().await;
        assert_eq!(clients[2].session.state(), ClientState::Online);
        clients[2]
            .until(|e| matches!(e, ClientEvent::Message { seq: 2, .. }))
            .await;
        assert_eq!(
            clients[2].messages(),
            ["load-1: hello from load-1", "while away"],
            "{reactors} reactors"
        );
        // The resumed session still answers.
        assert_eq!(
            clients[2].request("still here").await.unwrap(),
            "still here".as_bytes()
        );

        // A kick reaches the session wherever it is driven, and its socket
        // closes.
        server.handle().kick(id, "bye").unwrap();
        assert_eq!(clients[2].closed_with().await, CloseCode::Kicked);
        recorder
            .wait_for(|s| s.contains(&Seen::Close("load-2".into(), CloseCode::Kicked)))
            .await;

        // Shutdown closes every session and every connection.
        let mut lifecycle = server.handle().subscribe();
        let report = server.shutdown().await;
        assert_eq!(report.connections_left, 0, "{reactors} reactors");
        assert_eq!(report.sessions_closed, USERS.len() - 1);
        for client in clients
            .iter_mut()
            .filter(|c| c.session.state() == ClientState::Online)
        {
            assert_eq!(client.closed_with().await, CloseCode::ServerShutdown);
        }
        let closed = lifecycle.recv().await.unwrap();
        assert!(matches!(closed.kind, LifecycleKind::Closed { .. }));
    }
}
