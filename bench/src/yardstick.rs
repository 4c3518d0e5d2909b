//! A yardstick for the machine's speed, measured beside every run.
//!
//! The bench machine is a shared virtual machine whose speed drifts by
//! 15–20 % from one set of runs to the next, and the CPU-bound figures
//! (S1, S2's CPU, S3, S4) are mostly the kernel's loopback TCP work. So
//! each run also measures the CPU time of one loopback TCP round trip:
//! two threads pass a 16-byte message back and forth over a blocking
//! socket, each sleeping in `read` until the other writes, which is the
//! kernel work (a send, a receive, a wake-up) that the server does per
//! heartbeat. Dividing a figure by it gives the figure in round trips,
//! which compares across sets where the raw figure does not.
//!
//! Beside S3 it also measures S3's floor, [`delivery_floor`]: the bare
//! kernel work of S3's deliveries, with no protocol, no server and no load
//! generator. S3 divided by it is the share of the machine's loopback
//! delivery rate that the whole stack reaches. Beside S1, likewise, S1's
//! floor, [`login_floor`]: bare connections, each answered once. After
//! S2cpu, [`bare_heartbeats`]: S2cpu's heartbeats answered by a bare
//! epoll loop.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use serde::Serialize;

use crate::procfs::thread_cpu_ns;

/// What one measurement found.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Yardstick {
    /// CPU time of one round trip, both threads together, µs.
    pub round_trip_cpu_us: f64,
    /// Wall time of one round trip, µs.
    pub round_trip_wall_us: f64,
}

/// Message size: about a heartbeat and its answer.
const MESSAGE: usize = 16;
/// Round trips before the measured ones.
const WARM_UP: u32 = 1_000;

/// Measures `round_trips` loopback round trips (blocking; a few hundred
/// milliseconds for 10,000).
pub fn loopback(round_trips: u32) -> io::Result<Yardstick> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buf = [0u8; MESSAGE];
        for _ in 0..WARM_UP {
            stream.read_exact(&mut buf)?;
            stream.write_all(&buf)?;
        }
        let start = thread_cpu_ns()?;
        loop {
            match stream.read_exact(&mut buf) {
                Ok(()) => stream.write_all(&buf)?,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        Ok(thread_cpu_ns()? - start)
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buf = [7u8; MESSAGE];
    // Warm up first: the first round trips of a fresh pair cost more.
    for _ in 0..WARM_UP {
        stream.write_all(&buf)?;
        stream.read_exact(&mut buf)?;
    }
    let (wall, cpu) = (Instant::now(), thread_cpu_ns()?);
    for _ in 0..round_trips {
        stream.write_all(&buf)?;
        stream.read_exact(&mut buf)?;
    }
    let own = thread_cpu_ns()? - cpu;
    let wall = wall.elapsed();
    drop(stream);
    let echo = echo
        .join()
        .map_err(|_| io::Error::other("the echo thread panicked"))??;
    let n = f64::from(round_trips.max(1));
    Ok(Yardstick {
        round_trip_cpu_us: (own + echo) as f64 / 1e3 / n,
        round_trip_wall_us: wall.as_secs_f64() * 1e6 / n,
    })
}

/// What [`delivery_floor`] found.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    /// Messages delivered per second.
    pub per_s: f64,
    /// CPU time per message, every thread together, µs.
    pub cpu_us: f64,
}

/// Size of one message: about one S3 event frame (a 64-byte body, its
/// sender's name, the frame's fields and length prefix).
const FLOOR_MESSAGE: usize = 80;

/// The delivery rate of bare loopback TCP, S3's shape without a protocol:
/// `pairs` connected socket pairs, one writer thread per core writing
/// `messages` messages of 80 bytes round-robin over its share of the pairs
/// (one `write` each, as a reactor writes each event),
/// and one thread reading them all through edge-triggered epoll, as a
/// load generator's worker does. Holds `2 × pairs` descriptors meanwhile.
pub fn delivery_floor(pairs: usize, messages: usize) -> io::Result<Floor> {
    use mio::{Events, Interest, Poll, Token};

    let pairs = pairs.max(1);
    let writers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(pairs);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut readers = Vec::with_capacity(pairs);
    let mut senders = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let stream = TcpStream::connect(addr)?;
        let (accepted, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        accepted.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        readers.push(mio::net::TcpStream::from_std(stream));
        senders.push(accepted);
    }
    drop(listener);
    let mut poll = Poll::new()?;
    for (i, stream) in readers.iter_mut().enumerate() {
        poll.registry()
            .register(stream, Token(i), Interest::READABLE)?;
    }
    let total = (messages / writers * writers * FLOOR_MESSAGE) as u64;
    let reader = std::thread::spawn(move || -> io::Result<u64> {
        let start = thread_cpu_ns()?;
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        while got < total {
            // A writer that failed leaves the reader short: give up then.
            poll.poll(&mut events, Some(std::time::Duration::from_secs(10)))?;
            if events.is_empty() {
                return Err(io::Error::other("the delivery floor stalled"));
            }
            for event in &events {
                got += drain(&mut readers[event.token().0], &mut buf)? as u64;
            }
        }
        Ok(thread_cpu_ns()? - start)
    });
    let wall = Instant::now();
    let per_writer = pairs.div_ceil(writers);
    let mut threads = Vec::with_capacity(writers);
    for _ in 0..writers {
        let mut mine: Vec<TcpStream> = senders.drain(..per_writer.min(senders.len())).collect();
        let count = messages / writers;
        threads.push(std::thread::spawn(move || -> io::Result<u64> {
            let start = thread_cpu_ns()?;
            let message = [1u8; FLOOR_MESSAGE];
            let len = mine.len();
            for i in 0..count {
                mine[i % len].write_all(&message)?;
            }
            Ok(thread_cpu_ns()? - start)
        }));
    }
    let mut cpu_ns = 0;
    for thread in threads {
        cpu_ns += thread
            .join()
            .map_err(|_| io::Error::other("a writer thread panicked"))??;
    }
    cpu_ns += reader
        .join()
        .map_err(|_| io::Error::other("the reader thread panicked"))??;
    let wall = wall.elapsed().as_secs_f64();
    let delivered = (total / FLOOR_MESSAGE as u64).max(1) as f64;
    Ok(Floor {
        per_s: delivered / wall,
        cpu_us: cpu_ns as f64 / 1e3 / delivered,
    })
}

/// Reads what `stream` has into `buf`, over and over, until a read comes
/// up short (under edge-triggered epoll a short read drained the socket:
/// epoll(7)), finds the end of the stream, or would block; returns how many
/// bytes it read. The readers of the floors and of the bare heartbeats,
/// as a reactor reads.
fn drain(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut read = 0;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(read),
            Ok(n) => {
                read += n;
                if n < buf.len() {
                    return Ok(read);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(read),
            Err(e) => return Err(e),
        }
    }
}

/// What [`login_floor`] found.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoginFloor {
    /// Logins per second.
    pub per_s: f64,
    /// Login latency (connect start to answer), p99, ms.
    pub p99_ms: f64,
}

/// Bytes of the floor's login, about a `Login` frame of S1.
const FLOOR_LOGIN: usize = 60;
/// Bytes of the floor's answer, about a `LoginOk` frame.
const FLOOR_ANSWER: usize = 90;

/// The login rate of bare loopback TCP, S1's shape without a protocol:
/// three threads (S1 has three load-generator processes) connect
/// `sessions` sockets between them, `in_flight` at a time, write a login's
/// worth of bytes on each once connected and count it logged in when an
/// answer's worth comes back; another thread accepts, reads the login and
/// writes the answer. Every connection stays open until the end, as in S1.
/// Holds `2 × sessions` descriptors meanwhile.
///
/// A first, unmeasured pass of the same size warms the process and the
/// kernel up: the first pass in a process was slow (a p99 of 23–29 ms,
/// against 7–11 ms for the passes after it, even after a warm-up of 3,000
/// logins).
pub fn login_floor(sessions: usize, in_flight: usize) -> io::Result<LoginFloor> {
    login_floor_pass(sessions, in_flight)?;
    login_floor_pass(sessions, in_flight)
}

/// One pass of [`login_floor`].
fn login_floor_pass(sessions: usize, in_flight: usize) -> io::Result<LoginFloor> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use mio::{Events, Interest, Poll, Token};

    // A listen backlog above the handshakes in flight, as sessiond's.
    let std_listener = {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
        let listener = {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let _entered = runtime.enter();
            socket.listen(4096)?.into_std()?
        };
        listener.set_nonblocking(true)?;
        listener
    };
    let addr = std_listener.local_addr()?;
    let done = Arc::new(AtomicBool::new(false));
    let server_done = done.clone();
    let server = std::thread::spawn(move || -> io::Result<()> {
        let mut listener = mio::net::TcpListener::from_std(std_listener);
        let mut poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, Token(usize::MAX), Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        let mut conns: Vec<mio::net::TcpStream> = Vec::new();
        let mut buf = [0u8; 4096];
        let answer = [2u8; FLOOR_ANSWER];
        while !server_done.load(Ordering::Relaxed) {
            poll.poll(&mut events, Some(Duration::from_millis(20)))?;
            for event in &events {
                if event.token() == Token(usize::MAX) {
                    loop {
                        match listener.accept() {
                            Ok((mut stream, _)) => {
                                stream.set_nodelay(true)?;
                                let token = Token(conns.len());
                                poll.registry()
                                    .register(&mut stream, token, Interest::READABLE)?;
                                conns.push(stream);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                } else if let Some(stream) = conns.get_mut(event.token().0) {
                    match stream.read(&mut buf) {
                        Ok(n) if n >= FLOOR_LOGIN => stream.write_all(&answer)?,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    });

    // As many connecting threads as S1 has load-generator processes, each
    // with its share of the sessions and of the handshakes in flight.
    let threads: Vec<_> = (0..FLOOR_CONNECTORS)
        .map(|i| {
            let share = |n: usize| n / FLOOR_CONNECTORS + usize::from(i < n % FLOOR_CONNECTORS);
            let (sessions, in_flight) = (share(sessions), share(in_flight).max(1));
            std::thread::spawn(move || log_in(addr, sessions, in_flight))
        })
        .collect();
    let mut result = Ok((crate::stats::latency(), None::<Instant>, None::<Instant>));
    let mut open = Vec::new();
    for thread in threads {
        let part = thread
            .join()
            .map_err(|_| io::Error::other("a connecting thread panicked"))
            .and_then(|part| part);
        result = match (result, part) {
            (Ok((mut latency, first, last)), Ok(part)) => {
                latency.add(&part.latency).map_err(io::Error::other)?;
                let first = first.into_iter().chain(part.first).min();
                let last = last.into_iter().chain(part.last).max();
                open.push(part.conns);
                Ok((latency, first, last))
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
    }
    done.store(true, Ordering::Relaxed);
    let served = server
        .join()
        .map_err(|_| io::Error::other("the floor's server thread panicked"))?;
    drop(open);
    let (latency, first, last) = result?;
    served?;
    let wall = match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    Ok(LoginFloor {
        per_s: latency.len() as f64 / wall.max(1e-9),
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1e3,
    })
}

/// Connecting threads of [`login_floor`], as S1's load-generator processes.
const FLOOR_CONNECTORS: usize = 3;

/// What one connecting thread of [`login_floor`] saw.
struct LoggedIn {
    latency: crate::stats::Latency,
    first: Option<Instant>,
    last: Option<Instant>,
    /// The connections, closed only once every thread is done.
    conns: Vec<mio::net::TcpStream>,
}

/// Connects `sessions` sockets to `addr`, `in_flight` at a time, and logs
/// each in (see [`login_floor`]); keeps them open until it returns.
fn log_in(addr: std::net::SocketAddr, sessions: usize, in_flight: usize) -> io::Result<LoggedIn> {
    use std::time::Duration;

    use mio::{Events, Interest, Poll, Token};

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    // Each connection: its stream, when its connect started, and whether
    // its login went out.
    let mut conns: Vec<(mio::net::TcpStream, Instant, bool)> = Vec::with_capacity(sessions);
    let mut latency = crate::stats::latency();
    let mut buf = [0u8; 4096];
    let login = [1u8; FLOOR_LOGIN];
    let (mut started, mut online) = (0, 0);
    let first = Instant::now();
    let mut last = None;
    let connect =
        |conns: &mut Vec<(mio::net::TcpStream, Instant, bool)>, poll: &Poll| -> io::Result<()> {
            let mut stream = mio::net::TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            poll.registry().register(
                &mut stream,
                Token(conns.len()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push((stream, Instant::now(), false));
            Ok(())
        };
    while started < sessions.min(in_flight) {
        connect(&mut conns, &poll)?;
        started += 1;
    }
    while online < sessions {
        poll.poll(&mut events, Some(Duration::from_secs(10)))?;
        if events.is_empty() {
            return Err(io::Error::other("the login floor stalled"));
        }
        let mut finished = 0;
        for event in &events {
            let Some((stream, since, sent)) = conns.get_mut(event.token().0) else {
                continue;
            };
            if !*sent && event.is_writable() {
                if let Some(e) = stream.take_error()? {
                    return Err(e);
                }
                if stream.peer_addr().is_ok() {
                    stream.write_all(&login)?;
                    *sent = true;
                }
            }
            if *sent && event.is_readable() {
                match stream.read(&mut buf) {
                    Ok(n) if n >= FLOOR_ANSWER => {
                        let now = Instant::now();
                        let us = now.duration_since(*since).as_micros() as u64;
                        latency.saturating_record(us.max(1));
                        last = Some(now);
                        online += 1;
                        finished += 1;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for _ in 0..finished {
            if started < sessions {
                connect(&mut conns, &poll)?;
                started += 1;
            }
        }
    }
    Ok(LoggedIn {
        latency,
        first: Some(first),
        last,
        conns: conns.into_iter().map(|(stream, ..)| stream).collect(),
    })
}

/// What [`bare_heartbeats`] found.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BareHeartbeats {
    /// CPU time of the answering threads per heartbeat, µs: the server's
    /// side of a bare heartbeat.
    pub server_cpu_us: f64,
    /// CPU time of the heartbeating threads per heartbeat, µs.
    pub client_cpu_us: f64,
}

/// Bytes of a bare heartbeat, about a `Heartbeat` frame.
const BARE_HEARTBEAT: usize = 12;
/// Bytes of a bare heartbeat's answer, about a `HeartbeatAck` frame.
const BARE_HEARTBEAT_ANSWER: usize = 20;
/// Threads sending the bare heartbeats, as S2cpu's load-generator
/// processes.
const BARE_HEARTBEATERS: usize = 2;

/// The server's side of a heartbeat over bare loopback TCP, S2cpu's shape
/// without a protocol: `pairs` connected socket pairs, each first logged
/// in (a login's worth of bytes each way) and then idle for `idle`, longer
/// than TCP's retransmission timeout, as S2cpu's sessions are idle between
/// heartbeats. Then two threads (S2cpu has two load-generator processes)
/// send one heartbeat's worth of bytes on each of their pairs, evenly
/// spread over `spread`, as S2cpu's heartbeats follow its logins. One
/// thread per core, each with every n-th pair, answers them through
/// edge-triggered epoll, as `sessiond`'s reactors do: it reads each
/// readable socket into one shared buffer and writes an answer's worth of
/// bytes. Holds `2 × pairs` descriptors meanwhile.
///
/// The answering threads' CPU time per heartbeat is what a minimal server
/// costs per heartbeat on this machine, with nothing of a session's work:
/// almost all of it is the kernel's. It is not a strict floor: the
/// kernel's cost of a wake-up depends on how the threads of both sides
/// are placed and timed, and `sessiond`'s came to 0.75–1.33 of this
/// loop's, median 0.87, in the runs of `docs/benchmarks.md` ("S2cpu
/// against a bare loop").
pub fn bare_heartbeats(
    pairs: usize,
    spread: std::time::Duration,
    idle: std::time::Duration,
) -> io::Result<BareHeartbeats> {
    let pairs = pairs.max(1);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut clients = Vec::with_capacity(pairs);
    let mut servers = Vec::with_capacity(pairs);
    let (mut login, mut login_answer) = ([1u8; FLOOR_LOGIN], [2u8; FLOOR_ANSWER]);
    for _ in 0..pairs {
        let mut client = TcpStream::connect(addr)?;
        let (mut server, _) = listener.accept()?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        client.write_all(&login)?;
        server.read_exact(&mut login)?;
        server.write_all(&login_answer)?;
        client.read_exact(&mut login_answer)?;
        client.set_nonblocking(true)?;
        server.set_nonblocking(true)?;
        clients.push(mio::net::TcpStream::from_std(client));
        servers.push(mio::net::TcpStream::from_std(server));
    }
    drop(listener);
    std::thread::sleep(idle);

    // One answering thread per core, as sessiond has one reactor per core,
    // each with every n-th pair, as sessiond hands its sessions to its
    // reactors in turn.
    let answerers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(pairs);
    let mut shares: Vec<Vec<_>> = (0..answerers).map(|_| Vec::new()).collect();
    for (i, server) in servers.into_iter().enumerate() {
        shares[i % answerers].push(server);
    }
    let answering: Vec<_> = shares
        .into_iter()
        .map(|mine| std::thread::spawn(move || answer(mine)))
        .collect();

    let per_thread = pairs.div_ceil(BARE_HEARTBEATERS);
    let threads: Vec<_> = (0..BARE_HEARTBEATERS)
        .map(|_| {
            let mine: Vec<_> = clients.drain(..per_thread.min(clients.len())).collect();
            std::thread::spawn(move || heartbeat(mine, spread))
        })
        .collect();
    let mut client_ns = 0;
    for thread in threads {
        client_ns += thread
            .join()
            .map_err(|_| io::Error::other("a heartbeating thread panicked"))??;
    }
    let mut server_ns = 0;
    for thread in answering {
        server_ns += thread
            .join()
            .map_err(|_| io::Error::other("an answering thread panicked"))??;
    }
    let n = pairs as f64;
    Ok(BareHeartbeats {
        server_cpu_us: server_ns as f64 / 1e3 / n,
        client_cpu_us: client_ns as f64 / 1e3 / n,
    })
}

/// One answering thread of [`bare_heartbeats`]: answers one heartbeat on
/// each of `streams`, and returns its CPU time once all were answered.
fn answer(mut streams: Vec<mio::net::TcpStream>) -> io::Result<u64> {
    use std::time::Duration;

    use mio::{Events, Interest, Poll, Token};

    let mut poll = Poll::new()?;
    for (i, stream) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(stream, Token(i), Interest::READABLE)?;
    }
    let start = thread_cpu_ns()?;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let answer = [3u8; BARE_HEARTBEAT_ANSWER];
    let mut got = 0usize;
    while got < streams.len() * BARE_HEARTBEAT {
        poll.poll(&mut events, Some(Duration::from_secs(10)))?;
        if events.is_empty() {
            return Err(io::Error::other("the bare heartbeats stalled"));
        }
        for event in &events {
            let stream = &mut streams[event.token().0];
            let read = drain(stream, &mut buf)?;
            if read > 0 {
                got += read;
                stream.write_all(&answer)?;
            }
        }
    }
    Ok(thread_cpu_ns()? - start)
}

/// One heartbeating thread of [`bare_heartbeats`]: sends a heartbeat on
/// each of `streams`, evenly spread over `spread`, and returns its CPU
/// time once every answer came back.
fn heartbeat(
    mut streams: Vec<mio::net::TcpStream>,
    spread: std::time::Duration,
) -> io::Result<u64> {
    use std::time::Duration;

    use mio::{Events, Interest, Poll, Token};

    let start = thread_cpu_ns()?;
    let mut poll = Poll::new()?;
    for (i, stream) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(stream, Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let heartbeat = [4u8; BARE_HEARTBEAT];
    let total = streams.len();
    let (mut sent, mut answered) = (0, 0);
    let began = Instant::now();
    while answered < total {
        // Send every heartbeat that is due, on whole milliseconds, as
        // tokio's timers (S2cpu's load generator's) fire.
        let due = {
            let tick = Duration::from_millis(began.elapsed().as_millis() as u64);
            let share = tick.as_secs_f64() / spread.as_secs_f64().max(1e-9);
            ((share * total as f64) as usize + 1).min(total)
        };
        while sent < due {
            streams[sent].write_all(&heartbeat)?;
            sent += 1;
        }
        let wait = if sent < total {
            // Until the first whole millisecond at or after the next one.
            let next = spread.mul_f64(sent as f64 / total as f64);
            let next = Duration::from_millis(next.as_micros().div_ceil(1000) as u64);
            next.saturating_sub(began.elapsed())
        } else {
            Duration::from_secs(10)
        };
        poll.poll(&mut events, Some(wait))?;
        if events.is_empty() && sent == total {
            return Err(io::Error::other("the bare heartbeats' answers stalled"));
        }
        for event in &events {
            answered += drain(&mut streams[event.token().0], &mut buf)? / BARE_HEARTBEAT_ANSWER;
        }
    }
    Ok(thread_cpu_ns()? - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_costs_some_cpu_and_time() {
        let y = loopback(200).expect("measures");
        assert!(y.round_trip_cpu_us > 0.0, "{y:?}");
        assert!(y.round_trip_wall_us > 0.0, "{y:?}");
        // Both threads' CPU fits in the wall time of two cores.
        assert!(
            y.round_trip_cpu_us <= 2.0 * y.round_trip_wall_us + 1.0,
            "{y:?}"
        );
    }

    #[test]
    fn the_login_floor_answers_every_login() {
        let floor = login_floor(300, 50).expect("measures");
        assert!(floor.per_s > 0.0 && floor.p99_ms > 0.0, "{floor:?}");
    }

    #[test]
    fn the_bare_heartbeats_answers_every_heartbeat() {
        // Returns only once every heartbeat was answered.
        let spread = std::time::Duration::from_millis(50);
        let bare = bare_heartbeats(100, spread, spread).expect("measures");
        assert!(
            bare.server_cpu_us > 0.0 && bare.client_cpu_us > 0.0,
            "{bare:?}"
        );
    }

    #[test]
    fn the_floor_delivers_every_message() {
        // Returns only once the reader got every byte.
        let floor = delivery_floor(50, 2_000).expect("measures");
        assert!(floor.per_s > 0.0 && floor.cpu_us > 0.0, "{floor:?}");
    }
}
