//! Where requests are answered: a reactor answers the requests it reads
//! when their dispatcher has nothing in hand, the dispatcher otherwise.
//! Either way a request never overtakes its session's earlier events, and
//! a handler that panics fails its own request only.

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{KINDS, SOON, TestClient, fast_options, url};
use session_core::{ErrorCode, RequestFailure, ResponseError};
use session_server::demo::UserTable;
use session_server::{
    RequestHandler, Server, ServerHandle, ServerOptions, SessionInfo, SessionListener,
};

/// Users whose `on_open` has run, in order. A gated one holds each
/// `on_open` until the test says the session's first request is on its
/// way (see [`Opened::release`]), so that request reaches the server while
/// `on_open` runs on every machine, however fast or slow.
#[derive(Clone, Default)]
struct Opened {
    done: Arc<Mutex<Vec<String>>>,
    gate: Option<Arc<Gate>>,
}

#[derive(Default)]
struct Gate {
    /// Users whose request was sent.
    released: Mutex<Vec<String>>,
    changed: Condvar,
    /// Users whose `on_open` was still running when their request was
    /// sent.
    overlapped: Mutex<Vec<String>>,
}

impl Opened {
    fn gated() -> Self {
        Self {
            gate: Some(Arc::default()),
            ..Self::default()
        }
    }

    /// Lets `user`'s `on_open` finish.
    fn release(&self, user: &str) {
        let gate = self.gate.as_ref().expect("a gated listener");
        gate.released.lock().unwrap().push(user.to_owned());
        gate.changed.notify_all();
    }

    /// Whether `user`'s request was sent while its `on_open` ran.
    fn overlapped(&self, user: &str) -> bool {
        let gate = self.gate.as_ref().expect("a gated listener");
        gate.overlapped.lock().unwrap().iter().any(|u| u == user)
    }

    fn has_run(&self, user: &str) -> bool {
        self.done.lock().unwrap().iter().any(|u| u == user)
    }
}

impl SessionListener for Opened {
    fn on_open(&self, session: &SessionInfo, _server: &ServerHandle) {
        let user = session.user_id.to_string();
        if let Some(gate) = &self.gate {
            // The dispatcher's worker hands its other tasks (this
            // session's login among them) to another thread meanwhile.
            tokio::task::block_in_place(|| {
                let released = gate.released.lock().unwrap();
                let (_released, wait) = gate
                    .changed
                    .wait_timeout_while(released, SOON, |released| !released.contains(&user))
                    .unwrap();
                if !wait.timed_out() {
                    gate.overlapped.lock().unwrap().push(user.clone());
                }
            });
        }
        self.done.lock().unwrap().push(user);
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
        if !self.0.has_run(&session.user_id) {
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

async fn start(reactor_threads: usize, opened: Opened) -> Server {
    common::loopback()
        .options(ServerOptions {
            reactor_threads,
            ..fast_options()
        })
        .authenticator(UserTable::demo())
        .session_listener(opened.clone())
        .request_handler(Checked(opened))
        .start()
        .await
        .expect("server starts")
}

// Several workers: `on_open` blocks one while it waits for the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_right_after_the_login_waits_for_on_open() {
    for (threads, kind) in [0, 2].into_iter().flat_map(|n| KINDS.map(|kind| (n, kind))) {
        let opened = Opened::gated();
        let server = start(threads, opened.clone()).await;
        let url = url(&server, kind);
        for user in ["alice", "bob", "carol"] {
            let context = format!("{threads} reactors, {kind}, {user}");
            let mut client = TestClient::online(&url, user, "web").await;
            let id = client
                .session
                .request(Instant::now(), Bytes::from_static(b"first"))
                .unwrap();
            // The request is in the server's socket before `on_open` may
            // end.
            client.flush().await;
            opened.release(user);
            assert_eq!(
                client.response(id).await.unwrap(),
                "first".as_bytes(),
                "{context}"
            );
            assert!(
                opened.overlapped(user),
                "{context}: on_open ended before the request was sent"
            );
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_its_request_and_nothing_else() {
    for (threads, kind) in [0, 2].into_iter().flat_map(|n| KINDS.map(|kind| (n, kind))) {
        let opened = Opened::default();
        let server = start(threads, opened.clone()).await;
        let url = url(&server, kind);
        let mut alice = TestClient::online(&url, "alice", "web").await;
        let mut bob = TestClient::online(&url, "bob", "web").await;
        while !(opened.has_run("alice") && opened.has_run("bob")) {
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
        common::close_and_shut_down(server, (alice, bob)).await;
    }
}
