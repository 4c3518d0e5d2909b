//! The core simulation: up to a million server sessions in memory, no
//! sockets, driven through login, heartbeats and expiry on a virtual clock,
//! with a one-second timer wheel as a server driver would keep.
//!
//! Per size it reports the bytes one open session holds, and the time and
//! allocations of a login, a heartbeat and an expiry. Heartbeats arrive in
//! a random order over the sessions (as they would from a network), so the
//! figures include the cache misses a large table costs; one more round in
//! index order shows the same work without them. An expiry includes the
//! wheel's work: visiting the slot, refiling the entry once (the deadline
//! moved since login), then firing it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use session_core::proto::v1::{self, client_frame};
use session_core::{
    Entropy, Framing, ServerConfig, ServerEvent, ServerSession, ServerState, SplitMix64, Transmit,
    encode_frame,
};

use crate::alloc;

/// Slots of the timer wheel, one second each: more than the longest
/// deadline ahead (the 90 s session timeout).
const WHEEL_SLOTS: usize = 256;

/// What one simulated size measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimPoint {
    /// Sessions.
    pub sessions: u64,
    /// `size_of::<ServerSession>()`.
    pub inline_bytes: u64,
    /// Heap bytes held per open session (requested from the allocator;
    /// includes the session's timer-wheel entry).
    pub heap_bytes: f64,
    /// Inline plus heap.
    pub bytes_per_session: f64,
    /// Resident memory growth of this process per session.
    pub rss_bytes_per_session: f64,
    /// Allocations per login.
    pub allocs_per_login: f64,
    /// Time per login: frame decoded, login accepted, `LoginOk` encoded.
    pub login_ns: f64,
    /// Time per heartbeat: frame decoded, expiry pushed back, ack encoded;
    /// sessions visited in time order, which is random over memory.
    pub heartbeat_ns: f64,
    /// The same, sessions visited in index order (no cache misses to speak of).
    pub heartbeat_seq_ns: f64,
    /// Allocations per heartbeat.
    pub allocs_per_heartbeat: f64,
    /// Time per expiry: wheel slot visited, `handle_timeout`, events and the
    /// close signal drained, session freed.
    pub expiry_ns: f64,
    /// Allocations per expiry.
    pub allocs_per_expiry: f64,
    /// Heartbeats handled.
    pub heartbeats: u64,
    /// Sessions expired.
    pub expiries: u64,
}

/// The timer wheel: session indices filed by the second of their deadline.
/// Entries are not moved when a heartbeat pushes a deadline back; when a
/// slot comes due, each entry is checked and refiled if it is not due yet.
struct Wheel {
    origin: Instant,
    slots: Vec<Vec<u32>>,
    /// The next second to process.
    cursor: u64,
}

impl Wheel {
    fn new(origin: Instant) -> Self {
        Self {
            origin,
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            cursor: 0,
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_secs()
    }

    fn insert(&mut self, at: Instant, index: u32) {
        let second = self.second(at).max(self.cursor);
        self.slots[second as usize % WHEEL_SLOTS].push(index);
    }

    /// Processes every second wholly before `now`: `fire` gets each index
    /// filed there and returns the session's next deadline to refile it at.
    fn advance(&mut self, now: Instant, mut fire: impl FnMut(u32) -> Option<Instant>) {
        let until = self.second(now);
        while self.cursor < until {
            let slot = self.cursor as usize % WHEEL_SLOTS;
            let mut entries = std::mem::take(&mut self.slots[slot]);
            self.cursor += 1;
            for index in entries.drain(..) {
                if let Some(next) = fire(index) {
                    self.insert(next, index);
                }
            }
            // Keep the slot's buffer for the next lap.
            self.slots[slot] = entries;
        }
    }
}

fn client_frame(kind: client_frame::Kind) -> Bytes {
    let mut buf = BytesMut::new();
    encode_frame(
        &v1::ClientFrame { kind: Some(kind) },
        Framing::Bare,
        &mut buf,
    );
    let frame = buf.freeze();
    // The first clone of a Vec-backed `Bytes` allocates; do it here.
    drop(frame.clone());
    frame
}

fn rss() -> f64 {
    crate::procfs::rss_bytes(std::process::id()).unwrap_or(0) as f64
}

/// Each size repeats the whole cycle (login, heartbeats, expiry) until it
/// has handled at least this many sessions, so small sizes time enough work.
const MIN_SESSIONS_TIMED: u64 = 1_000_000;

/// What one cycle over `n` sessions measured.
#[derive(Debug, Default)]
struct Cycle {
    login: Duration,
    /// The rounds in time order.
    heartbeat: Duration,
    /// The round in index order.
    heartbeat_seq: Duration,
    heartbeat_allocs: u64,
    expiry_allocs: u64,
    heartbeats: u64,
    expiry: Duration,
    expiries: u64,
    heap: f64,
    allocs: f64,
    rss: f64,
}

/// Simulates `n` sessions through login, three rounds of heartbeats and
/// expiry, repeated until at least a million sessions were
/// handled. `tick` gets `(done, total)` units of work now and then.
pub fn simulate(n: u64, mut tick: impl FnMut(u64, u64)) -> Result<SimPoint, String> {
    if n == 0 || u32::try_from(n).is_err() {
        return Err(format!("cannot simulate {n} sessions"));
    }
    let cycles = MIN_SESSIONS_TIMED.div_ceil(n).max(1);
    let total = cycles * 5 * n;
    let mut sum = Cycle::default();
    let mut first = None;
    for c in 0..cycles {
        let cycle = one_cycle(n, c, &mut |done| tick(c * 5 * n + done, total))?;
        sum.login += cycle.login;
        sum.heartbeat += cycle.heartbeat;
        sum.heartbeat_seq += cycle.heartbeat_seq;
        sum.heartbeat_allocs += cycle.heartbeat_allocs;
        sum.expiry_allocs += cycle.expiry_allocs;
        sum.heartbeats += cycle.heartbeats;
        sum.expiry += cycle.expiry;
        sum.expiries += cycle.expiries;
        first.get_or_insert(cycle);
    }
    // Memory is read on the first cycle, before any reuse of freed memory.
    let first = first.unwrap_or_default();
    let inline = size_of::<ServerSession>() as u64;
    let per = |d: Duration, count: u64| d.as_nanos() as f64 / count.max(1) as f64;
    Ok(SimPoint {
        sessions: n,
        inline_bytes: inline,
        heap_bytes: first.heap,
        bytes_per_session: inline as f64 + first.heap,
        rss_bytes_per_session: first.rss,
        allocs_per_login: first.allocs,
        login_ns: per(sum.login, cycles * n),
        heartbeat_ns: per(sum.heartbeat, sum.heartbeats / 3 * 2),
        heartbeat_seq_ns: per(sum.heartbeat_seq, sum.heartbeats / 3),
        allocs_per_heartbeat: sum.heartbeat_allocs as f64 / sum.heartbeats.max(1) as f64,
        expiry_ns: per(sum.expiry, sum.expiries),
        allocs_per_expiry: sum.expiry_allocs as f64 / sum.expiries.max(1) as f64,
        heartbeats: sum.heartbeats,
        expiries: sum.expiries,
    })
}

fn one_cycle(n: u64, seed: u64, tick: &mut dyn FnMut(u64)) -> Result<Cycle, String> {
    let n_usize = usize::try_from(n).map_err(|_| "too many sessions")?;
    let n32 = u32::try_from(n).map_err(|_| "too many sessions")?;
    let config = Arc::new(ServerConfig::default());
    let heartbeat = config.heartbeat;
    let timeout = config.session_timeout(heartbeat);
    let t0 = Instant::now();
    let mut rng = SplitMix64::new(n ^ (seed << 32));

    let login = client_frame(client_frame::Kind::Login(v1::Login {
        protocol_version: session_core::proto::PROTOCOL_VERSION,
        user_id: "load-000001".into(),
        credential: Bytes::from_static(b"load"),
        device: "sim".into(),
        ..Default::default()
    }));
    let ping = client_frame(client_frame::Kind::Heartbeat(v1::Heartbeat {
        ack_event_seq: 0,
        ack_request_id: 0,
    }));

    // Each session logs in at a random point of the first heartbeat
    // interval and heartbeats at the same point of the next two; `order`
    // lists sessions by that point. Logins run in index order (each
    // session's own clock still only moves forward), heartbeats in time
    // order, so they visit the table at random.
    let interval_ns = heartbeat.as_nanos() as u64;
    let phase: Vec<u64> = (0..n).map(|_| next_u64(&mut rng) % interval_ns).collect();
    let mut order: Vec<u32> = (0..n32).collect();
    order.sort_by_key(|&i| phase[i as usize]);
    let at = |i: u32, round: u32| t0 + Duration::from_nanos(phase[i as usize]) + heartbeat * round;

    let mut sessions: Vec<Option<ServerSession>> = Vec::with_capacity(n_usize);
    let mut wheel = Wheel::new(t0);
    let mut out = BytesMut::with_capacity(256);
    let step = (n / 50).max(1);

    // ---- login ----
    let rss_before = rss();
    let live_before = alloc::live_bytes();
    let allocs_before = alloc::allocations();
    alloc::set_counting(true);
    let started = Instant::now();
    for i in 0..n32 {
        let now = at(i, 0);
        let mut session = ServerSession::new(now, config.clone());
        session
            .handle_frame(now, login.clone())
            .map_err(|e| format!("login: {e}"))?;
        let Some(ServerEvent::LoginRequested(request)) = session.poll_event() else {
            return Err("no LoginRequested".into());
        };
        session
            .accept_login(now, request.requested_heartbeat_ms, &mut rng)
            .map_err(|e| format!("accept: {e}"))?;
        drop(request);
        out.clear();
        while session
            .poll_transmit(&mut out, Framing::Delimited)
            .is_some()
        {}
        while session.poll_event().is_some() {}
        if let Some(deadline) = session.poll_timeout() {
            wheel.insert(deadline, i);
        }
        sessions.push(Some(session));
        if u64::from(i + 1) % step == 0 {
            tick(u64::from(i + 1));
        }
    }
    let login_time = started.elapsed();
    alloc::set_counting(false);
    let heap = (alloc::live_bytes() - live_before) as f64 / n as f64;
    let allocs = (alloc::allocations() - allocs_before) as f64 / n as f64;
    let rss_growth = (rss() - rss_before) / n as f64;

    // ---- heartbeats: two rounds in time order (random over memory), then
    // one in index order (the same work without the cache misses). The
    // wheel is not touched: a heartbeat only moves the deadline inside the
    // session, and the entry filed at login is refiled when its slot comes
    // due, which the expiry phase below does (and pays for). ----
    let mut heartbeats = 0u64;
    let allocs_before = alloc::allocations();
    alloc::set_counting(true);
    let mut heartbeat_time = Duration::ZERO;
    let sequential: Vec<u32> = (0..n32).collect();
    let mut round_time = |round: u32, visit: &[u32]| -> Result<Duration, String> {
        let started = Instant::now();
        for &i in visit {
            let now = at(i, round);
            let Some(session) = sessions[i as usize].as_mut() else {
                continue;
            };
            session
                .handle_frame(now, ping.clone())
                .map_err(|e| format!("heartbeat: {e}"))?;
            out.clear();
            while session
                .poll_transmit(&mut out, Framing::Delimited)
                .is_some()
            {}
            while session.poll_event().is_some() {}
            heartbeats += 1;
            if heartbeats % step == 0 {
                tick(n + heartbeats);
            }
        }
        Ok(started.elapsed())
    };
    for round in 1..=2 {
        heartbeat_time += round_time(round, &order)?;
    }
    let heartbeat_seq_time = round_time(3, &sequential)?;
    alloc::set_counting(false);
    let heartbeat_allocs = alloc::allocations() - allocs_before;

    // ---- expiry: no more heartbeats; run the clock past every deadline ----
    let end = t0 + heartbeat * 4 + timeout + Duration::from_secs(2);
    let mut expiries = 0u64;
    let mut now = t0 + heartbeat * 3;
    let allocs_before = alloc::allocations();
    alloc::set_counting(true);
    let started = Instant::now();
    while now < end {
        now += Duration::from_millis(100);
        wheel.advance(now, |index| {
            let slot = sessions.get_mut(index as usize)?;
            let session = slot.as_mut()?;
            if session.poll_timeout().is_some_and(|d| d > now) {
                return session.poll_timeout();
            }
            session.handle_timeout(now);
            let mut closed = false;
            while let Some(event) = session.poll_event() {
                closed |= matches!(event, ServerEvent::Closed { .. });
            }
            out.clear();
            while let Some(transmit) = session.poll_transmit(&mut out, Framing::Delimited) {
                if transmit == Transmit::CloseConnection {
                    session.handle_disconnect(now);
                }
            }
            if closed && session.state() == ServerState::Closed {
                *slot = None;
                expiries += 1;
                if expiries % step == 0 {
                    tick(4 * n + expiries);
                }
                None
            } else {
                session.poll_timeout()
            }
        });
    }
    let expiry_time = started.elapsed();
    alloc::set_counting(false);
    let expiry_allocs = alloc::allocations() - allocs_before;
    if expiries != n {
        return Err(format!("{expiries} of {n} sessions expired"));
    }
    tick(5 * n);
    Ok(Cycle {
        login: login_time,
        heartbeat: heartbeat_time,
        heartbeat_seq: heartbeat_seq_time,
        heartbeat_allocs,
        expiry_allocs,
        heartbeats,
        expiry: expiry_time,
        expiries,
        heap,
        allocs,
        rss: rss_growth,
    })
}

fn next_u64(rng: &mut SplitMix64) -> u64 {
    let mut bytes = [0u8; 8];
    rng.fill_bytes(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_simulation_logs_in_heartbeats_and_expires_everyone() {
        let cycle = one_cycle(500, 0, &mut |_| {}).unwrap();
        assert_eq!(cycle.heartbeats, 1500);
        assert_eq!(cycle.expiries, 500);
    }

    #[test]
    fn the_wheel_refiles_entries_that_are_not_due() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        wheel.insert(t0 + Duration::from_millis(1500), 7);
        let mut seen = Vec::new();
        wheel.advance(t0 + Duration::from_secs(2), |i| {
            seen.push(i);
            Some(t0 + Duration::from_secs(5))
        });
        assert_eq!(seen, [7]);
        seen.clear();
        wheel.advance(t0 + Duration::from_secs(5), |i| {
            seen.push(i);
            None
        });
        assert!(seen.is_empty());
        wheel.advance(t0 + Duration::from_secs(6), |i| {
            seen.push(i);
            None
        });
        assert_eq!(seen, [7]);
    }
}
