//! `cargo xtask bench`: the core's hot paths timed in-process, their
//! allocations counted, and the memory of one idle open server session
//! (`bench [core] [--quick]`); and the load benchmarks against a real
//! `sessiond` (`bench load [...]`, driven by the `session-bench` binary),
//! and against mosquitto and nats-server beside it (`bench compare [...]`).
//!
//! No sockets: both sides are driven in memory, with a virtual `Instant` the
//! bench advances itself (the wall clock only times the rounds). Each path
//! runs one warm-up round, then [`ROUNDS`] rounds of `N` operations; the
//! report gives the median, min and max of the per-operation time across
//! rounds, and allocations per operation over all rounds. Results go to
//! stdout and to `target/bench/core.json`.
//!
//! `cargo xtask` builds in the dev profile, so a debug build re-runs itself
//! with `cargo run --release`: the figures are always for optimised code.
//! `bench load` builds `sessiond` and `session-bench` in release instead,
//! and runs `session-bench run` (see `docs/benchmarks.md`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::{Display, Write as _};
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use session_core::proto::v1::{self, client_frame, server_frame};
use session_core::{
    ClientConfig, ClientEvent, ClientSession, ClientState, Credentials, FrameDecoder, Framing,
    ServerConfig, ServerEvent, ServerSession, ServerState, SplitMix64, encode_frame,
};

use crate::root;

/// Operations per round (divided by [`QUICK_DIVISOR`] with `--quick`).
const OPS: usize = 200_000;
/// Idle sessions created to measure one session's memory.
const SESSIONS: usize = 100_000;
const QUICK_DIVISOR: usize = 20;
const ROUNDS: usize = 5;
/// How far the virtual clock moves per operation.
const STEP: Duration = Duration::from_millis(1);
const PAYLOAD_LEN: usize = 64;

// ---- allocation counting ----

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
/// Bytes currently allocated (requested sizes; the allocator's own overhead
/// is not seen).
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting every allocation (`realloc` included).
struct CountingAllocator;

// The bench runs on one thread and only needs totals: relaxed is enough.
fn count_alloc(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    ALLOC_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    LIVE_BYTES.fetch_add(size as u64, Ordering::Relaxed);
}

// Reason: a global allocator can only be written as an `unsafe impl` of
// `GlobalAlloc`. This one forwards every call unchanged to `System` and
// only counts. (xtask's Cargo.toml denies `unsafe_code` rather than
// forbidding it, for this impl alone.)
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this `layout` (every
        // allocation above is forwarded to it).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and the caller's contract for `realloc`
        // is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Allocation totals at one moment.
#[derive(Debug, Clone, Copy)]
struct AllocCount {
    allocs: u64,
    bytes: u64,
}

impl AllocCount {
    fn now() -> Self {
        Self {
            allocs: ALLOCS.load(Ordering::Relaxed),
            bytes: ALLOC_BYTES.load(Ordering::Relaxed),
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            allocs: self.allocs - earlier.allocs,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

fn live_bytes() -> u64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

// ---- the task ----

/// `bench [core] [--quick]`, `bench load [...]` or `bench sim [...]`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("load") => return load(&args[1..], "run"),
        Some("sim") => return load(&args[1..], "sim"),
        Some("compare") => return load(&args[1..], "compare"),
        Some("core") => {}
        Some("--quick") | None => {}
        Some(other) => {
            return Err(format!(
                "unknown bench {other:?} (usage: bench [core] [--quick] | bench load [--runs N] \
                 [--quick] [--scenario s1,s2,...] [--sessions N] | bench sim [--sizes N,...] \
                 | bench compare [--rounds N] [--mosquitto PATH] [--nats-server PATH] ...)"
            ));
        }
    }
    core(args)
}

/// The target directory cargo uses here: `$CARGO_TARGET_DIR` (relative to
/// the workspace root) or `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// Builds `sessiond` and `session-bench` in release and runs
/// `session-bench <command> ARGS` (the load scenarios, or the simulation).
fn load(args: &[String], command: &str) -> Result<(), String> {
    let build = [
        "build",
        "--release",
        "--package",
        "session-server",
        "--bin",
        "sessiond",
        "--package",
        "session-bench",
        "--bin",
        "session-bench",
    ];
    eprintln!("==> bench: cargo {}", build.join(" "));
    let status = Command::new(cargo())
        .args(build)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("release build failed ({status})"));
    }
    let release = target_dir().join("release");
    let mut bench = Command::new(release.join("session-bench"));
    bench.arg(command);
    let out_dir = match command {
        "run" => Some("target/bench"),
        "compare" => Some("target/bench/compare"),
        _ => None,
    };
    if let Some(out_dir) = out_dir {
        bench
            .arg("--sessiond")
            .arg(release.join("sessiond"))
            .arg("--out-dir")
            .arg(root().join(out_dir));
    }
    bench.args(args).current_dir(root());
    eprintln!("==> bench: {bench:?}");
    let status = bench
        .status()
        .map_err(|e| format!("cannot run session-bench: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("session-bench {command} failed ({status})"))
    }
}

/// The core benchmarks: runs them and writes the report.
fn core(args: &[String]) -> Result<(), String> {
    let mut quick = false;
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "core" => {}
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: bench [core] [--quick])"
                ));
            }
        }
    }
    if cfg!(debug_assertions) {
        return rerun_in_release(args);
    }
    let divisor = if quick { QUICK_DIVISOR } else { 1 };
    let (ops, sessions) = (OPS / divisor, SESSIONS / divisor);

    eprintln!("==> bench: {ROUNDS} rounds of {ops} operations per path");
    let paths = vec![
        heartbeat(ops)?,
        publish_and_ack(ops)?,
        client_receive(ops)?,
        decode(ops)?,
    ];
    eprintln!("==> bench: {sessions} idle open server sessions");
    let memory = idle_server_session(sessions)?;

    let report = Report {
        quick,
        ops,
        paths,
        memory,
    };
    print!("{}", report.table());
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let path = dir.join("core.json");
    std::fs::write(&path, report.json()).map_err(|e| format!("write {}: {e}", path.display()))?;
    eprintln!("==> bench: wrote {}", path.display());
    Ok(())
}

/// Debug code would measure nothing useful: run the release build instead.
fn rerun_in_release(args: &[String]) -> Result<(), String> {
    eprintln!(
        "==> bench: re-running with optimisations: cargo run --release --package xtask -- bench"
    );
    // The environment (CARGO_TARGET_DIR included) is inherited.
    let status = Command::new(cargo())
        .args(["run", "--release", "--package", "xtask", "--", "bench"])
        .args(args)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("release run failed ({status})"))
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

// ---- measurement ----

/// One timed round.
#[derive(Debug, Clone, Copy)]
struct Round {
    ns_per_op: f64,
    allocs: AllocCount,
}

/// Times `body`, which performs `ops` operations, and counts its allocations.
fn timed(ops: usize, body: impl FnOnce() -> Result<(), String>) -> Result<Round, String> {
    let before = AllocCount::now();
    let start = Instant::now();
    body()?;
    let elapsed = start.elapsed();
    let allocs = AllocCount::now().since(before);
    Ok(Round {
        ns_per_op: elapsed.as_nanos() as f64 / ops as f64,
        allocs,
    })
}

/// The figures for one path.
#[derive(Debug)]
struct PathResult {
    id: &'static str,
    name: &'static str,
    /// What one operation is ("heartbeat", "event", "frame").
    op: &'static str,
    rounds_ns: Vec<f64>,
    allocs_per_op: f64,
    alloc_bytes_per_op: f64,
}

impl PathResult {
    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.rounds_ns.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    fn median(&self) -> f64 {
        let sorted = self.sorted();
        let mid = sorted.len() / 2;
        if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        }
    }

    fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

/// Runs a warm-up round, then [`ROUNDS`] measured ones.
fn repeat(
    (id, name, op): (&'static str, &'static str, &'static str),
    ops: usize,
    mut round: impl FnMut(usize) -> Result<Round, String>,
) -> Result<PathResult, String> {
    eprintln!("    {name}");
    round(ops)?;
    let rounds = (0..ROUNDS)
        .map(|_| round(ops))
        .collect::<Result<Vec<_>, _>>()?;
    let total_ops = (ops * ROUNDS) as f64;
    Ok(PathResult {
        id,
        name,
        op,
        rounds_ns: rounds.iter().map(|r| r.ns_per_op).collect(),
        allocs_per_op: rounds.iter().map(|r| r.allocs.allocs).sum::<u64>() as f64 / total_ops,
        alloc_bytes_per_op: rounds.iter().map(|r| r.allocs.bytes).sum::<u64>() as f64 / total_ops,
    })
}

fn err<E: Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

// ---- fixtures ----

fn client_frame(kind: client_frame::Kind, framing: Framing, buf: &mut BytesMut) {
    encode_frame(&v1::ClientFrame { kind: Some(kind) }, framing, buf);
}

fn server_frame(kind: server_frame::Kind, framing: Framing, buf: &mut BytesMut) {
    encode_frame(&v1::ServerFrame { kind: Some(kind) }, framing, buf);
}

/// Splits delimited frames as a driver reading a socket would: every frame
/// is a slice of one shared buffer.
fn split_frames(mut wire: BytesMut, max_frame_len: usize) -> Result<Vec<Bytes>, String> {
    let mut decoder = FrameDecoder::new(max_frame_len);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut wire).map_err(err("split frames"))? {
        frames.push(frame);
    }
    Ok(frames)
}

/// A 64-byte event payload, shared (cloning it is a reference count), as when
/// one event fans out to many sessions.
fn payload() -> Bytes {
    let body = Bytes::from((0..PAYLOAD_LEN as u8).collect::<Vec<u8>>());
    // The first clone of a `Vec`-backed `Bytes` makes it shared (one
    // allocation): do it here, not in a timed loop.
    drop(body.clone());
    body
}

/// A client and a server session with the login done, both sides' output
/// drained: the server Open, the client Online.
/// A client and a server session, logged in. The client sends every
/// acknowledgement at once (`ack_delay` zero), so that the receive path
/// writes one per event, the most it can cost.
fn open_pair(now: Instant) -> Result<(ClientSession, ServerSession), String> {
    let mut rng = SplitMix64::new(1);
    let mut client = ClientSession::new(ClientConfig {
        ack_delay: Duration::ZERO,
        ..ClientConfig::default()
    });
    let mut server = ServerSession::new(now, Arc::new(ServerConfig::default()));
    client.handle_connected(now);
    let credentials = Credentials {
        user_id: "bench".into(),
        ..Default::default()
    };
    client.login(now, credentials).map_err(err("login"))?;
    let mut wire = BytesMut::new();
    while client.poll_transmit(&mut wire, Framing::Bare).is_some() {
        let frame = wire.split().freeze();
        server.handle_frame(now, frame).map_err(err("server"))?;
    }
    let Some(ServerEvent::LoginRequested(login)) = server.poll_event() else {
        return Err("the server did not ask to accept the login".into());
    };
    server
        .accept_login(now, login.requested_heartbeat_ms, &mut rng)
        .map_err(err("accept"))?;
    while server.poll_transmit(&mut wire, Framing::Bare).is_some() {
        let frame = wire.split().freeze();
        client.handle_frame(now, frame).map_err(err("client"))?;
    }
    while server.poll_event().is_some() {}
    while client.poll_event().is_some() {}
    if server.state() != ServerState::Open || client.state() != ClientState::Online {
        return Err(format!(
            "login left the server {:?} and the client {:?}",
            server.state(),
            client.state()
        ));
    }
    Ok((client, server))
}

// ---- the paths ----

/// Server: a heartbeat arrives, the heartbeat ack goes out.
fn heartbeat(ops: usize) -> Result<PathResult, String> {
    let mut now = Instant::now();
    let (_client, mut server) = open_pair(now)?;
    let mut wire = BytesMut::new();
    let heartbeat = v1::Heartbeat {
        ack_event_seq: 0,
        ack_request_id: 0,
    };
    client_frame(
        client_frame::Kind::Heartbeat(heartbeat),
        Framing::Bare,
        &mut wire,
    );
    let frame = wire.split().freeze();
    // Make it shared before the timed loop (see `payload`).
    drop(frame.clone());
    let mut out = BytesMut::with_capacity(256);
    let mut round = |ops: usize| {
        timed(ops, || {
            for _ in 0..ops {
                now += STEP;
                server
                    .handle_frame(now, frame.clone())
                    .map_err(err("heartbeat"))?;
                out.clear();
                while server.poll_transmit(&mut out, Framing::Delimited).is_some() {}
                black_box(&out);
                while let Some(event) = server.poll_event() {
                    black_box(event);
                }
            }
            Ok(())
        })
    };
    let result = repeat(
        ("heartbeat", "heartbeat handled", "heartbeat"),
        ops,
        &mut round,
    )?;
    if out.is_empty() || server.state() != ServerState::Open {
        return Err("heartbeat: no heartbeat ack, or the session closed".into());
    }
    Ok(result)
}

/// Server: an event is published, written, and acknowledged by the client.
fn publish_and_ack(ops: usize) -> Result<PathResult, String> {
    let mut now = Instant::now();
    let (_client, mut server) = open_pair(now)?;
    let body = payload();
    let max_frame_len = server.max_frame_len();
    let mut out = BytesMut::with_capacity(256);
    let mut acks = Vec::with_capacity(ops);
    let mut round = |ops: usize| {
        // The client's acks for this round's events, one frame per event.
        let first = server.last_event_seq() + 1;
        let mut wire = BytesMut::new();
        for seq in first..first + ops as u64 {
            let ack = v1::Ack {
                event_seq: seq,
                ack_request_id: 0,
            };
            client_frame(client_frame::Kind::Ack(ack), Framing::Delimited, &mut wire);
        }
        acks.extend(split_frames(wire, max_frame_len)?);
        let round = timed(ops, || {
            for ack in acks.drain(..) {
                now += STEP;
                let seq = server.publish(body.clone()).map_err(err("publish"))?;
                black_box(seq);
                out.clear();
                while server.poll_transmit(&mut out, Framing::Delimited).is_some() {}
                black_box(&out);
                server.handle_frame(now, ack).map_err(err("ack"))?;
                while let Some(event) = server.poll_event() {
                    black_box(event);
                }
            }
            Ok(())
        })?;
        if server.last_event_seq() != first + ops as u64 - 1 || server.unacked_events() != 0 {
            return Err(format!(
                "publish: {} events published, {} unacknowledged",
                server.last_event_seq(),
                server.unacked_events()
            ));
        }
        Ok(round)
    };
    repeat(
        ("publish_ack", "event published and acknowledged", "event"),
        ops,
        &mut round,
    )
}

/// Client: an event arrives, is delivered, acknowledged, and the ack goes out.
fn client_receive(ops: usize) -> Result<PathResult, String> {
    let mut now = Instant::now();
    let (mut client, _server) = open_pair(now)?;
    let body = payload();
    let max_frame_len = client.max_frame_len();
    let mut out = BytesMut::with_capacity(256);
    let mut events = Vec::with_capacity(ops);
    let mut round = |ops: usize| {
        let first = client.last_event_seq() + 1;
        let mut wire = BytesMut::new();
        for seq in first..first + ops as u64 {
            let event = v1::Event {
                seq,
                body: body.clone(),
            };
            server_frame(
                server_frame::Kind::Event(event),
                Framing::Delimited,
                &mut wire,
            );
        }
        events.extend(split_frames(wire, max_frame_len)?);
        let round = timed(ops, || {
            for frame in events.drain(..) {
                now += STEP;
                client.handle_frame(now, frame).map_err(err("event"))?;
                while let Some(event) = client.poll_event() {
                    if let ClientEvent::Message { seq, body } = event {
                        black_box(body);
                        client.ack(seq).map_err(err("ack"))?;
                    }
                }
                out.clear();
                while client.poll_transmit(&mut out, Framing::Delimited).is_some() {}
                black_box(&out);
            }
            Ok(())
        })?;
        if client.last_event_seq() != first + ops as u64 - 1 || out.is_empty() {
            return Err(format!(
                "client: {} events delivered, last ack frame {} bytes",
                client.last_event_seq(),
                out.len()
            ));
        }
        Ok(round)
    };
    repeat(
        ("client_receive", "client receives event", "event"),
        ops,
        &mut round,
    )
}

/// `FrameDecoder::decode` over a buffer of many delimited event frames.
fn decode(ops: usize) -> Result<PathResult, String> {
    let body = payload();
    let mut template = BytesMut::new();
    for seq in 1..=ops as u64 {
        let event = v1::Event {
            seq,
            body: body.clone(),
        };
        server_frame(
            server_frame::Kind::Event(event),
            Framing::Delimited,
            &mut template,
        );
    }
    let mut decoder = FrameDecoder::new(session_core::DEFAULT_MAX_FRAME_LEN);
    let mut round = |ops: usize| {
        let mut wire = BytesMut::from(&template[..]);
        let mut frames = 0;
        let round = timed(ops, || {
            while let Some(frame) = decoder.decode(&mut wire).map_err(err("decode"))? {
                frames += 1;
                black_box(frame);
            }
            Ok(())
        })?;
        if frames != ops || !wire.is_empty() {
            return Err(format!("decode: {frames} frames of {ops}"));
        }
        Ok(round)
    };
    repeat(("decode", "decode of a frame", "frame"), ops, &mut round)
}

/// What one idle open server session costs.
#[derive(Debug)]
struct MemoryResult {
    sessions: usize,
    inline_bytes: usize,
    heap_bytes: f64,
    allocs_per_login: f64,
}

/// Opens `sessions` server sessions (login accepted, `LoginOk` written,
/// events drained) and measures the heap they keep.
fn idle_server_session(sessions: usize) -> Result<MemoryResult, String> {
    let now = Instant::now();
    let config = Arc::new(ServerConfig::default());
    let mut rng = SplitMix64::new(7);
    let mut wire = BytesMut::new();
    let login = v1::Login {
        protocol_version: session_core::proto::PROTOCOL_VERSION,
        user_id: "user-000001".into(),
        credential: Bytes::from_static(b"bench-credential"),
        device: "bench".into(),
        ..Default::default()
    };
    client_frame(client_frame::Kind::Login(login), Framing::Bare, &mut wire);
    let login = wire.split().freeze();
    drop(login.clone());
    let mut out = BytesMut::with_capacity(256);
    let mut open = Vec::with_capacity(sessions);

    let live_before = live_bytes();
    let allocs_before = AllocCount::now();
    for _ in 0..sessions {
        let mut session = ServerSession::new(now, Arc::clone(&config));
        session
            .handle_frame(now, login.clone())
            .map_err(err("login"))?;
        let Some(ServerEvent::LoginRequested(request)) = session.poll_event() else {
            return Err("the server did not ask to accept the login".into());
        };
        session
            .accept_login(now, request.requested_heartbeat_ms, &mut rng)
            .map_err(err("accept"))?;
        drop(request);
        out.clear();
        while session
            .poll_transmit(&mut out, Framing::Delimited)
            .is_some()
        {}
        while session.poll_event().is_some() {}
        open.push(session);
    }
    let allocs = AllocCount::now().since(allocs_before);
    let heap = live_bytes().saturating_sub(live_before);
    if open.iter().any(|s| s.state() != ServerState::Open) {
        return Err("a session is not open".into());
    }
    black_box(&open);
    Ok(MemoryResult {
        sessions,
        inline_bytes: size_of::<ServerSession>(),
        heap_bytes: heap as f64 / sessions as f64,
        allocs_per_login: allocs.allocs as f64 / sessions as f64,
    })
}

// ---- the report ----

#[derive(Debug)]
struct Report {
    quick: bool,
    ops: usize,
    paths: Vec<PathResult>,
    memory: MemoryResult,
}

impl Report {
    fn table(&self) -> String {
        let mut s = String::new();
        let mode = if self.quick { ", --quick" } else { "" };
        let _ = writeln!(
            s,
            "\nsession-core hot paths (release{mode}; {ROUNDS} rounds x {} ops, virtual clock)\n",
            self.ops
        );
        let _ = writeln!(
            s,
            "{:<46} {:>10} {:>8} {:>8} {:>10} {:>10}",
            "path", "median ns", "min", "max", "allocs/op", "bytes/op"
        );
        for p in &self.paths {
            let _ = writeln!(
                s,
                "{:<46} {:>10.1} {:>8.1} {:>8.1} {:>10.3} {:>10.1}",
                format!("{} (per {})", p.name, p.op),
                p.median(),
                p.min(),
                p.max(),
                p.allocs_per_op,
                p.alloc_bytes_per_op
            );
        }
        let m = &self.memory;
        let _ = writeln!(
            s,
            "\nidle open server session ({} sessions): {} B inline + {:.1} B heap = {:.1} B \
             ({:.1} allocations per login)",
            m.sessions,
            m.inline_bytes,
            m.heap_bytes,
            m.inline_bytes as f64 + m.heap_bytes,
            m.allocs_per_login
        );
        let _ = writeln!(
            s,
            "(heap = bytes requested from the allocator and still held; allocator overhead not included)"
        );
        s
    }

    fn json(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{{");
        let _ = writeln!(s, "  \"profile\": \"release\",");
        let _ = writeln!(s, "  \"quick\": {},", self.quick);
        let _ = writeln!(s, "  \"rounds\": {ROUNDS},");
        let _ = writeln!(s, "  \"ops_per_round\": {},", self.ops);
        let _ = writeln!(s, "  \"payload_bytes\": {PAYLOAD_LEN},");
        let _ = writeln!(s, "  \"paths\": [");
        for (i, p) in self.paths.iter().enumerate() {
            let rounds: Vec<String> = p.rounds_ns.iter().map(|ns| format!("{ns:.2}")).collect();
            let comma = if i + 1 < self.paths.len() { "," } else { "" };
            let _ = writeln!(
                s,
                "    {{\"id\": \"{}\", \"name\": \"{}\", \"per\": \"{}\", \
                 \"median_ns\": {:.2}, \"min_ns\": {:.2}, \"max_ns\": {:.2}, \
                 \"rounds_ns\": [{}], \"allocs_per_op\": {:.6}, \"alloc_bytes_per_op\": {:.3}}}{comma}",
                p.id,
                p.name,
                p.op,
                p.median(),
                p.min(),
                p.max(),
                rounds.join(", "),
                p.allocs_per_op,
                p.alloc_bytes_per_op
            );
        }
        let _ = writeln!(s, "  ],");
        let m = &self.memory;
        let _ = writeln!(
            s,
            "  \"idle_server_session\": {{\"sessions\": {}, \"inline_bytes\": {}, \
             \"heap_bytes\": {:.1}, \"total_bytes\": {:.1}, \"allocs_per_login\": {:.2}}}",
            m.sessions,
            m.inline_bytes,
            m.heap_bytes,
            m.inline_bytes as f64 + m.heap_bytes,
            m.allocs_per_login
        );
        let _ = writeln!(s, "}}");
        s
    }
}
