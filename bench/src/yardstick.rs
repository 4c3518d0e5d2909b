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
}
