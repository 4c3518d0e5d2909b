//! One load-generator session: a sans-IO [`ClientSession`] driven over a raw
//! TCP stream (varint-delimited frames) or a WebSocket (one binary message
//! per frame), bound to the worker's own source address.
//!
//! A session receives events (counted, timed from the stamps their body
//! carries, and acknowledged after each batch read, which the core coalesces
//! as it does for `session-client`: see `ClientConfig::ack_delay`), or
//! publishes: it keeps a window of `to load-<i> <body>` requests outstanding
//! and counts the answers.
//!
//! Against a broker instead of `sessiond`, the same sessions speak MQTT
//! ([`mqtt`]) or NATS ([`nats`]) over plain TCP.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use session_core::{
    ClientConfig, ClientEvent, ClientSession, Credentials, FrameDecoder, Framing, RequestError,
    Transmit,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Sleep;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::control::{Carrier, Protocol, unix_ns};
use crate::stats::{Latency, latency};

pub mod mqtt;
pub mod nats;

/// The password of every `load-*` user.
pub const LOAD_PASSWORD: &str = "load";
/// The WebSocket subprotocol the server requires.
pub const WS_SUBPROTOCOL: &str = "session.v1";
/// Digits of the send time at the start of every published body.
pub const STAMP_DIGITS: usize = 20;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const READ_RESERVE: usize = 512;

/// Where sessions connect, and from which address.
#[derive(Debug)]
pub struct Target {
    /// The server's TCP listener.
    pub tcp: SocketAddr,
    /// The server's WebSocket listener.
    pub ws: SocketAddr,
    /// The WebSocket path.
    pub ws_path: String,
    /// The local address every socket binds to, so that each worker has
    /// all the ports of its own address.
    pub source: IpAddr,
    /// What the sessions speak.
    pub protocol: Protocol,
    /// The next local port to try (see [`Target::bind`]).
    next_port: AtomicU32,
}

/// The local ports a worker hands out, in turn: all but the privileged.
const PORTS: std::ops::Range<u32> = 1024..65_536;

impl Target {
    /// A target whose sockets bind to `source`.
    pub fn new(tcp: SocketAddr, ws: SocketAddr, ws_path: String, source: IpAddr) -> Self {
        Self {
            tcp,
            ws,
            ws_path,
            source,
            protocol: Protocol::Session,
            next_port: AtomicU32::new(0),
        }
    }

    /// Binds `socket` to the source address and a port of the worker's
    /// choosing. The address is the worker's alone, so the ports are too:
    /// handing them out in turn spares the kernel's search for a free one,
    /// which `bind` to port 0 makes and which grows with the ports in use
    /// (with 9,750 sockets on one address it made S1 ten times slower). A
    /// port still taken (in `TIME_WAIT` from an earlier session of this
    /// worker, say) is skipped.
    fn bind(&self, socket: &TcpSocket) -> Result<(), String> {
        let mut last = None;
        for _ in 0..64 {
            let n = self.next_port.fetch_add(1, Ordering::Relaxed);
            let port = PORTS.start + n % (PORTS.end - PORTS.start);
            // Within `PORTS`, so it fits.
            match socket.bind(SocketAddr::new(self.source, port as u16)) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(format!("bind: {e}")),
            }
        }
        Err(format!("bind: no free port: {last:?}"))
    }
}

/// A connection carrying frames.
enum Link {
    Tcp {
        stream: TcpStream,
        inbox: BytesMut,
        decoder: FrameDecoder,
    },
    Ws(Box<WebSocketStream<TcpStream>>),
}

async fn tcp_connect(target: &Target, to: SocketAddr) -> Result<TcpStream, String> {
    let socket = match to {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    // Lets a port in TIME_WAIT from an earlier run be bound again.
    socket
        .set_reuseaddr(true)
        .map_err(|e| format!("reuseaddr: {e}"))?;
    target.bind(&socket)?;
    let stream = socket
        .connect(to)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    Ok(stream)
}

impl Link {
    async fn connect(
        carrier: Carrier,
        target: &Target,
        max_frame_len: usize,
    ) -> Result<Self, String> {
        match carrier {
            Carrier::Tcp => Ok(Self::Tcp {
                stream: tcp_connect(target, target.tcp).await?,
                inbox: BytesMut::new(),
                decoder: FrameDecoder::new(max_frame_len),
            }),
            // Boxed: the upgrade's state (kilobytes) would otherwise size
            // every session's task, TCP or not, for its whole life.
            Carrier::Ws => Box::pin(Self::ws_connect(target, max_frame_len)).await,
        }
    }

    async fn ws_connect(target: &Target, max_frame_len: usize) -> Result<Self, String> {
        let stream = tcp_connect(target, target.ws).await?;
        let url = format!("ws://{}{}", target.ws, target.ws_path);
        let mut request = url
            .into_client_request()
            .map_err(|e| format!("ws url: {e}"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(WS_SUBPROTOCOL),
        );
        // Small buffers: thousands of these live in one process.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(max_frame_len))
            .max_frame_size(Some(max_frame_len));
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|e| format!("ws upgrade: {e}"))?;
        Ok(Self::Ws(Box::new(ws)))
    }

    fn framing(&self) -> Framing {
        match self {
            Self::Tcp { .. } => Framing::Delimited,
            Self::Ws(_) => Framing::Bare,
        }
    }

    /// Waits for input and appends every whole frame received to `frames`.
    /// `Ok(false)` at the end of the stream. Cancel-safe: the only await is
    /// one read, and nothing is consumed before it completes.
    async fn read(&mut self, frames: &mut Vec<Bytes>) -> Result<bool, String> {
        match self {
            Self::Tcp {
                stream,
                inbox,
                decoder,
            } => {
                inbox.reserve(READ_RESERVE);
                let n = stream
                    .read_buf(inbox)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Ok(false);
                }
                while let Some(frame) = decoder.decode(inbox).map_err(|e| format!("decode: {e}"))? {
                    frames.push(frame);
                }
                Ok(true)
            }
            Self::Ws(ws) => match ws.next().await {
                None | Some(Ok(Message::Close(_))) => Ok(false),
                Some(Ok(Message::Binary(frame))) => {
                    frames.push(frame);
                    Ok(true)
                }
                Some(Ok(Message::Text(_))) => Err("ws: text message".into()),
                Some(Ok(_)) => Ok(true),
                Some(Err(e)) => Err(format!("ws read: {e}")),
            },
        }
    }

    /// Writes the delimited bytes in `out` (TCP) or the frames in `frames`
    /// (WebSocket), and flushes.
    async fn write(&mut self, out: &mut BytesMut, frames: &mut Vec<Bytes>) -> Result<(), String> {
        let work = async {
            match self {
                Self::Tcp { stream, .. } => {
                    stream
                        .write_all(out)
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                    out.clear();
                }
                Self::Ws(ws) => {
                    for frame in frames.drain(..) {
                        ws.feed(Message::Binary(frame))
                            .await
                            .map_err(|e| format!("ws write: {e}"))?;
                    }
                    ws.flush().await.map_err(|e| format!("ws flush: {e}"))?;
                }
            }
            Ok(())
        };
        tokio::time::timeout(WRITE_TIMEOUT, work)
            .await
            .map_err(|_| "write: timed out".to_owned())?
    }
}

/// A worker's counters over all its sessions.
#[derive(Debug)]
pub struct Tally {
    /// Sessions online now.
    pub online: AtomicU64,
    /// Sessions that failed, or went offline while not told to stop.
    pub failed: AtomicU64,
    /// Events received.
    pub received: AtomicU64,
    /// Unix ns of the first event (0: none yet).
    pub first_event_ns: AtomicU64,
    /// Unix ns of the latest event.
    pub last_event_ns: AtomicU64,
    /// Send-to-receipt latency of events, µs (paced: from when each was
    /// due).
    pub event_latency: Mutex<Latency>,
    /// Paced: from when the publisher took each event to send, µs.
    pub taken_latency: Mutex<Latency>,
    /// Failures after login, by kind.
    pub errors: Mutex<BTreeMap<String, u64>>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            online: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            first_event_ns: AtomicU64::new(0),
            last_event_ns: AtomicU64::new(0),
            event_latency: Mutex::new(latency()),
            taken_latency: Mutex::new(latency()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Tally {
    fn event(&self, body: &[u8]) {
        let now = unix_ns();
        self.received.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .first_event_ns
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_event_ns.fetch_max(now, Ordering::Relaxed);
        if let Some((due, taken)) = stamps_of_event(body) {
            let us = now.saturating_sub(due) / 1000;
            lock(&self.event_latency).saturating_record(us.max(1));
            if let Some(taken) = taken {
                let us = now.saturating_sub(taken) / 1000;
                lock(&self.taken_latency).saturating_record(us.max(1));
            }
        }
    }
}

/// Counts one failure of `kind` in `errors`.
pub fn count_error(errors: &Mutex<BTreeMap<String, u64>>, kind: String) {
    *lock(errors).entry(kind).or_insert(0) += 1;
}

/// Locks, ignoring poisoning (a panicked task leaves plain counters).
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One `Connect` command's sessions: how their logins went.
#[derive(Debug)]
pub struct Batch {
    /// Sessions online or failed so far.
    pub settled: AtomicU64,
    /// Of which online.
    pub online: AtomicU64,
    /// Unix ns of the last settlement.
    pub last_ns: AtomicU64,
    /// Connect start to `Online`, µs.
    pub latency: Mutex<Latency>,
    /// Failures to get online, by kind.
    pub errors: Mutex<BTreeMap<String, u64>>,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            settled: AtomicU64::new(0),
            online: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            latency: Mutex::new(latency()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Batch {
    fn settle(&self) {
        self.last_ns.fetch_max(unix_ns(), Ordering::Relaxed);
        self.settled.fetch_add(1, Ordering::Relaxed);
    }
}

/// A publishing run shared by the publishing sessions of one worker.
#[derive(Debug)]
pub struct Plan {
    /// Messages in all.
    pub total: u64,
    /// Users `load-0` to `load-<targets - 1>` receive, round-robin.
    pub targets: u64,
    /// Bytes of each body.
    pub body_len: usize,
    /// Messages per second over all sessions, or as fast as possible.
    pub rate: Option<f64>,
    /// Requests outstanding per session.
    pub window: usize,
    /// Set when every publisher is online: the clock of the run, and the
    /// same moment as Unix ns.
    start: OnceLock<(Instant, u64)>,
    next: AtomicU64,
    /// Responses `delivered to 1 sessions`.
    pub delivered_ok: AtomicU64,
    /// Other responses and failed requests.
    pub failed: AtomicU64,
    /// Unix ns of the first request.
    pub first_send_ns: AtomicU64,
    /// Unix ns of the last response.
    pub last_response_ns: AtomicU64,
    /// Failures by kind.
    pub errors: Mutex<BTreeMap<String, u64>>,
}

enum Take {
    Message(u64),
    /// Paced (or not started): nothing before this instant.
    Later(Instant),
    /// Every message is taken.
    Done,
}

impl Plan {
    /// A plan, not started.
    pub fn new(
        total: u64,
        targets: u64,
        body_len: usize,
        rate: Option<f64>,
        window: usize,
    ) -> Self {
        Self {
            total,
            targets: targets.max(1),
            body_len,
            rate,
            window: window.max(1),
            start: OnceLock::new(),
            next: AtomicU64::new(0),
            delivered_ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_send_ns: AtomicU64::new(0),
            last_response_ns: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts the clock: publishers send from now on.
    pub fn start(&self) {
        let _ = self.start.set((Instant::now(), unix_ns()));
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.total)
    }

    /// Responses and failures so far.
    pub fn finished(&self) -> u64 {
        self.delivered_ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    fn take(&self, now: Instant) -> Take {
        let Some(&(start, _)) = self.start.get() else {
            return Take::Later(now + Duration::from_millis(1));
        };
        loop {
            let next = self.next.load(Ordering::Relaxed);
            if next >= self.total {
                return Take::Done;
            }
            if let Some(rate) = self.rate {
                let allowed = (now.duration_since(start).as_secs_f64() * rate) as u64 + 1;
                if next >= allowed {
                    let due = start + Duration::from_secs_f64(next as f64 / rate);
                    return Take::Later(due.max(now + Duration::from_micros(200)));
                }
            }
            if self
                .next
                .compare_exchange(next, next + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                if next == 0 {
                    self.first_send_ns.store(unix_ns(), Ordering::Relaxed);
                }
                return Take::Message(next);
            }
        }
    }

    /// The body of message `i`. Paced, it carries the time the message was
    /// due rather than the time it went out, so that a publisher held back
    /// by a slow server still counts the wait (no coordinated omission).
    fn body(&self, i: u64) -> Bytes {
        let mut text = format!("to load-{} ", i % self.targets);
        self.stamped(i, &mut text);
        Bytes::from(text)
    }

    /// Message `i` as the event `sessiond` relays for it: the receiving
    /// user's number, and `<from>: <body>` (for [`mqtt`] and [`nats`],
    /// which have no relay).
    fn event(&self, i: u64, from: &str) -> (u64, Bytes) {
        let mut text = format!("{from}: ");
        self.stamped(i, &mut text);
        (i % self.targets, Bytes::from(text))
    }

    /// Appends message `i`'s body, padded to `body_len`: when it was due,
    /// a dot, and when it was taken to be sent (see [`stamps_of_event`]).
    fn stamped(&self, i: u64, text: &mut String) {
        let now = unix_ns();
        let due = match (self.rate, self.start.get()) {
            (Some(rate), Some(&(_, start_ns))) => start_ns + (i as f64 * 1e9 / rate) as u64,
            _ => now,
        };
        let want = text.len() + self.body_len.max(2 * STAMP_DIGITS + 1);
        let _ = write!(text, "{due:0width$}.{now:0width$}", width = STAMP_DIGITS);
        text.extend(std::iter::repeat_n('x', want - text.len()));
    }

    fn answered(&self, result: Result<&[u8], String>) {
        match result {
            Ok(b"delivered to 1 sessions") => {
                self.delivered_ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(other) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                count_error(
                    &self.errors,
                    format!("response: {}", String::from_utf8_lossy(other)),
                );
            }
            Err(kind) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                count_error(&self.errors, kind);
            }
        }
        self.last_response_ns
            .fetch_max(unix_ns(), Ordering::Relaxed);
    }
}

/// The send time at the start of a relayed body: an event is
/// `<from>: <body>`, and a body starts with [`STAMP_DIGITS`] digits of Unix
/// nanoseconds.
///
/// ```
/// use session_bench::client::stamp_of_event;
/// assert_eq!(stamp_of_event(b"load-pub: 00000000000000001234xxxx"), Some(1234));
/// assert_eq!(stamp_of_event(b"hello"), None);
/// ```
pub fn stamp_of_event(event: &[u8]) -> Option<u64> {
    stamps_of_event(event).map(|(due, _)| due)
}

/// Both stamps of a relayed body: when the message was due (paced) or
/// sent (unpaced), and, after a dot, when the publisher took it to send.
/// Paced, the second is later by however late the publisher was; latency
/// from it is the server's and the network's alone.
///
/// ```
/// use session_bench::client::stamps_of_event;
/// let event = b"load-pub: 00000000000000001234.00000000000000001300xx";
/// assert_eq!(stamps_of_event(event), Some((1234, Some(1300))));
/// assert_eq!(stamps_of_event(b"p: 00000000000000001234xx"), Some((1234, None)));
/// ```
pub fn stamps_of_event(event: &[u8]) -> Option<(u64, Option<u64>)> {
    let at = event.windows(2).position(|w| w == b": ")? + 2;
    let parse = |from: usize| -> Option<u64> {
        let digits = event.get(from..from + STAMP_DIGITS)?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let due = parse(at)?;
    let taken = match event.get(at + STAMP_DIGITS) {
        Some(b'.') => parse(at + STAMP_DIGITS + 1),
        _ => None,
    };
    Some((due, taken))
}

/// What a session does once online.
#[derive(Debug, Clone)]
pub enum Role {
    /// Receives, counts and acknowledges events.
    Receiver,
    /// Publishes per the plan.
    Publisher(Arc<Plan>),
}

/// One session to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The user to log in as.
    pub user: String,
    /// TCP or WebSocket.
    pub carrier: Carrier,
    /// The heartbeat to ask for.
    pub heartbeat_ms: Option<u32>,
    /// What to do once online.
    pub role: Role,
}

/// Runs one session until `stop` fires or the session ends. `permit` (a
/// slot among the handshakes in flight) is released once the session is
/// online or has failed.
pub async fn run(
    spec: Spec,
    target: Arc<Target>,
    tally: Arc<Tally>,
    batch: Arc<Batch>,
    permit: Option<OwnedSemaphorePermit>,
    stop: watch::Receiver<bool>,
) {
    let mut session = Session {
        spec,
        tally,
        batch,
        permit,
        online: false,
        settled: false,
    };
    let ended = match target.protocol {
        Protocol::Session => session.drive(&target, stop).await,
        Protocol::Mqtt0 => session.drive_mqtt(&target, 0, stop).await,
        Protocol::Mqtt1 => session.drive_mqtt(&target, 1, stop).await,
        Protocol::Nats => session.drive_nats(&target, stop).await,
    };
    session.end(ended);
}

struct Session {
    spec: Spec,
    tally: Arc<Tally>,
    batch: Arc<Batch>,
    permit: Option<OwnedSemaphorePermit>,
    online: bool,
    /// Whether the login outcome was reported to the batch.
    settled: bool,
}

/// How a session task ended.
enum Ended {
    /// Told to stop.
    Stopped,
    /// Something went wrong; the kind of failure.
    Failed(String),
}

/// Re-arms `pace` for `at`, unless it is armed for it already.
fn arm(pace: Pin<&mut Sleep>, armed: &mut Instant, at: Instant) {
    if at != *armed {
        *armed = at;
        pace.reset(at.into());
    }
}

/// Connects a broker session's TCP socket ([`mqtt`], [`nats`]), unless
/// told to stop first.
async fn broker_connect(
    target: &Target,
    stop: &mut watch::Receiver<bool>,
) -> Result<TcpStream, Ended> {
    tokio::select! {
        biased;
        _ = stop.changed() => Err(Ended::Stopped),
        stream = tokio::time::timeout(CONNECT_TIMEOUT, tcp_connect(target, target.tcp)) => {
            match stream {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(kind)) => Err(Ended::Failed(kind)),
                Err(_) => Err(Ended::Failed("connect: timed out".into())),
            }
        }
    }
}

/// Writes all of `out` to a broker session's socket, and clears it.
async fn broker_write(stream: &mut TcpStream, out: &mut BytesMut) -> Result<(), Ended> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(out)).await {
        Ok(Ok(())) => {
            out.clear();
            Ok(())
        }
        Ok(Err(e)) => Err(Ended::Failed(format!("write: {e}"))),
        Err(_) => Err(Ended::Failed("write: timed out".into())),
    }
}

impl Session {
    /// How the session ends when the server closes the connection.
    fn closed_by_server(&self) -> Ended {
        Ended::Failed(if self.online {
            "connection closed by the server".into()
        } else {
            "connection closed by the server before login".into()
        })
    }

    /// A broker session's keep-alive interval (the heartbeat asked for, or
    /// 30 s) and its plan, if it publishes.
    fn broker_role(&self) -> (Duration, Option<Arc<Plan>>) {
        let keep_alive =
            Duration::from_millis(u64::from(self.spec.heartbeat_ms.unwrap_or(30_000)).max(1000));
        let plan = match &self.spec.role {
            Role::Publisher(plan) => Some(plan.clone()),
            Role::Receiver => None,
        };
        (keep_alive, plan)
    }

    fn fail_login(&mut self, kind: String) {
        if !self.settled {
            self.settled = true;
            count_error(&self.batch.errors, kind);
            self.batch.settle();
            self.permit = None;
        }
    }

    fn went_online(&mut self, started: Instant) {
        if self.online {
            return;
        }
        self.online = true;
        self.tally.online.fetch_add(1, Ordering::Relaxed);
        if !self.settled {
            self.settled = true;
            let us = started.elapsed().as_micros() as u64;
            lock(&self.batch.latency).saturating_record(us.max(1));
            self.batch.online.fetch_add(1, Ordering::Relaxed);
            self.batch.settle();
        }
        self.permit = None;
    }

    fn end(mut self, ended: Ended) {
        if self.online {
            self.tally.online.fetch_sub(1, Ordering::Relaxed);
        }
        if let Ended::Failed(kind) = ended {
            if self.settled {
                count_error(&self.tally.errors, kind);
            } else {
                self.fail_login(kind);
            }
            self.tally.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn drive(&mut self, target: &Target, mut stop: watch::Receiver<bool>) -> Ended {
        let started = Instant::now();
        let config = ClientConfig {
            requested_heartbeat: self
                .spec
                .heartbeat_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
            ..ClientConfig::default()
        };
        let mut client = ClientSession::new(config);
        let connect = Link::connect(self.spec.carrier, target, client.max_frame_len());
        let mut link = tokio::select! {
            biased;
            _ = stop.changed() => return Ended::Stopped,
            link = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match link {
                Ok(Ok(link)) => link,
                Ok(Err(kind)) => return Ended::Failed(kind),
                Err(_) => return Ended::Failed("connect: timed out".into()),
            },
        };
        let framing = link.framing();
        client.handle_connected(Instant::now());
        let credentials = Credentials {
            user_id: self.spec.user.clone(),
            credential: Bytes::from_static(LOAD_PASSWORD.as_bytes()),
            device: "bench".into(),
            ..Default::default()
        };
        if let Err(e) = client.login(Instant::now(), credentials) {
            return Ended::Failed(format!("login: {e}"));
        }
        let plan = match &self.spec.role {
            Role::Publisher(plan) => Some(plan.clone()),
            Role::Receiver => None,
        };

        let mut out = BytesMut::new();
        let mut out_frames = Vec::new();
        let mut in_frames = Vec::new();
        let far = Instant::now() + Duration::from_secs(86_400);
        let timer = tokio::time::sleep_until(far.into());
        tokio::pin!(timer);
        let mut armed = far;
        let pace = tokio::time::sleep_until(far.into());
        tokio::pin!(pace);
        let mut pace_armed = far;
        let mut acked = 0;
        // A message taken from the plan that the window did not admit yet.
        let mut held: Option<u64> = None;
        loop {
            // Events first: they may ask for acks and requests.
            let mut last_seq = None;
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Online(_) => self.went_online(started),
                    ClientEvent::Message { seq, body } => {
                        self.tally.event(&body);
                        last_seq = Some(seq);
                    }
                    ClientEvent::Response { result, .. } => {
                        if let Some(plan) = &plan {
                            plan.answered(result.as_deref().map_err(|e| format!("request: {e}")));
                        }
                    }
                    ClientEvent::LoginFailed(failure) => {
                        return Ended::Failed(format!("login failed: {failure:?}"));
                    }
                    ClientEvent::Offline(reason) => {
                        return Ended::Failed(format!("offline: {reason:?}"));
                    }
                    _ => {}
                }
            }
            if let Some(seq) = last_seq.filter(|&s| s > acked) {
                // Acknowledged per batch read; the core decides when the
                // acknowledgement goes out (its default `ack_delay`).
                if client.ack(seq).is_ok() {
                    acked = seq;
                }
            }
            let mut wait_for_pace = false;
            if let (Some(plan), true) = (&plan, self.online) {
                let now = Instant::now();
                while client.pending_requests() < plan.window {
                    let taken = match held.take() {
                        Some(i) => Take::Message(i),
                        None => plan.take(now),
                    };
                    match taken {
                        Take::Message(i) => match client.request(now, plan.body(i)) {
                            Ok(_) => {}
                            // Responses come back out of order, and the
                            // window counts from the oldest unanswered id:
                            // keep this message for when it has moved.
                            Err(RequestError::TooManyPending { .. }) => {
                                held = Some(i);
                                break;
                            }
                            Err(e) => plan.answered(Err(format!("request: {e}"))),
                        },
                        Take::Later(at) => {
                            wait_for_pace = true;
                            arm(pace.as_mut(), &mut pace_armed, at);
                            break;
                        }
                        Take::Done => break,
                    }
                }
            }
            let mut close = false;
            while let Some(transmit) = client.poll_transmit(&mut out, framing) {
                match transmit {
                    Transmit::Frame if framing == Framing::Bare => {
                        out_frames.push(out.split().freeze());
                    }
                    Transmit::Frame => {}
                    Transmit::CloseConnection => {
                        close = true;
                        break;
                    }
                }
            }
            if !out.is_empty() || !out_frames.is_empty() {
                if let Err(kind) = link.write(&mut out, &mut out_frames).await {
                    return Ended::Failed(kind);
                }
            }
            if close {
                client.handle_disconnect(Instant::now());
                while let Some(event) = client.poll_event() {
                    match event {
                        ClientEvent::LoginFailed(failure) => {
                            return Ended::Failed(format!("login failed: {failure:?}"));
                        }
                        ClientEvent::Offline(reason) => {
                            return Ended::Failed(format!("offline: {reason:?}"));
                        }
                        _ => {}
                    }
                }
                return Ended::Failed("closed by the session".into());
            }
            let deadline = client.poll_timeout().unwrap_or(far);
            if deadline != armed {
                armed = deadline;
                timer.as_mut().reset(deadline.into());
            }
            tokio::select! {
                biased;
                _ = stop.changed() => return Ended::Stopped,
                read = link.read(&mut in_frames) => match read {
                    Ok(true) => {
                        let now = Instant::now();
                        for frame in in_frames.drain(..) {
                            // A protocol error closes the session; its
                            // events say why.
                            let _ = client.handle_frame(now, frame);
                        }
                    }
                    Ok(false) => {
                        client.handle_disconnect(Instant::now());
                        return self.closed_by_server();
                    }
                    Err(kind) => return Ended::Failed(kind),
                },
                () = &mut timer => {
                    // Re-arm on the next turn even if the deadline is unchanged.
                    armed = started;
                    client.handle_timeout(Instant::now());
                }
                () = &mut pace, if wait_for_pace => {}
            }
        }
    }
}

/// Feeds `wire` to `decode` in pieces of every size from one byte up,
/// and returns what came out for each size (for the codecs' tests).
#[cfg(test)]
fn decoded_at_every_cut<T>(
    wire: &[u8],
    decode: impl Fn(&mut BytesMut) -> Result<Option<T>, String>,
) -> Vec<(usize, Vec<T>, BytesMut)> {
    (1..wire.len())
        .map(|cut| {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(cut) {
                buf.extend_from_slice(piece);
                while let Some(item) = decode(&mut buf).expect("decodes") {
                    got.push(item);
                }
            }
            (cut, got, buf)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_handed_out_in_turn_and_a_taken_one_is_skipped() {
        // An address of its own, so nothing else holds its ports.
        let source: IpAddr = "127.0.0.77".parse().unwrap();
        let any: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let target = Target::new(any, any, "/".into(), source);
        let taken = std::net::TcpListener::bind(SocketAddr::new(source, 1025)).unwrap();
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                let socket = TcpSocket::new_v4().unwrap();
                target.bind(&socket).unwrap();
                socket.local_addr().unwrap().port()
            })
            .collect();
        assert_eq!(ports, [1024, 1026, 1027]);
        drop(taken);
    }
}
