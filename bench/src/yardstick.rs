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
//! delivery rate that the whole stack reaches.

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
/// `messages` messages of 80 bytes round-robin over its
/// share of the pairs (one `write` each, as a reactor writes each event),
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
            poll.poll(&mut events, None)?;
            for event in &events {
                let stream = &mut readers[event.token().0];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            got += n as u64;
                            // A short read drained the socket (epoll(7)).
                            if n < buf.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
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
    fn the_floor_delivers_every_message() {
        // Returns only once the reader got every byte.
        let floor = delivery_floor(50, 2_000).expect("measures");
        assert!(floor.per_s > 0.0 && floor.cpu_us > 0.0, "{floor:?}");
    }
}
