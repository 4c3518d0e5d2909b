//! Where requests are answered: a reactor answers the requests it reads
//! when their dispatcher has nothing in hand, the dispatcher otherwise.
//! Either way a request never overtakes its session's earlier events, and
//! a handler that panics fails its own request only.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{KINDS, TestClient, fast_options, url};
use session_core::{ErrorCode, RequestFailure, ResponseError};
use session_server::demo::UserTable;
use session_server::{
    RequestHandler, Server, ServerHandle, ServerOptions, SessionInfo, SessionListener,
};

/// Users whose `on_open` has run, in order.
#[derive(Clone, Default)]
struct Opened(Arc<Mutex<Vec<String>>>);

/// An `on_open` that takes its time, so that a request sent right after
/// the login arrives while it runs.
impl SessionListener for Opened {
    fn on_open(&self, session: &SessionInfo, _server: &ServerHandle) {
        std::thread::sleep(Duration::from_millis(100));
        self.0.lock().unwrap().push(session.user_id.to_string());
    }
}

/// Echoes, panics on `panic`, and refuses a request whose session's
/// `on_open` has not run yet.
#[derive(Clone, Default)]
struct Checked(Opened);

impl RequestHandler for Checked {
    async fn handle(
        &self,
        session: &SessionInfo,
        body: Bytes,
        _server: &ServerHandle,
    ) -> Result<Bytes, ResponseError> {
        if !(self.0)
            .0
            .lock()
            .unwrap()
            .contains(&session.user_id.to_string())
        {
            return Err(ResponseError {
                code: ErrorCode::Forbidden,
                message: "before on_open".into(),
            });
        }
        if body == "panic" {
            panic!("a handler's bug");
        }
        Ok(body)
    }
}

async fn start(reactor_threads: usize) -> (Server, Opened) {
    let opened = Opened::default();
    let server = common::loopback()
        .options(ServerOptions {
            reactor_threads,
            ..fast_options()
        })
        .authenticator(UserTable::demo())
        .session_listener(opened.clone())
        .request_handler(Checked(opened.clone()))
        .start()
        .await
        .expect("server starts");
    (server, opened)
}

// Several workers: the client must be able to send while `on_open` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_right_after_the_login_waits_for_on_open() {
    for (threads, kind) in [0, 2].into_iter().flat_map(|n| KINDS.map(|kind| (n, kind))) {
        let (server, _) = start(threads).await;
        let url = url(&server, kind);
        for user in ["alice", "bob", "carol"] {
            let mut client = TestClient::online(&url, user, "web").await;
            assert_eq!(
                client.request("first").await.unwrap(),
                "first".as_bytes(),
                "{threads} reactors, {kind}, {user}"
            );
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_its_request_and_nothing_else() {
    for (threads, kind) in [0, 2].into_iter().flat_map(|n| KINDS.map(|kind| (n, kind))) {
        let (server, opened) = start(threads).await;
        let url = url(&server, kind);
        let mut alice = TestClient::online(&url, "alice", "web").await;
        let mut bob = TestClient::online(&url, "bob", "web").await;
        while opened.0.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match alice.request("panic").await {
            Err(RequestFailure::Server(error)) => {
                assert_eq!(
                    error.code,
                    ErrorCode::Internal,
                    "{threads} reactors, {kind}"
                );
            }
            other => panic!("{threads} reactors, {kind}: {other:?}"),
        }
        // The session, its reactor and the other sessions carry on.
        assert_eq!(alice.request("again").await.unwrap(), "again".as_bytes());
        assert_eq!(bob.request("hi").await.unwrap(), "hi".as_bytes());
        assert_eq!(server.handle().session_count(), 2);
        server.shutdown().await;
    }
}
