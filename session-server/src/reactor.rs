//! Reactors: the attached phase of TCP and WebSocket sessions without a
//! task per session.
//!
//! A reactor is one thread with a `mio::Poll` and a slab of connections. A
//! connection's entry holds its socket, its cell, the bytes of a partial
//! frame (only while one is arriving) and unwritten output (only while the
//! socket is full): an idle session costs its entry and its cell, no task,
//! no future, no buffer and no tokio registration.
//!
//! - **Reading:** a readable socket is read into the reactor's scratch
//!   buffer; each read's bytes are copied into one allocation of exactly
//!   their size, the frames are sliced out of it and handed to the session
//!   under one lock, and only a trailing partial frame stays with the
//!   connection.
//! - **Framing:** varint-delimited for TCP; for WebSocket (after the
//!   upgrade, done by tungstenite on the login task), the frames of
//!   `session_transport::ws_frames`, with pings answered and a close frame
//!   after the session's last frame.
//! - **Writing:** the session's pending frames are encoded straight into the
//!   reactor's scratch buffer and written with one
//!   `write` per batch; only what the socket did not take is copied into
//!   the connection's own buffer, and the session is not drained again
//!   until that is gone, so a slow reader's backlog stays in the core,
//!   which bounds it.
//! - **Waking:** anything that changes a session (a publish, a kick, a
//!   response) goes through `Shared::with_session`, which sends the
//!   session's slot to its reactor's inbox once until the reactor looks
//!   (the driver's `woken` flag) and signals the reactor's `mio::Waker` only
//!   if the reactor may be asleep.
//! - **Timers:** one deadline per connection (the core's `poll_timeout`,
//!   the write deadline, the close linger) in a binary heap, re-armed
//!   lazily: a deadline that moved later (every heartbeat moves it) is not
//!   pushed again; the earlier entry fires, finds nothing due and re-arms.
//! - **Events and requests:** the core's events go to the dispatchers'
//!   queues, whose wake-ups wait for the end of the reactor's turn. A
//!   request whose dispatcher has nothing in hand is answered here
//!   instead, right after the session's lock is released
//!   (`dispatch::Shard::push`); the reactor's thread enters the tokio
//!   runtime for the handlers.
//!
//! Everything else (TLS and WSS, the login phase, detached sessions)
//! stays on tokio tasks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use session_core::{FrameDecoder, Framing, ServerEvent, Transmit};
use session_transport::ws_frames::{self, WsIncoming};
use tracing::{debug, warn};

use crate::connection::{LINGER, detach, watch_detached};
use crate::dispatch::{self, Answer};
use crate::limits::Admitted;
use crate::registry::{Dispatch, Driver, SessionCell, Shared, lock};

/// The token of the reactor's waker.
const WAKER: Token = Token(usize::MAX);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// Reads per readiness event before other connections get a turn.
const READS_PER_TURN: usize = 8;
/// Output encoded per `write` call.
const WRITE_BATCH: usize = 64 * 1024;

/// A connection handed to a reactor after its login.
#[derive(Debug)]
pub(crate) struct Adopt {
    pub(crate) stream: TcpStream,
    /// Bytes read during the login phase but not yet taken as frames.
    pub(crate) buffered: BytesMut,
    pub(crate) cell: Arc<SessionCell>,
    pub(crate) attachment: u64,
    pub(crate) slot: Admitted,
    /// WebSocket framing (the upgrade done) instead of varint-delimited.
    pub(crate) ws: bool,
}

/// What other threads hold of a reactor: its inbox and its waker.
#[derive(Debug)]
pub(crate) struct ReactorHandle {
    waker: Waker,
    inbox: Mutex<Inbox>,
}

#[derive(Debug, Default)]
struct Inbox {
    adopt: Vec<Adopt>,
    wake: Vec<u32>,
    stop: bool,
    /// The reactor is awake (or a wake-up is on its way) and looks at the
    /// inbox before it sleeps: no need to signal the waker.
    awake: bool,
}

impl ReactorHandle {
    /// Makes a reactor's poll and handle; the poll goes to [`spawn`].
    pub(crate) fn new() -> io::Result<(Self, Poll)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok((
            Self {
                waker,
                inbox: Mutex::new(Inbox::default()),
            },
            poll,
        ))
    }

    fn send(&self, change: impl FnOnce(&mut Inbox)) {
        let signal = {
            let mut inbox = lock(&self.inbox);
            change(&mut inbox);
            !std::mem::replace(&mut inbox.awake, true)
        };
        if signal {
            // Fails only if the eventfd is gone, that is the reactor too.
            let _ = self.waker.wake();
        }
    }

    /// Asks the reactor to look at the session in `slot`.
    pub(crate) fn wake(&self, slot: u32) {
        self.send(|inbox| inbox.wake.push(slot));
    }

    /// Hands a logged-in connection to the reactor.
    pub(crate) fn adopt(&self, adopt: Adopt) {
        self.send(|inbox| inbox.adopt.push(adopt));
    }

    /// Stops the reactor; it drops (and so closes) every connection left.
    pub(crate) fn stop(&self) {
        self.send(|inbox| inbox.stop = true);
    }
}

/// Stops every reactor of a server when dropped: held by a task that never
/// ends, so that the reactors stop with the runtime.
#[derive(Debug)]
pub(crate) struct StopOnDrop(pub(crate) Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for reactor in &self.0.reactors {
            reactor.stop();
        }
    }
}

/// Starts reactor number `index` of `shared` on a thread of its own.
pub(crate) fn spawn(index: u16, poll: Poll, shared: Arc<Shared>, answer: Answer) -> io::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(format!("session-reactor-{index}"))
        .spawn(move || {
            let mut reactor = Reactor {
                index,
                poll,
                shared,
                answer,
                runtime,
                conns: Vec::new(),
                free: Vec::new(),
                epoch: Instant::now(),
                timers: BinaryHeap::new(),
                scratch: vec![0; READ_CHUNK],
                out: BytesMut::new(),
                frame: BytesMut::new(),
                decoder: FrameDecoder::new(0),
                again: Vec::new(),
                detached: Vec::new(),
            };
            reactor.decoder = FrameDecoder::new(reactor.shared.core.max_frame_len);
            dispatch::defer_wakeups();
            // Request handlers run here too, and may use tokio's timers or
            // spawn.
            let runtime = reactor.runtime.clone();
            let _runtime = runtime.enter();
            reactor.run();
        })
        .map(drop)
}

/// One connection in a reactor's slab: 56 bytes, idle or not.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// Where the connection comes from, for the connection limits.
    ip: IpAddr,
    /// Input is no longer read into the session (after a framing error).
    read_closed: bool,
    /// WRITABLE interest is registered.
    want_write: bool,
    /// WebSocket framing instead of varint-delimited.
    ws: bool,
    cell: Arc<SessionCell>,
    attachment: u64,
    /// The earliest deadline this connection has in the timer heap, in
    /// ticks, whole milliseconds since the reactor's epoch (see
    /// [`tick_at_or_after`]; [`NOT_ARMED`]: none).
    armed: u64,
    /// What only a busy connection has (none while idle).
    busy: Option<Box<Busy>>,
}

/// The state of a connection between frames, blocked on the socket, or
/// closing.
#[derive(Debug, Default)]
struct Busy {
    /// A partial incoming frame.
    read: BytesMut,
    /// The fragments of a WebSocket message in progress.
    ws_message: Option<BytesMut>,
    /// Output the socket has not taken yet.
    write: BytesMut,
    /// The pong owed to the peer's latest ping, held while `write` is not
    /// out yet: however many pings arrive meanwhile, one pong waits
    /// (RFC 6455, 5.5.3, lets a pong answer only the most recent ping).
    pong: Option<BytesMut>,
    /// The session wants the connection closed once `write` is out.
    closing: bool,
    /// When `write` became non-empty: the write deadline counts from here.
    write_since: Option<Instant>,
    /// Set once the session's last frame is out: the write side is shut
    /// and input discarded until the peer closes or this passes.
    linger_until: Option<Instant>,
}

impl Conn {
    fn busy(&mut self) -> &mut Busy {
        self.busy.get_or_insert_with(Box::default)
    }

    /// Frees the busy state once there is nothing in it.
    fn tidy(&mut self) {
        if self.busy.as_ref().is_some_and(|busy| {
            busy.read.is_empty()
                && busy.ws_message.is_none()
                && busy.write.is_empty()
                && busy.pong.is_none()
                && !busy.closing
                && busy.write_since.is_none()
                && busy.linger_until.is_none()
        }) {
            self.busy = None;
        }
    }

    fn linger_until(&self) -> Option<Instant> {
        self.busy.as_ref().and_then(|busy| busy.linger_until)
    }

    fn write_since(&self) -> Option<Instant> {
        self.busy.as_ref().and_then(|busy| busy.write_since)
    }

    fn has_output(&self) -> bool {
        self.busy
            .as_ref()
            .is_some_and(|busy| !busy.write.is_empty())
    }

    fn take_read(&mut self) -> BytesMut {
        self.busy
            .as_mut()
            .map(|busy| std::mem::take(&mut busy.read))
            .unwrap_or_default()
    }
}

/// How a connection's turn ended.
enum Outcome {
    /// Keep it.
    Keep,
    /// Drop it: closed, lost or replaced (the session is already told).
    Drop,
}

struct Reactor {
    index: u16,
    poll: Poll,
    shared: Arc<Shared>,
    /// Answers the requests this reactor reads, when their dispatcher has
    /// nothing in hand (see `dispatch::Shard::push`).
    answer: Answer,
    runtime: tokio::runtime::Handle,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    /// `(deadline, slot)`, earliest first, the deadline in ticks; stale
    /// entries (the slot's connection has another deadline now) are skipped
    /// when they come up.
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    /// Where deadlines in the timer heap count from.
    epoch: Instant,
    /// Where reads land.
    scratch: Vec<u8>,
    /// Where output is encoded.
    out: BytesMut,
    /// Where one WebSocket frame's payload is encoded.
    frame: BytesMut,
    decoder: FrameDecoder,
    /// Connections that had more to read when their turn ended.
    again: Vec<u32>,
    /// Sessions that lost their connection this round and need a watchdog.
    detached: Vec<Arc<SessionCell>>,
}

impl Reactor {
    /// The instant of timer tick `tick`.
    fn instant(&self, tick: u64) -> Instant {
        self.epoch + Duration::from_millis(tick)
    }

    fn handle(&self) -> &ReactorHandle {
        &self.shared.reactors[self.index as usize]
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut wake = Vec::new();
        let mut adopt = Vec::new();
        loop {
            let stop = {
                let mut inbox = lock(&self.handle().inbox);
                std::mem::swap(&mut wake, &mut inbox.wake);
                std::mem::swap(&mut adopt, &mut inbox.adopt);
                inbox.stop
            };
            if stop {
                // The last round's events must still reach the backend.
                dispatch::flush_wakeups(&self.shared.dispatch);
                return;
            }
            let now = Instant::now();
            for new in adopt.drain(..) {
                self.adopt(new, now);
            }
            for slot in wake.drain(..) {
                self.turn(slot, now, |reactor, slot, now| reactor.drive(slot, now));
            }
            for slot in std::mem::take(&mut self.again) {
                self.turn(slot, now, |reactor, slot, now| {
                    reactor.readable(slot, now, false)
                });
            }
            self.expire(now);
            self.spawn_watchdogs();

            // Events this round queued for the dispatchers go out now.
            dispatch::flush_wakeups(&self.shared.dispatch);
            let timeout = if self.may_sleep() {
                self.timers.peek().map(|&Reverse((at, _))| {
                    self.instant(at).saturating_duration_since(Instant::now())
                })
            } else {
                Some(Duration::ZERO)
            };
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    warn!(%error, reactor = self.index, "poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let now = Instant::now();
            for event in &events {
                if event.token() == WAKER {
                    continue;
                }
                let slot = event.token().0 as u32;
                if event.is_writable() {
                    self.turn(slot, now, |reactor, slot, now| reactor.writable(slot, now));
                }
                let closed = event.is_read_closed() || event.is_error();
                if event.is_readable() || closed {
                    // With the peer's close or an error pending, read on
                    // until the read says so: it will not be signalled again.
                    let short_read_drains = !closed;
                    self.turn(slot, now, |reactor, slot, now| {
                        reactor.readable(slot, now, short_read_drains)
                    });
                }
            }
        }
    }

    /// Whether the reactor may block in `poll`: nothing waits in the inbox
    /// or for another read. If so, producers signal the waker from now on.
    fn may_sleep(&self) -> bool {
        let mut inbox = lock(&self.handle().inbox);
        let idle =
            inbox.wake.is_empty() && inbox.adopt.is_empty() && !inbox.stop && self.again.is_empty();
        inbox.awake = !idle;
        idle
    }

    /// Runs `step` on the connection in `slot` (if any), drops it if asked,
    /// and re-arms its timer otherwise.
    fn turn(
        &mut self,
        slot: u32,
        now: Instant,
        step: impl FnOnce(&mut Self, u32, Instant) -> Outcome,
    ) {
        if self.conns.get(slot as usize).is_none_or(Option::is_none) {
            return;
        }
        match step(self, slot, now) {
            Outcome::Keep => self.arm(slot),
            Outcome::Drop => self.remove(slot),
        }
    }

    fn conn(&mut self, slot: u32) -> &mut Conn {
        self.conns[slot as usize]
            .as_mut()
            .expect("a turn only runs on an occupied slot")
    }

    fn remove(&mut self, slot: u32) {
        // Closing the socket (dropping it) also takes it out of the poll.
        if let Some(conn) = self.conns[slot as usize].take() {
            self.shared.limiter.release(conn.ip);
            self.free.push(slot);
        }
    }

    fn adopt(&mut self, new: Adopt, now: Instant) {
        let Adopt {
            stream,
            buffered,
            cell,
            attachment,
            slot: admitted,
            ws,
        } = new;
        let ip = admitted.into_ip();
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                (self.conns.len() - 1) as u32
            }
        };
        // The slab keeps the std stream (4 bytes; mio's adds a selector id
        // in debug builds) and registers it by its descriptor. Closing it
        // takes it out of the poll.
        let fd = stream.as_raw_fd();
        if let Err(error) = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(slot as usize),
            Interest::READABLE,
        ) {
            warn!(%error, session = %cell.info.id, "cannot register a connection");
            self.free.push(slot);
            self.shared.limiter.release(ip);
            self.detach(cell, attachment);
            return;
        }
        {
            // From now on, changes to the session wake this slot.
            let mut state = cell.lock();
            if state.attachment == attachment {
                state.driver = Some(Driver {
                    reactor: self.index,
                    woken: false,
                    slot,
                });
            }
        }
        self.conns[slot as usize] = Some(Conn {
            stream,
            ip,
            read_closed: false,
            want_write: false,
            ws,
            cell,
            attachment,
            armed: NOT_ARMED,
            busy: None,
        });
        self.turn(slot, now, |reactor, slot, now| {
            // Frames that came with the login go first, then any output.
            if !buffered.is_empty() {
                reactor.conn(slot).busy().read = buffered;
                if let Outcome::Drop = reactor.take_frames(slot, BytesMut::new(), now) {
                    return Outcome::Drop;
                }
            }
            reactor.drive(slot, now)
        });
    }

    // ---- reading ----

    /// Reads what the socket has, a turn's worth at most.
    ///
    /// `short_read_drains`: a read that returns less than it asked for
    /// emptied the socket, so the turn ends there without another read to
    /// see `WouldBlock` (epoll(7): under edge-triggered readiness, a short
    /// read of a stream socket means its input is exhausted, and new input
    /// raises a new event). Not when the event also reported the peer's
    /// close or an error, which no later event would repeat.
    fn readable(&mut self, slot: u32, now: Instant, short_read_drains: bool) -> Outcome {
        for _ in 0..READS_PER_TURN {
            let conn = self.conns[slot as usize]
                .as_mut()
                .expect("a turn only runs on an occupied slot");
            let n = match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    return if conn.linger_until().is_some() {
                        Outcome::Drop
                    } else {
                        debug!(session = %conn.cell.info.id, "peer closed");
                        self.lost(slot)
                    };
                }
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    debug!(session = %conn.cell.info.id, %error, "read failed");
                    return if conn.linger_until().is_some() {
                        Outcome::Drop
                    } else {
                        self.lost(slot)
                    };
                }
            };
            if conn.read_closed || conn.linger_until().is_some() {
                continue; // discarded
            }
            let fresh = BytesMut::from(&self.scratch[..n]);
            if let Outcome::Drop = self.take_frames(slot, fresh, now) {
                return Outcome::Drop;
            }
            if short_read_drains && n < self.scratch.len() {
                return Outcome::Keep;
            }
        }
        // More may be waiting: come back after the others had a turn.
        self.again.push(slot);
        Outcome::Keep
    }

    /// Decodes the frames in the connection's partial frame plus `fresh`
    /// and hands them to the session under one lock, then drives it.
    fn take_frames(&mut self, slot: u32, fresh: BytesMut, now: Instant) -> Outcome {
        let mut decoder = self.decoder;
        let conn = self.conn(slot);
        let mut data = conn.take_read();
        if data.is_empty() {
            data = fresh;
        } else {
            data.extend_from_slice(&fresh);
        }
        let attachment = conn.attachment;
        let cell = conn.cell.clone();
        let mut failed = None;
        let mut frames = Vec::new();
        // WebSocket control traffic: pongs owed, and whether the peer
        // started the closing handshake.
        let mut control = BytesMut::new();
        let mut peer_closed = false;
        if conn.ws {
            let max = decoder.max_frame_len();
            let mut partial = conn.busy.as_mut().and_then(|busy| busy.ws_message.take());
            loop {
                match ws_frames::decode_client_frame(&mut data, &mut partial, max) {
                    Ok(Some(WsIncoming::Message(frame))) => frames.push(frame),
                    Ok(Some(WsIncoming::Ping(payload))) => {
                        // Only the latest ping is answered.
                        control.clear();
                        ws_frames::encode_pong(&payload, &mut control);
                    }
                    Ok(Some(WsIncoming::Pong)) => {}
                    Ok(Some(WsIncoming::Close)) => {
                        ws_frames::encode_close(&mut control);
                        peer_closed = true;
                        data.clear();
                        break;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        failed = Some(error);
                        data.clear();
                        break;
                    }
                }
            }
            if partial.is_some() {
                conn.busy().ws_message = partial;
            }
        } else {
            loop {
                match decoder.decode(&mut data) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(error) => {
                        failed = Some(error);
                        data.clear();
                        break;
                    }
                }
            }
        }
        // Whatever is left is part of one frame: keep exactly that (a
        // slice of a read shared with frames the session may still hold
        // is copied into its own allocation).
        if data.is_empty() {
            conn.tidy();
        } else {
            conn.busy().read = BytesMut::from(&data[..]);
        }
        conn.read_closed |= failed.is_some() || peer_closed;
        let attached = self.shared.with_session(&cell, |state| {
            if state.attachment != attachment {
                return false;
            }
            // This reactor drives the session right after: no wake-up.
            state.set_woken(true);
            for frame in frames {
                if let Err(error) = state.session.handle_frame(now, frame) {
                    warn!(remote = %cell.info.remote_addr, session = %cell.info.id, %error, "protocol error");
                    break;
                }
            }
            if let Some(error) = failed {
                warn!(remote = %cell.info.remote_addr, session = %cell.info.id, %error, "bad input");
                state.session.handle_protocol_error(now, error);
            }
            true
        });
        // Requests answered here rather than by the dispatcher: one
        // hand-off between threads less for each.
        for Dispatch { cell, event } in dispatch::take_inline() {
            if let ServerEvent::Request { id, body } = event {
                if let Some(waiting) = (self.answer)(cell, id, body) {
                    self.runtime.spawn(waiting);
                }
            }
        }
        if !attached {
            return Outcome::Drop;
        }
        if peer_closed {
            // Answer the closing handshake (best effort), then the
            // connection is gone, as when the stream ends.
            let conn = self.conn(slot);
            if !conn.has_output() {
                let _ = conn.stream.write(&control);
            }
            return self.lost(slot);
        }
        if !control.is_empty() {
            // The pong goes out ahead of the session's next frames.
            let conn = self.conn(slot);
            if conn.has_output() {
                conn.busy().pong = Some(control);
            } else {
                let busy = conn.busy();
                busy.write = control;
                busy.write_since = Some(now);
                return self.writable(slot, now);
            }
        }
        self.drive(slot, now)
    }

    // ---- writing ----

    /// Moves the session's output to the socket, as far as it takes it.
    fn drive(&mut self, slot: u32, now: Instant) -> Outcome {
        loop {
            let conn = self.conns[slot as usize]
                .as_mut()
                .expect("a turn only runs on an occupied slot");
            if conn.has_output() || conn.linger_until().is_some() {
                // Waiting for the socket, or for the peer to close.
                return Outcome::Keep;
            }
            if conn.busy.as_ref().is_some_and(|busy| busy.closing) {
                return self.start_linger(slot, now);
            }
            let out = &mut self.out;
            out.clear();
            let drained = {
                let mut state = conn.cell.lock();
                if state.attachment != conn.attachment {
                    return Outcome::Drop; // resumed elsewhere
                }
                state.set_woken(false);
                loop {
                    if out.len() >= WRITE_BATCH {
                        break Drained::More;
                    }
                    let transmit = if conn.ws {
                        let frame = &mut self.frame;
                        frame.clear();
                        let transmit = state.session.poll_transmit(frame, Framing::Bare);
                        match transmit {
                            Some(Transmit::Frame) => ws_frames::encode_binary(frame, out),
                            Some(Transmit::CloseConnection) => ws_frames::encode_close(out),
                            None => {}
                        }
                        transmit
                    } else {
                        state.session.poll_transmit(out, Framing::Delimited)
                    };
                    match transmit {
                        Some(Transmit::Frame) => {}
                        Some(Transmit::CloseConnection) => break Drained::Close,
                        None => break Drained::All,
                    }
                }
            };
            if !out.is_empty() {
                match conn.stream.write(out) {
                    Ok(n) => out.advance(n),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        debug!(session = %conn.cell.info.id, %error, "write failed");
                        return self.lost(slot);
                    }
                }
            }
            if !out.is_empty() {
                let busy = conn.busy();
                busy.write = BytesMut::from(&out[..]);
                busy.write_since = Some(now);
                busy.closing = matches!(drained, Drained::Close);
                return self.want_write(slot, true);
            }
            match drained {
                Drained::All => return Outcome::Keep,
                Drained::More => {}
                Drained::Close => return self.start_linger(slot, now),
            }
        }
    }

    fn writable(&mut self, slot: u32, now: Instant) -> Outcome {
        let conn = self.conn(slot);
        let Some(busy) = conn.busy.as_mut() else {
            return Outcome::Keep;
        };
        loop {
            while !busy.write.is_empty() {
                match conn.stream.write(&busy.write) {
                    Ok(0) => return self.lost(slot),
                    Ok(n) => busy.write.advance(n),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        return self.want_write(slot, true);
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        debug!(session = %conn.cell.info.id, %error, "write failed");
                        return self.lost(slot);
                    }
                }
            }
            // A pong owed while the output waited goes out next, unless
            // that output ended with the close frame: nothing may follow it
            // (RFC 6455, 5.5.1).
            match busy.pong.take() {
                Some(pong) if !busy.closing => busy.write = pong,
                _ => break,
            }
        }
        busy.write = BytesMut::new();
        busy.write_since = None;
        conn.tidy();
        if let Outcome::Drop = self.want_write(slot, false) {
            return Outcome::Drop;
        }
        self.drive(slot, now)
    }

    /// Registers or drops WRITABLE interest.
    fn want_write(&mut self, slot: u32, want: bool) -> Outcome {
        let registry = self.poll.registry();
        let conn = self.conns[slot as usize]
            .as_mut()
            .expect("a turn only runs on an occupied slot");
        if conn.want_write == want {
            return Outcome::Keep;
        }
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let fd = conn.stream.as_raw_fd();
        match registry.reregister(&mut SourceFd(&fd), Token(slot as usize), interest) {
            Ok(()) => {
                conn.want_write = want;
                Outcome::Keep
            }
            Err(error) => {
                debug!(session = %conn.cell.info.id, %error, "reregister failed");
                self.lost(slot)
            }
        }
    }

    // ---- ending ----

    /// The session's last frame is out: record that no connection is
    /// attached, shut the write side, and wait for the peer to close.
    fn start_linger(&mut self, slot: u32, now: Instant) -> Outcome {
        let conn = self.conn(slot);
        let (cell, attachment) = (conn.cell.clone(), conn.attachment);
        let busy = conn.busy();
        busy.closing = false;
        busy.linger_until = Some(now + LINGER);
        let _ = conn.stream.shutdown(Shutdown::Write);
        self.shared.with_session(&cell, |state| {
            if state.attachment == attachment {
                state.attachment = 0;
                state.driver = None;
            }
        });
        Outcome::Keep
    }

    /// The connection is gone: the session detaches (and a watchdog takes
    /// over its expiry) unless a resume already moved it.
    fn lost(&mut self, slot: u32) -> Outcome {
        let conn = self.conn(slot);
        let (cell, attachment) = (conn.cell.clone(), conn.attachment);
        // The socket closes first; the session's bookkeeping (detaching,
        // handing its expiry to a watchdog) need not keep it open.
        self.remove(slot);
        self.detach(cell, attachment);
        Outcome::Drop
    }

    /// Detaches the session from connection `attachment`; if it now waits
    /// detached, its watchdog starts at the end of this round.
    fn detach(&mut self, cell: Arc<SessionCell>, attachment: u64) {
        if detach(&self.shared, &cell, attachment) {
            self.detached.push(cell);
        }
    }

    /// Hands this round's newly detached sessions to watchdog tasks: one
    /// task spawned from here spawns them all from inside the runtime,
    /// where spawning is cheap (when 10,000 clients vanish at once, one
    /// cross-thread wake-up instead of 10,000).
    fn spawn_watchdogs(&mut self) {
        if self.detached.is_empty() {
            return;
        }
        let cells = std::mem::take(&mut self.detached);
        let shared = self.shared.clone();
        self.runtime.spawn(async move {
            for cell in cells {
                tokio::spawn(watch_detached(cell, shared.clone()));
            }
        });
    }

    // ---- timers ----

    /// Pushes the connection's next deadline if it is earlier than the one
    /// already in the heap.
    fn arm(&mut self, slot: u32) {
        let write_timeout = self.shared.options.write_timeout;
        let Some(conn) = self.conns[slot as usize].as_mut() else {
            return;
        };
        let session = if conn.linger_until().is_some() {
            None
        } else {
            conn.cell.lock().session.poll_timeout()
        };
        let deadline = [
            session,
            conn.write_since()
                .map(|since| session_core::deadline_after(since, write_timeout)),
            conn.linger_until(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(deadline) = deadline {
            let at = tick_at_or_after(self.epoch, deadline);
            if at < conn.armed {
                conn.armed = at;
                self.timers.push(Reverse((at, slot)));
            }
        }
    }

    /// Runs every deadline that has come.
    fn expire(&mut self, now: Instant) {
        let now_tick = tick_at_or_before(self.epoch, now);
        while let Some(&Reverse((at, slot))) = self.timers.peek() {
            if at > now_tick {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns[slot as usize].as_mut() else {
                continue;
            };
            if conn.armed != at {
                continue; // stale
            }
            conn.armed = NOT_ARMED;
            self.turn(slot, now, |reactor, slot, now| reactor.deadline(slot, now));
        }
    }

    fn deadline(&mut self, slot: u32, now: Instant) -> Outcome {
        let write_timeout = self.shared.options.write_timeout;
        let conn = self.conn(slot);
        if conn.linger_until().is_some_and(|until| until <= now) {
            return Outcome::Drop;
        }
        if conn
            .write_since()
            .is_some_and(|since| session_core::deadline_after(since, write_timeout) <= now)
        {
            debug!(session = %conn.cell.info.id, "write deadline passed");
            return self.lost(slot);
        }
        if conn.linger_until().is_some() {
            return Outcome::Keep;
        }
        let (cell, attachment) = (conn.cell.clone(), conn.attachment);
        let attached = self.shared.with_session(&cell, |state| {
            if state.attachment != attachment {
                return false;
            }
            state.set_woken(true);
            state.session.handle_timeout(now);
            true
        });
        if !attached {
            return Outcome::Drop;
        }
        self.drive(slot, now)
    }
}

/// A connection with no deadline in the timer heap.
const NOT_ARMED: u64 = u64::MAX;

// Deadlines in the timer heap are whole milliseconds since the reactor's
// epoch (a `tick`): 8 bytes instead of an `Instant`'s 16, in the heap and
// in every connection. A deadline rounds up and the clock rounds down, so
// a deadline never fires early.

/// The first tick at or after `at`.
fn tick_at_or_after(epoch: Instant, at: Instant) -> u64 {
    let since = at.saturating_duration_since(epoch);
    let ms = u64::try_from(since.as_millis()).unwrap_or(NOT_ARMED - 1);
    if since.subsec_nanos() % 1_000_000 == 0 {
        ms
    } else {
        ms.saturating_add(1).min(NOT_ARMED - 1)
    }
}

/// The last tick at or before `at`.
fn tick_at_or_before(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(NOT_ARMED - 1)
}

/// How far a drain got.
enum Drained {
    /// The session has nothing more to send.
    All,
    /// The batch is full; more may be waiting.
    More,
    /// The session's last frame is in the batch: close after it.
    Close,
}
#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use std::time::{Duration, Instant};

    use super::{Conn, tick_at_or_after, tick_at_or_before};
    use crate::registry::SessionCell;

    #[test]
    fn timer_deadlines_round_up_and_the_clock_rounds_down() {
        let epoch = Instant::now();
        let between = epoch + Duration::from_micros(1_500);
        assert_eq!(tick_at_or_after(epoch, between), 2);
        assert_eq!(tick_at_or_before(epoch, between), 1);
        let exact = epoch + Duration::from_millis(7);
        assert_eq!(tick_at_or_after(epoch, exact), 7);
        assert_eq!(tick_at_or_before(epoch, exact), 7);
        // A deadline fires once the clock's tick reaches it: never before
        // the deadline itself.
        for micros in [1u64, 999, 1_000, 1_001, 123_456_789] {
            let deadline = epoch + Duration::from_micros(micros);
            let fires_at = epoch + Duration::from_millis(tick_at_or_after(epoch, deadline));
            assert!(fires_at >= deadline);
            assert!(fires_at - deadline < Duration::from_millis(1));
            assert!(tick_at_or_before(epoch, fires_at) >= tick_at_or_after(epoch, deadline));
        }
    }

    /// The per-session memory budget of `docs/server.md`: an idle
    /// connection's slab entry and its session's cell.
    #[test]
    fn idle_sessions_stay_within_the_memory_budget() {
        assert!(
            size_of::<Option<Conn>>() <= 56,
            "{}",
            size_of::<Option<Conn>>()
        );
        assert!(
            size_of::<SessionCell>() <= 264,
            "{}",
            size_of::<SessionCell>()
        );
    }
}
