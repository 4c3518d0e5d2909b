//! A backend's panic fails only what it was doing: a request handler that
//! panics, before it returns its future or while it runs, fails that
//! request with `INTERNAL`; a listener callback that panics is logged and
//! the session's lifecycle goes on. Every reactor and every dispatcher
//! keeps serving its sessions, with reactors and with `reactor_threads` 0.

mod common;

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use common::{KINDS, Recorder, Seen, TestClient, fast_options, loopback, url};
use session_core::{CloseCode, CloseReason, ErrorCode, RequestFailure, ResponseError};
use session_server::demo::{DemoApp, UserTable};
use session_server::{
    LifecycleKind, RequestHandler, Server, ServerHandle, ServerOptions, SessionInfo,
    SessionListener,
};

/// The start of every panic these tests cause on purpose.
const PLANTED: &str = "planted:";

/// Keeps the planted panics out of the test's output (each would print a
/// message and a backtrace hint); any other panic prints as usual.
fn quiet_planted_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|m| m.starts_with(PLANTED)) {
                default(info);
            }
        }));
    });
}

/// Echoes; panics on `panic now` before it returns its future, and on
/// `panic later` inside it.
struct Fragile;

impl RequestHandler for Fragile {
    fn handle(
        &self,
        _session: &SessionInfo,
        body: Bytes,
        _server: &ServerHandle,
    ) -> impl Future<Output = Result<Bytes, ResponseError>> + Send {
        if body == "panic now" {
            panic!("{PLANTED} a handler's bug before its future");
        }
        async move {
            if body == "panic later" {
                panic!("{PLANTED} a handler's bug in its future");
            }
            Ok(body)
        }
    }
}

/// Records every callback, then panics in each of `alice`'s.
#[derive(Clone, Default)]
struct Panicky(Recorder);

impl Panicky {
    fn check(session: &SessionInfo) {
        if &*session.user_id == "alice" {
            panic!("{PLANTED} a listener's bug");
        }
    }
}

impl SessionListener for Panicky {
    fn on_open(&self, session: &SessionInfo, server: &ServerHandle) {
        self.0.on_open(session, server);
        Self::check(session);
    }
    fn on_expire(&self, session: &SessionInfo) {
        self.0.on_expire(session);
        Self::check(session);
    }
    fn on_close(&self, session: &SessionInfo, code: CloseCode, reason: &str) {
        self.0.on_close(session, code, reason);
        Self::check(session);
    }
}

/// With the default reactors, and with none (a task per session).
fn reactor_settings() -> [usize; 2] {
    [ServerOptions::default().reactor_threads, 0]
}

/// Logs in `load-<n>` users until every reactor and every dispatcher has
/// one: at least eight logins in a row (a login goes to the next reactor,
/// and there are at most eight), and ids that cover every dispatcher shard
/// (a session's shard is its random id modulo the shard count, one shard
/// per core up to eight).
async fn sessions_everywhere(server: &Server, url: &str) -> Vec<(String, TestClient)> {
    let shards = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let mut covered = vec![false; shards];
    let mut clients = Vec::new();
    while clients.len() < 8 || covered.contains(&false) {
        assert!(clients.len() < 200, "ids never covered the shards");
        let user = format!("load-{}", clients.len());
        let client = TestClient::online(url, &user, "web").await;
        let id = server.handle().user_sessions(&user)[0].id;
        covered[(id.0 % shards as u64) as usize] = true;
        clients.push((user, client));
    }
    clients
}

async fn fails_with_internal(client: &mut TestClient, body: &str, context: &str) {
    match client.request(body).await {
        Err(RequestFailure::Server(error)) => {
            assert_eq!(error.code, ErrorCode::Internal, "{context}: {body}");
        }
        other => panic!("{context}: {body}: {other:?}"),
    }
}

#[tokio::test]
async fn a_handler_that_panics_before_its_future_fails_its_request_and_nothing_else() {
    quiet_planted_panics();
    for (threads, kind) in reactor_settings()
        .into_iter()
        .flat_map(|n| KINDS.map(|kind| (n, kind)))
    {
        let context = format!("{threads} reactors, {kind}");
        let server = loopback()
            .options(ServerOptions {
                reactor_threads: threads,
                ..fast_options()
            })
            .authenticator(UserTable::demo())
            .request_handler(Fragile)
            .start()
            .await
            .expect("server starts");
        let url = url(&server, kind);
        let mut clients = sessions_everywhere(&server, &url).await;
        // Every session's request panics, wherever it is answered.
        for (_, client) in &mut clients {
            fails_with_internal(client, "panic now", &context).await;
        }
        fails_with_internal(&mut clients[0].1, "panic later", &context).await;
        // Every reactor and dispatcher still answers.
        for (user, client) in &mut clients {
            assert_eq!(
                client.request(user).await.unwrap(),
                user.as_bytes(),
                "{context}"
            );
        }
        assert_eq!(server.handle().session_count(), clients.len(), "{context}");
        drop(clients);
        // A reactor that died would keep its connections.
        let report = server.shutdown().await;
        assert_eq!(report.connections_left, 0, "{context}");
    }
}

#[tokio::test]
async fn a_listener_that_panics_does_not_stop_the_lifecycle() {
    quiet_planted_panics();
    // Callbacks run on the dispatchers whatever the transport: TCP will do.
    for threads in reactor_settings() {
        let context = format!("{threads} reactors");
        let listener = Panicky::default();
        let recorder = listener.0.clone();
        let server = loopback()
            .options(ServerOptions {
                reactor_threads: threads,
                ..fast_options()
            })
            .authenticator(UserTable::demo())
            .request_handler(DemoApp)
            .session_listener(listener)
            .start()
            .await
            .expect("server starts");
        let mut lifecycle = server.handle().subscribe();
        let url = url(&server, "tcp");

        // alice's `on_open` panics: her session is served all the same.
        let mut alice =
            TestClient::online_with(&url, "alice", "web", Duration::from_millis(100)).await;
        assert_eq!(alice.request("hi").await.unwrap(), "hi".as_bytes());
        // Her `on_expire` panics: `on_close` follows (and panics too).
        alice.timers = false;
        recorder
            .wait_for(|s| s.contains(&Seen::Close("alice".into(), CloseCode::Expired)))
            .await;
        assert_eq!(
            recorder.seen(),
            [
                Seen::Open("alice".into()),
                Seen::Expire("alice".into()),
                Seen::Close("alice".into(), CloseCode::Expired)
            ],
            "{context}"
        );
        // Subscribers heard of every event, as if the callbacks returned.
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            let event = tokio::time::timeout(common::SOON, lifecycle.recv())
                .await
                .unwrap()
                .unwrap();
            kinds.push(event.kind);
        }
        assert!(
            matches!(
                kinds[..],
                [
                    LifecycleKind::Opened,
                    LifecycleKind::Expired,
                    LifecycleKind::Closed {
                        code: CloseCode::Expired,
                        ..
                    }
                ]
            ),
            "{context}: {kinds:?}"
        );

        // Every dispatcher still opens and closes sessions.
        let mut clients = sessions_everywhere(&server, &url).await;
        for (_, client) in &mut clients {
            client
                .session
                .logout(std::time::Instant::now(), "bye")
                .unwrap();
            assert_eq!(client.offline().await, CloseReason::LoggedOut, "{context}");
        }
        let users: Vec<String> = clients.iter().map(|(user, _)| user.clone()).collect();
        let seen = recorder
            .wait_for(|s| {
                users
                    .iter()
                    .all(|u| s.contains(&Seen::Close(u.clone(), CloseCode::LoggedOut)))
            })
            .await;
        for user in &users {
            assert!(
                seen.contains(&Seen::Open(user.clone())),
                "{context}: {user}"
            );
        }
        common::close_and_shut_down(server, (alice, clients)).await;
    }
}

/// The demo users; a login as `mallory` panics.
struct PanickyAuth(UserTable);

impl session_server::Authenticator for PanickyAuth {
    async fn authenticate(
        &self,
        attempt: &session_server::LoginAttempt,
    ) -> Result<session_server::Identity, session_server::Rejection> {
        if attempt.user_id == "mallory" {
            panic!("{PLANTED} an authenticator's bug");
        }
        self.0.authenticate(attempt).await
    }
}

/// An authenticator that panics fails that login with `INTERNAL_ERROR`
/// (an answer, not a dropped connection), and the next login goes through.
#[tokio::test]
async fn a_panicking_authenticator_fails_that_login_with_internal_error() {
    use session_core::{ClientEvent, LoginFailure, RejectCode};

    quiet_planted_panics();
    let server = loopback()
        .options(fast_options())
        .authenticator(PanickyAuth(UserTable::demo()))
        .request_handler(DemoApp)
        .start()
        .await
        .unwrap();
    for kind in KINDS {
        let mut mallory = TestClient::connect(&url(&server, kind), Default::default()).await;
        mallory.login("mallory", "web").await;
        let failed = mallory.events.iter().any(|e| {
            matches!(
                e,
                ClientEvent::LoginFailed(LoginFailure::Rejected {
                    code: RejectCode::InternalError,
                    ..
                })
            )
        });
        assert!(failed, "{kind}: {:?}", mallory.events);
        let alice = TestClient::online(&url(&server, kind), "alice", "web").await;
        drop(alice);
    }
    server.shutdown().await;
}
