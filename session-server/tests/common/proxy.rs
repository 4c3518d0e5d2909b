//! A fault-injecting TCP proxy for loopback tests: partitions (a black
//! hole), stalls (added latency) and resets, between clients and a server.
//!
//! One [`Proxy`] is one network *link*: it listens on its own port of
//! 127.0.0.1 and forwards every connection made to it, byte for byte, to the
//! upstream address (a TCP or a WebSocket listener alike, since it never
//! looks at the bytes). Faults apply to the link, so to every connection on
//! it, current and new, until they are lifted:
//!
//! - [`partition`](Proxy::partition): nothing is forwarded either way and
//!   nothing is closed. Bytes (and ends of stream) sent meanwhile are held,
//!   as TCP retransmission would hold them, and delivered when the link
//!   [`heal`](Proxy::heal)s. A connection *opened* during a partition never
//!   reaches the server (its SYN would have been lost): the proxy holds it
//!   without forwarding anything and resets it when the partition heals.
//! - [`stall`](Proxy::stall): every chunk is delayed by the given time.
//! - [`reset`](Proxy::reset): every connection open now is aborted on both
//!   sides with a TCP reset, as a NAT or a middlebox losing its state would.
//!
//! [`schedule`] turns a seed into a reproducible list of faults, and
//! [`run_schedule`] plays it against a link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use session_core::SplitMix64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The state of one link, shared by its accept loop and its connections.
#[derive(Debug)]
struct Link {
    upstream: SocketAddr,
    /// False while partitioned.
    open: watch::Sender<bool>,
    /// Added latency per chunk, in milliseconds (0: none).
    delay_ms: AtomicU64,
    /// Bumped by every reset; connections alive at that moment abort.
    resets: watch::Sender<u64>,
    /// Connections accepted and not yet finished.
    live: AtomicUsize,
    /// Connections accepted in all.
    accepted: AtomicUsize,
}

impl Link {
    async fn wait_open(&self) {
        let mut open = self.open.subscribe();
        // The sender lives as long as the link, so this cannot fail.
        let _ = open.wait_for(|open| *open).await;
    }

    fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Relaxed))
    }
}

/// One link between clients and an upstream server, with faults on demand.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    link: Arc<Link>,
    accept: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Proxy {
    /// A link to `upstream`, listening on a free port of 127.0.0.1.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds");
        let addr = listener.local_addr().expect("the proxy's address");
        let link = Arc::new(Link {
            upstream,
            open: watch::channel(true).0,
            delay_ms: AtomicU64::new(0),
            resets: watch::channel(0).0,
            live: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, link.clone()));
        Self { addr, link, accept }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of the link for `kind` ("tcp" or "ws").
    pub fn url(&self, kind: &str) -> String {
        match kind {
            "ws" => format!("ws://{}/session", self.addr),
            _ => format!("tcp://{}", self.addr),
        }
    }

    /// Stops forwarding both ways, holding what is sent, closing nothing.
    pub fn partition(&self) {
        self.link.open.send_replace(false);
    }

    /// Delays every chunk by `delay` (zero lifts the stall).
    pub fn stall(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.link.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Lifts every fault: held bytes flow again, without added latency.
    pub fn heal(&self) {
        self.stall(Duration::ZERO);
        self.link.open.send_replace(true);
    }

    /// Whether the link is partitioned now.
    pub fn is_partitioned(&self) -> bool {
        !*self.link.open.borrow()
    }

    /// Aborts every connection open now, with a TCP reset to both sides.
    pub fn reset(&self) {
        self.link.resets.send_modify(|generation| *generation += 1);
    }

    /// Connections open through the link now.
    pub fn live_connections(&self) -> usize {
        self.link.live.load(Ordering::Relaxed)
    }

    /// Connections accepted since the start.
    pub fn accepted_connections(&self) -> usize {
        self.link.accepted.load(Ordering::Relaxed)
    }
}

async fn accept_loop(listener: TcpListener, link: Arc<Link>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        link.accepted.fetch_add(1, Ordering::Relaxed);
        link.live.fetch_add(1, Ordering::Relaxed);
        let link = link.clone();
        tokio::spawn(async move {
            serve(&link, client).await;
            link.live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Aborts a connection: a reset instead of an orderly close.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn serve(link: &Link, client: TcpStream) {
    let mut resets = link.resets.subscribe();
    resets.borrow_and_update();
    let _ = client.set_nodelay(true);

    if !*link.open.borrow() {
        // Born during a partition: it never reaches the server. Swallow what
        // the client sends until it gives up, the partition heals or the
        // link is reset; then abort it.
        let mut client = client;
        let mut scratch = [0u8; 4096];
        tokio::select! {
            () = link.wait_open() => {}
            _ = resets.changed() => {}
            () = async {
                while matches!(client.read(&mut scratch).await, Ok(n) if n > 0) {}
            } => {}
        }
        abort(&client);
        return;
    }

    let server = tokio::select! {
        server = TcpStream::connect(link.upstream) => server,
        _ = resets.changed() => { abort(&client); return; }
    };
    let Ok(server) = server else {
        abort(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let aborted = {
        let up = pump(link, &mut client_read, &mut server_write);
        let down = pump(link, &mut server_read, &mut client_write);
        // A reset seen on either side is passed on to the other as a reset.
        let both = async { futures_util::future::try_join(up, down).await.is_err() };
        tokio::select! {
            aborted = both => aborted,
            _ = resets.changed() => true,
        }
    };
    if aborted {
        abort(client_read.as_ref());
        abort(server_read.as_ref());
    }
}

/// Forwards `from` to `to` until the end of the stream, holding bytes during
/// a partition and delaying them during a stall. `Err` if `from` failed (a
/// reset) or `to` could not be written.
async fn pump(link: &Link, from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf) -> Result<(), ()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buf).await;
        // What happened (data, the end of the stream, a reset) waits for
        // the link.
        link.wait_open().await;
        let n = read.map_err(|_| ())?;
        let delay = link.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
            link.wait_open().await;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await.map_err(|_| ())?;
    }
}

/// One fault of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Black-hole the link for this long, then heal it.
    Partition(Duration),
    /// Delay every chunk by `delay` for `for_`, then lift the stall.
    Stall {
        /// The latency added per chunk.
        delay: Duration,
        /// How long the stall lasts.
        for_: Duration,
    },
    /// Reset every connection on the link.
    Reset,
}

/// How a schedule is drawn.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleShape {
    /// Faults start within this time from the start.
    pub span: Duration,
    /// Quiet time between faults, drawn from this range (ms).
    pub gap_ms: (u64, u64),
    /// Short partitions (ms).
    pub short_partition_ms: (u64, u64),
    /// Long partitions (ms): meant to outlast the session timeout.
    pub long_partition_ms: (u64, u64),
    /// Out of 100 partitions, how many are long.
    pub long_percent: u64,
}

fn between(rng: &mut SplitMix64, (low, high): (u64, u64)) -> u64 {
    low + rng.next_u64() % (high - low + 1)
}

/// A reproducible list of `(start offset, fault)` for one link, drawn from
/// `seed`: partitions, stalls and resets in random order, separated by
/// quiet gaps, all starting within `shape.span`.
pub fn schedule(seed: u64, shape: &ScheduleShape) -> Vec<(Duration, Fault)> {
    let mut rng = SplitMix64::new(seed);
    let mut faults = Vec::new();
    let mut at = between(&mut rng, (0, shape.gap_ms.1));
    let span = u64::try_from(shape.span.as_millis()).unwrap_or(u64::MAX);
    while at < span {
        let fault = match rng.next_u64() % 10 {
            0..=3 => {
                let long = rng.next_u64() % 100 < shape.long_percent;
                let range = if long {
                    shape.long_partition_ms
                } else {
                    shape.short_partition_ms
                };
                Fault::Partition(Duration::from_millis(between(&mut rng, range)))
            }
            4..=6 => Fault::Stall {
                delay: Duration::from_millis(between(&mut rng, (20, 300))),
                for_: Duration::from_millis(between(&mut rng, (200, 1200))),
            },
            _ => Fault::Reset,
        };
        let lasts = match fault {
            Fault::Partition(d) => d,
            Fault::Stall { for_, .. } => for_,
            Fault::Reset => Duration::ZERO,
        };
        faults.push((Duration::from_millis(at), fault));
        at += u64::try_from(lasts.as_millis()).unwrap_or(0) + between(&mut rng, shape.gap_ms);
    }
    faults
}

/// Plays `faults` against `proxy`, each at its offset from now; the link is
/// healed at the end.
pub async fn run_schedule(proxy: &Proxy, faults: &[(Duration, Fault)]) {
    let start = tokio::time::Instant::now();
    for &(at, fault) in faults {
        tokio::time::sleep_until(start + at).await;
        match fault {
            Fault::Partition(lasts) => {
                proxy.partition();
                tokio::time::sleep(lasts).await;
                proxy.heal();
            }
            Fault::Stall { delay, for_ } => {
                proxy.stall(delay);
                tokio::time::sleep(for_).await;
                proxy.stall(Duration::ZERO);
            }
            Fault::Reset => proxy.reset(),
        }
    }
    proxy.heal();
}
