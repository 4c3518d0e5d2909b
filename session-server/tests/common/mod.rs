//! Shared pieces of the server's loopback tests: a server on free ports
//! (TCP and WebSocket), and a minimal client driving the sans-IO core over a
//! real transport.
// Each test binary uses a different part; items are `pub` for the tests.
#![allow(dead_code, unreachable_pub)]

pub mod proxy;
pub mod raw;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use session_core::{
    ClientConfig, ClientEvent, ClientSession, ClientState, CloseCode, CloseReason, Credentials,
    Framing, RequestFailure, ServerConfig, Transmit,
};
use session_server::demo::{DemoApp, UserTable};
use session_server::{Listen, Server, ServerBuilder, ServerOptions, SessionInfo, SessionListener};
use session_transport::{ConnectOptions, Transport};

/// Both transports every behaviour is tested over.
pub const KINDS: [&str; 2] = ["tcp", "ws"];

/// A generous bound for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(10);

/// Options with short timings allowed, so expiry tests take milliseconds
/// (clients ask for their heartbeat; see `TestClient::online_with`).
pub fn fast_options() -> ServerOptions {
    ServerOptions {
        core: ServerConfig {
            heartbeat: Duration::from_millis(100),
            min_heartbeat: Duration::from_millis(50),
            timeout_heartbeats: 2,
            login_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        },
        shutdown_timeout: Duration::from_secs(5),
        ..ServerOptions::default()
    }
}

/// What a recording listener saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Open(String),
    Expire(String),
    Close(String, CloseCode),
}

/// Records every callback.
#[derive(Debug, Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    pub fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for what was seen.
    pub async fn wait_for(&self, pred: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + SOON;
        loop {
            let seen = self.seen();
            if pred(&seen) {
                return seen;
            }
            assert!(Instant::now() < deadline, "listener never saw it: {seen:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl SessionListener for Recorder {
    fn on_open(&self, session: &SessionInfo, _server: &session_server::ServerHandle) {
        self.0
            .lock()
            .unwrap()
            .push(Seen::Open(session.user_id.to_string()));
    }
    fn on_expire(&self, session: &SessionInfo) {
        self.0
            .lock()
            .unwrap()
            .push(Seen::Expire(session.user_id.to_string()));
    }
    fn on_close(&self, session: &SessionInfo, code: CloseCode, _reason: &str) {
        self.0
            .lock()
            .unwrap()
            .push(Seen::Close(session.user_id.to_string(), code));
    }
}

/// A server builder with a TCP and a WebSocket listener on free loopback
/// ports.
pub fn loopback() -> ServerBuilder {
    Server::builder()
        .listen(Listen::Tcp {
            addr: "127.0.0.1:0".parse().unwrap(),
        })
        .listen(Listen::Ws {
            addr: "127.0.0.1:0".parse().unwrap(),
            path: "/session".into(),
        })
}

/// Closes a test's connections (`clients`: a client, a transport, or a
/// tuple of them), then shuts the server down. A connection nobody reads
/// would otherwise hold the graceful shutdown for its whole linger (1 s)
/// after its close signal.
pub async fn close_and_shut_down<T>(server: Server, clients: T) {
    drop(clients);
    server.shutdown().await;
}

/// Starts a demo server (demo users, echo and relay) with TCP and WS
/// listeners on free ports.
pub async fn start(options: ServerOptions, recorder: Recorder) -> Server {
    loopback()
        .options(options)
        .authenticator(UserTable::demo())
        .request_handler(DemoApp)
        .session_listener(recorder)
        .start()
        .await
        .expect("server starts")
}

pub fn url(server: &Server, kind: &str) -> String {
    let addr = server.local_addr(kind).expect("listener");
    match kind {
        "ws" => format!("ws://{addr}/session"),
        _ => format!("{kind}://{addr}"),
    }
}

pub fn password(user: &str) -> &'static [u8] {
    match user {
        "alice" => b"alice-secret",
        "bob" => b"bob-secret",
        "carol" => b"carol-secret",
        _ => b"load",
    }
}

/// A client: the sans-IO core over a real transport, driven by the test.
pub struct TestClient {
    pub url: String,
    pub options: ConnectOptions,
    pub session: ClientSession,
    pub transport: Option<Transport>,
    pub events: Vec<ClientEvent>,
    /// When false, the client neither sends heartbeats nor fires any
    /// timer: it has gone silent.
    pub timers: bool,
    buf: BytesMut,
}

impl TestClient {
    pub async fn connect(url: &str, config: ClientConfig) -> Self {
        Self::connect_with(url, config, ConnectOptions::default()).await
    }

    /// Connects with transport options (TLS roots, say).
    pub async fn connect_with(url: &str, config: ClientConfig, options: ConnectOptions) -> Self {
        let transport = session_transport::connect(url, &options)
            .await
            .expect("connects");
        let mut session = ClientSession::new(config);
        session.handle_connected(Instant::now());
        Self {
            url: url.to_owned(),
            options,
            session,
            transport: Some(transport),
            events: Vec::new(),
            timers: true,
            buf: BytesMut::new(),
        }
    }

    /// Connects and logs in as `user` on `device`, waiting for Online. The
    /// heartbeat is 1 s (timeout 2 s), so a client the test is not driving
    /// for a moment does not expire.
    pub async fn online(url: &str, user: &str, device: &str) -> Self {
        Self::online_with(url, user, device, Duration::from_secs(1)).await
    }

    /// Like `online`, with the heartbeat given.
    pub async fn online_with(url: &str, user: &str, device: &str, heartbeat: Duration) -> Self {
        let config = ClientConfig {
            requested_heartbeat: Some(heartbeat),
            ..ClientConfig::default()
        };
        let mut client = Self::connect(url, config).await;
        client.login(user, device).await;
        assert_eq!(
            client.session.state(),
            ClientState::Online,
            "{:?}",
            client.events
        );
        client
    }

    pub async fn login(&mut self, user: &str, device: &str) {
        let credentials = Credentials {
            user_id: user.into(),
            credential: Bytes::from_static(password(user)),
            device: device.into(),
            properties: BTreeMap::new(),
        };
        self.session.login(Instant::now(), credentials).unwrap();
        self.until(|e| matches!(e, ClientEvent::Online(_) | ClientEvent::LoginFailed(_)))
            .await;
    }

    /// Sends what the core queued; handles a close order.
    pub async fn flush(&mut self) {
        let mut close = false;
        let mut frames = Vec::new();
        while let Some(t) = self.session.poll_transmit(&mut self.buf, Framing::Bare) {
            match t {
                Transmit::Frame => frames.push(self.buf.split().freeze()),
                Transmit::CloseConnection => close = true,
            }
        }
        if let Some(transport) = &mut self.transport {
            for frame in frames {
                if transport.feed(frame).await.is_err() {
                    break;
                }
            }
            let _ = transport.flush().await;
        }
        if close {
            if let Some(transport) = self.transport.take() {
                let _ = transport
                    .close_with_linger(Duration::from_millis(200))
                    .await;
            }
            self.session.handle_disconnect(Instant::now());
        }
        while let Some(e) = self.session.poll_event() {
            self.events.push(e);
        }
    }

    /// One round: flush, then wait for a frame, the timer or `limit`.
    async fn turn(&mut self, limit: Instant) {
        let before = self.events.len();
        self.flush().await;
        if self.events.len() > before {
            // The flush itself produced events: let the caller look first.
            return;
        }
        let deadline = if self.timers {
            self.session.poll_timeout().map_or(limit, |t| t.min(limit))
        } else {
            limit
        };
        let next = async {
            match &mut self.transport {
                Some(t) => t.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = next => match frame {
                Some(Ok(frame)) => { let _ = self.session.handle_frame(Instant::now(), frame); }
                Some(Err(error)) => match error.protocol_error() {
                    Some(e) => self.session.handle_protocol_error(Instant::now(), e),
                    None => { self.transport = None; self.session.handle_disconnect(Instant::now()); }
                },
                None => { self.transport = None; self.session.handle_disconnect(Instant::now()); }
            },
            () = tokio::time::sleep_until(deadline.into()) => {
                if self.timers {
                    self.session.handle_timeout(Instant::now());
                }
            }
        }
        self.flush().await;
    }

    /// One round of driving: sends what is queued, then waits for a frame,
    /// the client's timer or `limit`, whichever comes first, and handles it.
    /// For tests that drive many clients, or check other things between
    /// rounds.
    pub async fn step(&mut self, limit: Instant) {
        self.turn(limit).await;
    }

    /// Drives the client until an event matching `pred` arrives (or was
    /// already seen since the last call that consumed it); returns it.
    pub async fn until(&mut self, pred: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
        let limit = Instant::now() + SOON;
        let mut checked = 0;
        loop {
            if let Some(e) = self.events[checked..].iter().find(|e| pred(e)) {
                return e.clone();
            }
            checked = self.events.len();
            assert!(
                Instant::now() < limit,
                "event never came; saw {:?}",
                self.events
            );
            self.turn(limit).await;
        }
    }

    /// Drives the client for `d`.
    pub async fn run_for(&mut self, d: Duration) {
        let limit = Instant::now() + d;
        while Instant::now() < limit {
            self.turn(limit).await;
        }
    }

    pub async fn request(&mut self, body: &str) -> Result<Bytes, RequestFailure> {
        let id = self
            .session
            .request(Instant::now(), Bytes::copy_from_slice(body.as_bytes()))
            .unwrap();
        self.response(id).await
    }

    /// Drives the client until the answer to request `id` arrives.
    pub async fn response(&mut self, id: u64) -> Result<Bytes, RequestFailure> {
        match self
            .until(|e| matches!(e, ClientEvent::Response { id: got, .. } if *got == id))
            .await
        {
            ClientEvent::Response { result, .. } => result,
            _ => unreachable!(),
        }
    }

    /// Waits for the session to end; returns the reason.
    pub async fn offline(&mut self) -> CloseReason {
        match self.until(|e| matches!(e, ClientEvent::Offline(_))).await {
            ClientEvent::Offline(reason) => reason,
            _ => unreachable!(),
        }
    }

    /// The code of the server's close signal, when the session ended by one.
    pub async fn closed_with(&mut self) -> CloseCode {
        match self.offline().await {
            CloseReason::Server { code, .. } => code,
            other => panic!("expected a close signal, got {other:?}"),
        }
    }

    /// Drops the connection abruptly (no logout).
    pub fn drop_connection(&mut self) {
        self.transport = None;
        self.session.handle_disconnect(Instant::now());
        while let Some(e) = self.session.poll_event() {
            self.events.push(e);
        }
    }

    /// Reconnects and resumes, waiting for the answer.
    pub async fn resume(&mut self) {
        let transport = session_transport::connect(&self.url, &self.options)
            .await
            .expect("reconnects");
        self.transport = Some(transport);
        self.session.handle_connected(Instant::now());
        self.session.resume(Instant::now()).unwrap();
        self.until(|e| {
            matches!(
                e,
                ClientEvent::Online(info) if info.resumed
            ) || matches!(e, ClientEvent::Offline(_) | ClientEvent::LoginFailed(_))
        })
        .await;
    }

    /// Every pushed event body received, as text.
    pub fn messages(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message { body, .. } => {
                    Some(String::from_utf8_lossy(body).into_owned())
                }
                _ => None,
            })
            .collect()
    }

    /// Acknowledges everything received.
    pub async fn ack_all(&mut self) {
        let last = self.session.last_event_seq();
        self.session.ack(last).unwrap();
        self.flush().await;
    }
}

/// Reads raw frames from a transport until it closes; returns the last
/// `CloseSignal`'s code, if any arrived.
pub async fn read_close_signal(transport: &mut Transport) -> Option<CloseCode> {
    use session_core::proto::prost::Message;
    use session_core::proto::v1;
    let mut code = None;
    let limit = tokio::time::sleep(SOON);
    tokio::pin!(limit);
    loop {
        tokio::select! {
            frame = transport.next() => match frame {
                Some(Ok(frame)) => {
                    if let Ok(v1::ServerFrame { kind: Some(v1::server_frame::Kind::CloseSignal(s)) }) = v1::ServerFrame::decode(frame) {
                        code = Some(CloseCode::from_wire(s.code));
                    }
                }
                _ => return code,
            },
            () = &mut limit => panic!("the server never closed the connection"),
        }
    }
}
