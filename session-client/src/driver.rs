//! The driver task: owns the sans-IO `ClientSession` and the current
//! transport, and runs the core's drive loop over frames, commands from the
//! `Client` handles and one timer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use session_core::{
    ClientConfig, ClientEvent, ClientSession, ClientState, CloseReason, Credentials, Framing,
    LoginFailure, OnlineInfo, RequestFailure, SessionId, Transmit,
};
use session_transport::{Transport, TransportError};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::error::{ConnectError, LoginError, LogoutError, RequestError, ResumeError};
use crate::events::Event;
use crate::listener::{ClientListener, Lifecycle, notify};

/// The most frames read in one go before the outputs are drained, so that
/// acknowledgements of a burst of events are coalesced.
const READ_BATCH: usize = 64;

/// What a `Client` handle asks of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Login {
        credentials: Credentials,
        reply: oneshot::Sender<Result<OnlineInfo, LoginError>>,
    },
    Request {
        body: Bytes,
        reply: oneshot::Sender<Result<Bytes, RequestError>>,
    },
    Ack {
        session_id: SessionId,
        seq: u64,
    },
    Logout {
        reply: oneshot::Sender<Result<(), LogoutError>>,
    },
    /// A new connection, made by the caller, for a resume or a new login.
    Attach {
        transport: Transport,
        purpose: Attach,
    },
    /// Drop the connection as if the network had failed.
    DropConnection {
        reply: oneshot::Sender<()>,
    },
}

/// Why a new connection is attached, and whom to answer.
#[derive(Debug)]
pub(crate) enum Attach {
    Resume(oneshot::Sender<Result<OnlineInfo, ResumeError>>),
    Reconnect(oneshot::Sender<Result<(), ConnectError>>),
}

/// What handles read without asking the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) state: ClientState,
    pub(crate) session_id: Option<SessionId>,
    pub(crate) close_reason: Option<CloseReason>,
}

/// State shared between the driver and the handles. Locks are held only to
/// copy or push, never across an `.await` or a callback.
pub(crate) struct Shared {
    pub(crate) listener: Option<Arc<dyn ClientListener>>,
    pub(crate) subscribers: Mutex<Vec<mpsc::UnboundedSender<Lifecycle>>>,
    pub(crate) status: Mutex<Status>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("listener", &self.listener.is_some())
            .field("status", &*lock(&self.status))
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(listener: Option<Arc<dyn ClientListener>>) -> Self {
        Self {
            listener,
            subscribers: Mutex::new(Vec::new()),
            status: Mutex::new(Status {
                state: ClientState::Disconnected,
                session_id: None,
                close_reason: None,
            }),
        }
    }
}

/// Locks, ignoring poison: the data is plain and always consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The driver's timings, from `ClientOptions`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    pub(crate) request_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) close_linger: Duration,
}

/// A request waiting for a free slot in the server's window.
#[derive(Debug)]
struct Queued {
    body: Bytes,
    deadline: Instant,
    reply: oneshot::Sender<Result<Bytes, RequestError>>,
}

/// A login or resume awaiting the server's answer.
#[derive(Debug)]
enum Waiter {
    Login(oneshot::Sender<Result<OnlineInfo, LoginError>>),
    Resume(oneshot::Sender<Result<OnlineInfo, ResumeError>>),
}

type LogoutReply = oneshot::Sender<Result<(), LogoutError>>;

/// One input of the loop.
enum Input {
    Command(Command),
    Frame(Option<Result<Bytes, TransportError>>),
    Timeout,
    Shutdown,
}

/// The time on tokio's clock, as the core wants it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Owns the core session and the transport; see the module docs.
pub(crate) struct Driver {
    core: ClientSession,
    transport: Option<Transport>,
    buf: BytesMut,
    frames: Vec<Bytes>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    requests: HashMap<u64, oneshot::Sender<Result<Bytes, RequestError>>>,
    queued: VecDeque<Queued>,
    waiter: Option<Waiter>,
    /// Logouts to answer once the connection is closed.
    logouts: Vec<LogoutReply>,
    /// Connections to close at the end of the drain, with the logouts
    /// to answer when they are closed.
    closing: Vec<(Transport, Vec<LogoutReply>)>,
    /// Answers to give at the end of the drain, once every lifecycle change
    /// that led to them is reported.
    answers: Vec<Box<dyn FnOnce() + Send>>,
    session_id: Option<SessionId>,
    timings: Timings,
}

impl Driver {
    /// A driver over a fresh connection; [`start`](Self::start) reports it.
    pub(crate) fn new(
        config: ClientConfig,
        transport: Transport,
        shared: Arc<Shared>,
        events: mpsc::UnboundedSender<Event>,
        timings: Timings,
    ) -> Self {
        Self {
            core: ClientSession::new(config),
            transport: Some(transport),
            buf: BytesMut::new(),
            frames: Vec::new(),
            shared,
            events,
            requests: HashMap::new(),
            queued: VecDeque::new(),
            waiter: None,
            logouts: Vec::new(),
            closing: Vec::new(),
            answers: Vec::new(),
            session_id: None,
            timings,
        }
    }

    /// Reports the first connection (`on_connected`). Runs in the task of
    /// `Client::connect`, before any handle exists.
    pub(crate) async fn start(&mut self) {
        self.core.handle_connected(now());
        self.drain().await;
    }

    /// The loop: drain the outputs, wait for one input, feed it in.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            self.drain().await;
            let deadline = self.next_deadline();
            let input = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => Input::Command(command),
                    None => Input::Shutdown,
                },
                frame = next_frame(&mut self.transport) => Input::Frame(frame),
                () = sleep(deadline) => Input::Timeout,
            };
            match input {
                Input::Command(command) => {
                    self.command(command);
                    // Take what else is waiting, so that acknowledgements
                    // and requests share frames and flushes.
                    while let Ok(command) = commands.try_recv() {
                        self.command(command);
                    }
                }
                Input::Frame(frame) => {
                    self.frame(frame);
                    for _ in 1..READ_BATCH {
                        // Once the core wants the connection closed (a close
                        // signal, say), the rest is for the drain to handle.
                        let reading = matches!(
                            self.core.state(),
                            ClientState::Online | ClientState::LoggingIn | ClientState::Resuming
                        );
                        let Some(transport) = self.transport.as_mut().filter(|_| reading) else {
                            break;
                        };
                        match transport.next().now_or_never() {
                            Some(frame) => self.frame(frame),
                            None => break,
                        }
                    }
                }
                Input::Timeout => self.timeout(),
                Input::Shutdown => {
                    self.shutdown().await;
                    return;
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let queued = self.queued.front().map(|q| q.deadline);
        match (self.core.poll_timeout(), queued) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- inputs ----

    fn command(&mut self, command: Command) {
        let now = now();
        match command {
            Command::Login { credentials, reply } => match self.core.login(now, credentials) {
                Ok(()) => self.waiter = Some(Waiter::Login(reply)),
                Err(error) => {
                    let error = match error {
                        session_core::LoginError::NotConnected => LoginError::NotConnected,
                        // SessionInProgress, and anything the core adds later.
                        _ => LoginError::SessionInProgress,
                    };
                    let _ = reply.send(Err(error));
                }
            },
            Command::Request { body, reply } => self.queued.push_back(Queued {
                body,
                deadline: session_core::deadline_after(now, self.timings.request_timeout),
                reply,
            }),
            Command::Ack { session_id, seq } => {
                // Acks of an earlier session's events would acknowledge the
                // wrong events of this one.
                if self.session_id == Some(session_id) {
                    let _ = self.core.ack(seq);
                }
            }
            Command::Logout { reply } => match self.core.logout(now, "logout") {
                Ok(()) => self.logouts.push(reply),
                Err(_) => {
                    let _ = reply.send(Err(LogoutError::NotLoggedIn));
                }
            },
            Command::Attach { transport, purpose } => self.attach(now, transport, purpose),
            Command::DropConnection { reply } => {
                if let Some(transport) = self.transport.take() {
                    // Abrupt, as a network failure would be.
                    drop(transport);
                    self.core.handle_disconnect(now);
                }
                self.answer(reply, ());
            }
        }
    }

    fn attach(&mut self, now: Instant, transport: Transport, purpose: Attach) {
        let state = self.core.state();
        let refused = self.transport.is_some()
            || match &purpose {
                Attach::Resume(_) => state != ClientState::Suspended,
                Attach::Reconnect(_) => state == ClientState::Suspended,
            };
        if refused {
            self.close_in_background(transport, Vec::new());
            match purpose {
                Attach::Resume(reply) => {
                    let error = match self.core.close_reason() {
                        Some(reason) if state == ClientState::Closed => {
                            ResumeError::SessionEnded(reason.clone())
                        }
                        _ => ResumeError::NotSuspended,
                    };
                    let _ = reply.send(Err(error));
                }
                Attach::Reconnect(reply) => {
                    let error = if state == ClientState::Suspended {
                        ConnectError::SessionSuspended
                    } else {
                        ConnectError::AlreadyConnected
                    };
                    let _ = reply.send(Err(error));
                }
            }
            return;
        }
        self.transport = Some(transport);
        self.core.handle_connected(now);
        match purpose {
            Attach::Resume(reply) => match self.core.resume(now) {
                Ok(()) => self.waiter = Some(Waiter::Resume(reply)),
                Err(_) => {
                    // Checked above; kept for safety: give the connection up.
                    let _ = reply.send(Err(ResumeError::NotSuspended));
                    self.lose_connection(now);
                }
            },
            // Answered at the end of the drain, after `on_connected`.
            Attach::Reconnect(reply) => self.answer(reply, Ok(())),
        }
    }

    fn frame(&mut self, frame: Option<Result<Bytes, TransportError>>) {
        let now = now();
        match frame {
            Some(Ok(frame)) => {
                if let Err(error) = self.core.handle_frame(now, frame) {
                    warn!(%error, "the server broke the protocol; the session is closed");
                }
            }
            Some(Err(error)) => match error.protocol_error() {
                // The core closes the session and says so; the sink still works.
                Some(protocol) => {
                    warn!(%error, "bad input from the server");
                    self.core.handle_protocol_error(now, protocol);
                }
                None => {
                    debug!(%error, "connection failed");
                    self.lose_connection(now);
                }
            },
            None => {
                debug!("connection closed by the server");
                self.lose_connection(now);
            }
        }
    }

    fn timeout(&mut self) {
        let now = now();
        self.core.handle_timeout(now);
        while self.queued.front().is_some_and(|q| q.deadline <= now) {
            if let Some(queued) = self.queued.pop_front() {
                let _ = queued.reply.send(Err(RequestError::TimedOut));
            }
        }
    }

    /// The connection is gone without the session asking.
    fn lose_connection(&mut self, now: Instant) {
        self.transport = None;
        self.core.handle_disconnect(now);
    }

    /// Every handle is gone: log out if there is a session, then close.
    async fn shutdown(&mut self) {
        if self.core.logout(now(), "client dropped").is_err() {
            if let Some(transport) = self.transport.take() {
                self.close_in_background(transport, Vec::new());
                self.core.handle_disconnect(now());
            }
        }
        self.drain().await;
    }

    // ---- outputs ----

    /// Drains the core until it has nothing more to say: frames out (and
    /// the close of the connection when it asks), then events to their
    /// owners, then requests that waited for a slot.
    async fn drain(&mut self) {
        loop {
            let mut progress = self.transmit().await;
            while let Some(event) = self.core.poll_event() {
                progress = true;
                self.dispatch(event);
            }
            progress |= self.submit_queued();
            if !progress {
                break;
            }
        }
        // Logouts that needed no connection closed (the session was
        // suspended) are done.
        for reply in std::mem::take(&mut self.logouts) {
            self.answer(reply, Ok(()));
        }
        // Closed only now, so that a logout returns after every change it
        // caused was reported.
        for (transport, logouts) in std::mem::take(&mut self.closing) {
            self.close_in_background(transport, logouts);
        }
        self.publish_status();
        for answer in self.answers.drain(..) {
            answer();
        }
    }

    /// Sends `value` at the end of the drain.
    fn answer<T: Send + 'static>(&mut self, reply: oneshot::Sender<T>, value: T) {
        self.answers.push(Box::new(move || {
            let _ = reply.send(value);
        }));
    }

    /// Writes what the core has to send; returns whether it had anything.
    async fn transmit(&mut self) -> bool {
        let mut progress = false;
        let mut close = false;
        while let Some(transmit) = self.core.poll_transmit(&mut self.buf, Framing::Bare) {
            progress = true;
            match transmit {
                Transmit::Frame => self.frames.push(self.buf.split().freeze()),
                Transmit::CloseConnection => {
                    close = true;
                    break;
                }
            }
        }
        if !self.frames.is_empty() {
            let result = match &mut self.transport {
                Some(transport) => {
                    write(transport, &mut self.frames, self.timings.write_timeout).await
                }
                None => Ok(()),
            };
            self.frames.clear();
            if let Err(error) = result {
                debug!(%error, "writing failed");
                self.write_failed();
                return true;
            }
        }
        if close {
            if let Some(transport) = self.transport.take() {
                let logouts = std::mem::take(&mut self.logouts);
                self.closing.push((transport, logouts));
            }
            self.core.handle_disconnect(now());
        }
        progress
    }

    /// Writing failed, so the connection is gone. The server may have
    /// closed it right after a close signal: read what already arrived, so
    /// that the session ends with the server's reason, not as a lost
    /// connection.
    fn write_failed(&mut self) {
        let now = now();
        if let Some(mut transport) = self.transport.take() {
            for _ in 0..READ_BATCH {
                match transport.next().now_or_never() {
                    Some(Some(Ok(frame))) => {
                        let _ = self.core.handle_frame(now, frame);
                    }
                    _ => break,
                }
            }
        }
        // Whatever the core still wants to send has nowhere to go.
        while let Some(transmit) = self.core.poll_transmit(&mut self.buf, Framing::Bare) {
            if transmit == Transmit::CloseConnection {
                break;
            }
        }
        self.buf.clear();
        self.core.handle_disconnect(now);
    }

    /// Closes a connection in its own task: flush, close, linger. Answers
    /// `logouts` when done.
    fn close_in_background(&self, transport: Transport, logouts: Vec<LogoutReply>) {
        let linger = self.timings.close_linger;
        tokio::spawn(async move {
            if let Err(error) = transport.close_with_linger(linger).await {
                debug!(%error, "closing the connection failed");
            }
            for reply in logouts {
                let _ = reply.send(Ok(()));
            }
        });
    }

    fn dispatch(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Connected => self.lifecycle(Lifecycle::Connected),
            ClientEvent::Disconnected(reason) => self.lifecycle(Lifecycle::Disconnected(reason)),
            ClientEvent::Online(info) => {
                self.session_id = Some(info.session_id);
                self.lifecycle(Lifecycle::Online(info));
                match self.waiter.take() {
                    Some(Waiter::Login(reply)) => self.answer(reply, Ok(info)),
                    Some(Waiter::Resume(reply)) => self.answer(reply, Ok(info)),
                    None => {}
                }
            }
            ClientEvent::LoginFailed(failure) => match self.waiter.take() {
                Some(Waiter::Login(reply)) => self.answer(reply, Err(login_error(failure))),
                Some(Waiter::Resume(reply)) => self.answer(reply, Err(resume_error(failure))),
                None => {}
            },
            ClientEvent::Offline(reason) => {
                self.lifecycle(Lifecycle::Offline(reason.clone()));
                match self.waiter.take() {
                    Some(Waiter::Resume(reply)) => {
                        self.answer(reply, Err(ResumeError::SessionEnded(reason.clone())));
                    }
                    Some(Waiter::Login(reply)) => {
                        self.answer(reply, Err(LoginError::Closed(reason.clone())));
                    }
                    None => {}
                }
                // Requests still waiting for a slot end with those the core
                // fails right after this event.
                for queued in std::mem::take(&mut self.queued) {
                    let error = RequestError::SessionClosed(reason.clone());
                    self.answer(queued.reply, Err(error));
                }
            }
            ClientEvent::Message { seq, body } => {
                if let Some(session_id) = self.session_id {
                    // Nobody reads when the stream was dropped: the event
                    // is then never acknowledged (see `AckPolicy`).
                    let _ = self.events.send(Event {
                        seq,
                        body,
                        session_id,
                    });
                }
            }
            ClientEvent::Response { id, result } => {
                if let Some(reply) = self.requests.remove(&id) {
                    self.answer(reply, result.map_err(request_error));
                }
            }
            other => debug!(?other, "event unknown to this client version"),
        }
    }

    /// Reports a lifecycle change to the listener, then to the streams.
    fn lifecycle(&mut self, change: Lifecycle) {
        // Handles reading the state from a callback or right after a change
        // see the state that change led to.
        self.publish_status();
        if let Some(listener) = &self.shared.listener {
            notify(listener.as_ref(), &change);
        }
        lock(&self.shared.subscribers).retain(|subscriber| subscriber.send(change.clone()).is_ok());
    }

    fn publish_status(&self) {
        let status = Status {
            state: self.core.state(),
            session_id: self.session_id,
            close_reason: self.core.close_reason().cloned(),
        };
        *lock(&self.shared.status) = status;
    }

    /// Hands waiting requests to the core while its window has room.
    fn submit_queued(&mut self) -> bool {
        let now = now();
        let mut progress = false;
        while let Some(queued) = self.queued.front() {
            if queued.reply.is_closed() {
                // The caller gave up (its future was dropped).
                self.queued.pop_front();
                continue;
            }
            let result = self.core.request(now, queued.body.clone());
            if let Err(session_core::RequestError::TooManyPending { .. }) = result {
                break;
            }
            let Some(queued) = self.queued.pop_front() else {
                break;
            };
            progress = true;
            match result {
                Ok(id) => {
                    self.requests.insert(id, queued.reply);
                }
                Err(error) => {
                    let _ = queued.reply.send(Err(match error {
                        session_core::RequestError::SessionClosed(reason) => {
                            RequestError::SessionClosed(reason)
                        }
                        // NotLoggedIn, and anything the core adds later.
                        _ => RequestError::NotLoggedIn,
                    }));
                }
            }
        }
        progress
    }
}

fn login_error(failure: LoginFailure) -> LoginError {
    match failure {
        LoginFailure::Rejected { code, message } => LoginError::Rejected { code, message },
        LoginFailure::Closed(reason) => LoginError::Closed(reason),
        LoginFailure::TimedOut => LoginError::TimedOut,
        // ConnectionLost, and anything the core adds later.
        _ => LoginError::ConnectionLost,
    }
}

/// A resume that failed this way left the session suspended: the core
/// reports a resume that ends the session as `Offline` instead.
fn resume_error(failure: LoginFailure) -> ResumeError {
    match failure {
        LoginFailure::TimedOut => ResumeError::TimedOut,
        LoginFailure::Closed(reason) => ResumeError::Closed(reason),
        LoginFailure::Rejected { code, message } => ResumeError::Rejected { code, message },
        // ConnectionLost, and anything the core adds later.
        _ => ResumeError::ConnectionLost,
    }
}

fn request_error(failure: RequestFailure) -> RequestError {
    match failure {
        RequestFailure::Server(error) => RequestError::Server(error),
        RequestFailure::SessionClosed(reason) => RequestError::SessionClosed(reason),
        // TimedOut, and anything the core adds later.
        _ => RequestError::TimedOut,
    }
}

/// The next frame of the connection, or never when there is none.
async fn next_frame(transport: &mut Option<Transport>) -> Option<Result<Bytes, TransportError>> {
    match transport {
        Some(transport) => transport.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Writes and flushes `frames` within `timeout`.
async fn write(
    transport: &mut Transport,
    frames: &mut Vec<Bytes>,
    timeout: Duration,
) -> Result<(), TransportError> {
    let work = async {
        for frame in frames.drain(..) {
            transport.feed(frame).await?;
        }
        transport.flush().await
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(TransportError::TimedOut { stage: "write" }))
}
