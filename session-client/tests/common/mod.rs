//! Shared pieces of the client's loopback tests: a real server (TCP and
//! WebSocket) with a test application, a recording listener, a proxy that
//! cuts or black-holes connections, and helpers to await lifecycle changes.
// Each test binary uses a different part; items are `pub` for the tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use session_client::{
    Client, ClientListener, ClientOptions, CloseReason, Credentials, DisconnectReason, Event,
    Lifecycle, OnlineInfo,
};
use session_server::core::{ResponseError, ServerConfig, SessionId};
use session_server::demo::{DemoApp, UserTable};
use session_server::{
    LifecycleKind, Listen, RequestHandler, Server, ServerHandle, ServerOptions, SessionInfo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A generous bound for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(10);

/// The two transports every behaviour is tested over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Ws,
}

/// Runs an `async fn name(kind: Kind)` scenario as two tests, `name::tcp`
/// and `name::ws`.
#[macro_export]
macro_rules! over_tcp_and_ws {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() {
                super::$name($crate::common::Kind::Tcp).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ws() {
                super::$name($crate::common::Kind::Ws).await
            }
        }
    )+};
}

/// Server options for tests: a 1 s heartbeat by default (session timeout
/// 3 s), and heartbeats down to 50 ms for clients that ask, so that expiry
/// takes a fraction of a second.
pub fn server_options() -> ServerOptions {
    ServerOptions {
        core: ServerConfig {
            heartbeat: Duration::from_secs(1),
            min_heartbeat: Duration::from_millis(50),
            timeout_heartbeats: 3,
            ..ServerConfig::default()
        },
        ..ServerOptions::default()
    }
}

/// The demo application, plus two things tests need: it logs every
/// request it executes, and holds requests starting with `hold` until the
/// gate opens.
#[derive(Debug, Clone)]
pub struct TestApp {
    /// Every request body executed, in order.
    pub log: Arc<watch::Sender<Vec<String>>>,
    /// Opens (true) to let held requests finish.
    pub gate: Arc<watch::Sender<bool>>,
}

impl Default for TestApp {
    fn default() -> Self {
        Self {
            log: Arc::new(watch::Sender::new(Vec::new())),
            gate: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl TestApp {
    /// How many times `body` was executed.
    pub fn executions(&self, body: &str) -> usize {
        self.log.borrow().iter().filter(|b| *b == body).count()
    }

    /// Waits until `body` was executed `times` times.
    pub async fn executed(&self, body: &str, times: usize) {
        let mut log = self.log.subscribe();
        let wait = log.wait_for(|log| log.iter().filter(|b| *b == body).count() >= times);
        tokio::time::timeout(SOON, wait)
            .await
            .unwrap_or_else(|_| panic!("{body:?} was not executed {times} times"))
            .expect("log open");
    }

    /// Waits until `n` requests were executed, whatever they were.
    pub async fn executed_any(&self, n: usize) {
        let mut log = self.log.subscribe();
        tokio::time::timeout(SOON, log.wait_for(|log| log.len() >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} requests were not executed"))
            .expect("log open");
    }

    /// Lets every held request finish.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }
}

impl RequestHandler for TestApp {
    async fn handle(
        &self,
        session: &SessionInfo,
        body: Bytes,
        server: &ServerHandle,
    ) -> Result<Bytes, ResponseError> {
        let text = String::from_utf8_lossy(&body).into_owned();
        self.log.send_modify(|log| log.push(text.clone()));
        if text.starts_with("hold") {
            let mut gate = self.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
            return Ok(body);
        }
        DemoApp.handle(session, body, server).await
    }
}

/// A real server with TCP and WebSocket listeners on free ports.
pub struct TestServer {
    pub server: Server,
    pub app: TestApp,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(server_options()).await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        let app = TestApp::default();
        let server = Server::builder()
            .listen(Listen::Tcp {
                addr: "127.0.0.1:0".parse().unwrap(),
            })
            .listen(Listen::Ws {
                addr: "127.0.0.1:0".parse().unwrap(),
                path: "/session".into(),
            })
            .options(options)
            .authenticator(UserTable::demo())
            .request_handler(app.clone())
            .start()
            .await
            .expect("server starts");
        Self { server, app }
    }

    pub fn addr(&self, kind: Kind) -> SocketAddr {
        let scheme = match kind {
            Kind::Tcp => "tcp",
            Kind::Ws => "ws",
        };
        self.server.local_addr(scheme).expect("listener")
    }

    pub fn url(&self, kind: Kind) -> String {
        url(kind, self.addr(kind))
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }
}

pub fn url(kind: Kind, addr: SocketAddr) -> String {
    match kind {
        Kind::Tcp => format!("tcp://{addr}"),
        Kind::Ws => format!("ws://{addr}/session"),
    }
}

/// The demo password of `user`.
pub fn credentials(user: &str, device: &str) -> Credentials {
    let password = match user {
        "alice" => "alice-secret",
        "bob" => "bob-secret",
        "carol" => "carol-secret",
        _ => "load",
    };
    Credentials {
        user_id: user.into(),
        credential: Bytes::copy_from_slice(password.as_bytes()),
        device: device.into(),
        properties: BTreeMap::new(),
    }
}

/// Records every lifecycle change, in order.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Lifecycle>>>);

impl Recorder {
    /// Client options reporting to this recorder.
    pub fn options(&self) -> ClientOptions {
        ClientOptions::default().with_listener(self.clone())
    }

    pub fn changes(&self) -> Vec<Lifecycle> {
        self.0.lock().unwrap().clone()
    }

    /// What was seen, in short: see [`shape`].
    pub fn shapes(&self) -> Vec<String> {
        self.changes().iter().map(shape).collect()
    }

    /// Every `Offline` reason seen.
    pub fn offline_reasons(&self) -> Vec<CloseReason> {
        self.changes()
            .into_iter()
            .filter_map(|change| match change {
                Lifecycle::Offline(reason) => Some(reason),
                _ => None,
            })
            .collect()
    }

    fn push(&self, change: Lifecycle) {
        self.0.lock().unwrap().push(change);
    }
}

impl ClientListener for Recorder {
    fn on_connected(&self) {
        self.push(Lifecycle::Connected);
    }
    fn on_disconnected(&self, reason: DisconnectReason) {
        self.push(Lifecycle::Disconnected(reason));
    }
    fn on_online(&self, info: &OnlineInfo) {
        self.push(Lifecycle::Online(*info));
    }
    fn on_offline(&self, reason: &CloseReason) {
        self.push(Lifecycle::Offline(reason.clone()));
    }
}

/// A lifecycle change in short, for readable assertions:
/// `connected`, `disconnected: Lost`, `online`, `online: resumed`,
/// `offline by server: kicked`, `offline: logged out`.
pub fn shape(change: &Lifecycle) -> String {
    match change {
        Lifecycle::Connected => "connected".into(),
        Lifecycle::Disconnected(reason) => format!("disconnected: {reason:?}"),
        Lifecycle::Online(info) if info.resumed => "online: resumed".into(),
        Lifecycle::Online(_) => "online".into(),
        Lifecycle::Offline(CloseReason::Server { code, .. }) => {
            format!("offline by server: {code}")
        }
        Lifecycle::Offline(reason) => format!("offline: {reason}"),
        other => format!("{other:?}"),
    }
}

/// The next item of a stream, within [`SOON`].
pub async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(SOON, stream.next())
        .await
        .expect("nothing came within the bound")
        .expect("the stream ended")
}

/// The next `n` lifecycle changes, in short.
pub async fn next_shapes<S: Stream<Item = Lifecycle> + Unpin>(
    stream: &mut S,
    n: usize,
) -> Vec<String> {
    let mut shapes = Vec::new();
    for _ in 0..n {
        shapes.push(shape(&next(stream).await));
    }
    shapes
}

/// Skips lifecycle changes until one matches `pred`, and returns it.
pub async fn until<S: Stream<Item = Lifecycle> + Unpin>(
    stream: &mut S,
    pred: impl Fn(&Lifecycle) -> bool,
) -> Lifecycle {
    loop {
        let change = next(stream).await;
        if pred(&change) {
            return change;
        }
    }
}

/// The next event's body, as text.
pub async fn next_event<S: Stream<Item = Event> + Unpin>(events: &mut S) -> (u64, String) {
    let event = next(events).await;
    (event.seq, String::from_utf8_lossy(&event.body).into_owned())
}

/// Connects with a recorder and logs in as `user` on device `device`.
pub async fn online(url: &str, user: &str, device: &str) -> (Client, Recorder, OnlineInfo) {
    online_with(url, user, device, ClientOptions::default()).await
}

/// Like `online`, with options (the recorder replaces their listener).
pub async fn online_with(
    url: &str,
    user: &str,
    device: &str,
    options: ClientOptions,
) -> (Client, Recorder, OnlineInfo) {
    let recorder = Recorder::default();
    let options = options.with_listener(recorder.clone());
    let client = Client::connect(url, options).await.expect("connects");
    let info = client
        .login(credentials(user, device))
        .await
        .expect("logs in");
    (client, recorder, info)
}

/// Waits until the server reports `pred` for `session`.
pub async fn server_sees(
    events: &mut tokio::sync::broadcast::Receiver<session_server::LifecycleEvent>,
    session: SessionId,
    pred: impl Fn(&LifecycleKind) -> bool,
) -> LifecycleKind {
    let wait = async {
        loop {
            let event = events.recv().await.expect("server lifecycle");
            if event.session.id == session && pred(&event.kind) {
                return event.kind;
            }
        }
    };
    tokio::time::timeout(SOON, wait)
        .await
        .expect("the server did not report it")
}

/// A TCP proxy between clients and the server that can cut every
/// connection (a network failure), stop forwarding one way (a one-way
/// partition), and close new connections at once (the server
/// unreachable).
pub struct Proxy {
    pub addr: SocketAddr,
    control: Arc<ProxyControl>,
    task: tokio::task::JoinHandle<()>,
}

struct ProxyControl {
    /// Bumped to cut every connection open at the time.
    cuts: watch::Sender<u64>,
    blackhole_upstream: AtomicBool,
    blackhole_downstream: AtomicBool,
    refuse: AtomicUsize,
    accepted: AtomicUsize,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let control = Arc::new(ProxyControl {
            cuts: watch::Sender::new(0),
            blackhole_upstream: AtomicBool::new(false),
            blackhole_downstream: AtomicBool::new(false),
            refuse: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
        });
        let task = tokio::spawn({
            let control = control.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    control.accepted.fetch_add(1, Ordering::SeqCst);
                    let refused = control
                        .refuse
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if refused {
                        drop(client);
                        continue;
                    }
                    tokio::spawn(pump(client, target, control.clone()));
                }
            }
        });
        Self {
            addr,
            control,
            task,
        }
    }

    pub fn url(&self, kind: Kind) -> String {
        url(kind, self.addr)
    }

    /// Cuts every connection open now.
    pub fn cut(&self) {
        self.control.cuts.send_modify(|n| *n += 1);
    }

    /// Stops (or resumes) forwarding what clients send.
    pub fn blackhole_upstream(&self, on: bool) {
        self.control.blackhole_upstream.store(on, Ordering::SeqCst);
    }

    /// Stops (or resumes) forwarding what the server sends.
    pub fn blackhole_downstream(&self, on: bool) {
        self.control
            .blackhole_downstream
            .store(on, Ordering::SeqCst);
    }

    /// Closes the next `n` connections as soon as they are accepted.
    pub fn refuse_next(&self, n: usize) {
        self.control.refuse.store(n, Ordering::SeqCst);
    }

    /// How many connections were accepted so far (refused ones included).
    pub fn accepted(&self) -> usize {
        self.control.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn pump(client: TcpStream, target: SocketAddr, control: Arc<ProxyControl>) {
    let mut cuts = control.cuts.subscribe();
    cuts.borrow_and_update();
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if control.blackhole_upstream.load(Ordering::SeqCst) {
                        continue;
                    }
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if control.blackhole_downstream.load(Ordering::SeqCst) {
                        continue;
                    }
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        _ = async { tokio::join!(upstream, downstream) } => {}
        _ = cuts.changed() => {}
    }
}
