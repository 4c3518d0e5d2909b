//! One connection's task: the login phase on a private core session, then
//! the attached phase on a filed session, driven by one timer from the
//! core's `poll_timeout`.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use session_core::{
    Admission, CloseCode, Framing, LoginRequest, RejectCode, ServerEvent, ServerSession,
    ServerState, Transmit,
};
use session_transport::{Transport, TransportKind};
use tracing::{debug, error, warn};

use crate::api::{Authenticator, LoginAttempt, SessionInfo};
use crate::dispatch::PeerText;
use crate::entropy::OsEntropy;
use crate::limits::Admitted;
use crate::reactor::Adopt;
use crate::registry::{CellState, SessionCell, Shared};

/// How long a closing connection waits for the peer to close too.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// How a connection ended, for the caller's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The session asked for the close, after its last frame.
    Closed,
    /// The peer went away, or writing failed or timed out.
    Lost,
    /// A resume moved the session to another connection.
    Replaced,
}

/// Moves every pending frame of `session` into `frames`; true if the session
/// then asked for the connection to close.
fn drain(session: &mut ServerSession, buf: &mut BytesMut, frames: &mut Vec<Bytes>) -> bool {
    while let Some(transmit) = session.poll_transmit(buf, Framing::Bare) {
        match transmit {
            Transmit::Frame => frames.push(buf.split().freeze()),
            Transmit::CloseConnection => return true,
        }
    }
    false
}

/// Writes and flushes `frames` within the write deadline.
async fn write(
    conn: &mut Transport,
    frames: &mut Vec<Bytes>,
    deadline: Duration,
) -> Result<(), ()> {
    let work = async {
        for frame in frames.drain(..) {
            conn.feed(frame).await?;
        }
        conn.flush().await
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            debug!(%error, "write failed");
            Err(())
        }
        Err(_) => {
            debug!("write deadline passed");
            Err(())
        }
    }
}

fn sleep_until(deadline: Option<Instant>) -> tokio::time::Sleep {
    // No deadline: sleep "forever" (a day; the loop re-arms long before).
    let at = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
    tokio::time::sleep_until(at.into())
}

/// Writes what a session closed before login has queued (its close signal),
/// then closes the connection.
pub(crate) async fn flush_closing(conn: &mut Transport, session: &mut ServerSession) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let _ = drain(session, &mut buf, &mut frames);
    let _ = write(conn, &mut frames, LINGER).await;
}

/// A connection whose session is open: what the attached phase needs.
#[derive(Debug)]
pub(crate) struct Attached {
    conn: Transport,
    cell: Arc<SessionCell>,
    attachment: u64,
    remote: SocketAddr,
    shared: Arc<Shared>,
    slot: Admitted,
}

/// The login phase of a connection whose handshake is done. `session` was
/// created when the connection was accepted, so the login deadline counts
/// the handshake too. Returns the open session to run [`attached`] on (in a
/// task of its own: this phase's state is large and short-lived, the
/// attached phase's is small and long-lived), or how the connection ended.
pub(crate) async fn login<A: Authenticator>(
    mut conn: Transport,
    mut session: ServerSession,
    remote: SocketAddr,
    shared: Arc<Shared>,
    auth: Arc<A>,
    slot: Admitted,
) -> Result<Attached, Ended> {
    let write_timeout = shared.options.write_timeout;
    let mut shutdown = shared.shutdown.subscribe();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();

    // ---- login phase: the core session is private to this task ----
    let login = loop {
        if *shutdown.borrow_and_update() && session.state() != ServerState::Closed {
            let retry = Some(shared.options.retry_after);
            let _ = session.close(CloseCode::ServerShutdown, "server shutting down", retry);
        }
        let close = drain(&mut session, &mut buf, &mut frames);
        // Boxed, here and below: only a login that fails writes before its
        // answer, and the states of these futures would otherwise size
        // every login's task.
        if !frames.is_empty()
            && Box::pin(write(&mut conn, &mut frames, write_timeout))
                .await
                .is_err()
        {
            return Err(Ended::Lost);
        }
        if close {
            let _ = Box::pin(conn.close_with_linger(LINGER)).await;
            return Err(Ended::Closed);
        }
        if let Some(ServerEvent::LoginRequested(login)) = session.poll_event() {
            break login;
        }
        let deadline = session.poll_timeout();
        tokio::select! {
            frame = conn.next() => match frame {
                Some(Ok(frame)) => {
                    if let Err(error) = session.handle_frame(Instant::now(), frame) {
                        debug!(%remote, %error, "bad frame before login");
                    }
                }
                Some(Err(error)) => match error.protocol_error() {
                    Some(error) => {
                        debug!(%remote, %error, "bad input before login");
                        session.handle_protocol_error(Instant::now(), error);
                    }
                    None => return Err(Ended::Lost),
                },
                None => return Err(Ended::Lost),
            },
            () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
            _ = shutdown.changed() => {}
        }
    };

    // Boxed: a login waits for its frame far longer than for its decision
    // (the authenticator usually answers at once), so the decision's state
    // (0.7 KB) need not sit in every waiting login's task.
    let Some((cell, attachment)) =
        Box::pin(decide(&mut session, *login, remote, &shared, &*auth)).await
    else {
        // Rejected (or timed out): send the answer, then close.
        let _ = drain(&mut session, &mut buf, &mut frames);
        if Box::pin(write(&mut conn, &mut frames, write_timeout))
            .await
            .is_ok()
        {
            let _ = Box::pin(conn.close_with_linger(LINGER)).await;
        }
        return Err(Ended::Closed);
    };
    conn.set_max_frame_len(shared.core.max_frame_len);
    Ok(Attached {
        conn,
        cell,
        attachment,
        remote,
        shared,
        slot,
    })
}

/// Decides a login: a resume re-attaches an existing session, a new login
/// goes through rate limits, the authenticator and the conflict policy.
/// Returns the session now attached to this connection, or `None` after
/// queuing the rejection on `session`.
async fn decide<A: Authenticator>(
    session: &mut ServerSession,
    login: LoginRequest,
    remote: SocketAddr,
    shared: &Arc<Shared>,
    auth: &A,
) -> Option<(Arc<SessionCell>, u64)> {
    let ip = remote.ip();
    // Guessing resume tokens is rate-limited like guessing passwords: both
    // spend the address's failed-login tokens, and both are refused once
    // those are spent.
    if !shared.limiter.may_login(ip, Instant::now()) {
        debug!(%remote, "login refused: too many failed logins");
        let _ = session.reject_login(RejectCode::RateLimited, "too many failed logins");
        return None;
    }
    if let Some(resume) = &login.resume {
        let attachment = shared.new_attachment();
        let resumed = shared.get(resume.session_id).and_then(|cell| {
            shared
                .with_session(&cell, |state| {
                    let result = state.session.resume(Instant::now(), resume, &mut OsEntropy);
                    if result.is_ok() {
                        state.attachment = attachment;
                    }
                    result
                })
                .map_err(
                    |error| debug!(%remote, session = %resume.session_id, %error, "resume refused"),
                )
                .ok()
                .map(|()| cell)
        });
        return match resumed {
            Some(cell) => Some((cell, attachment)),
            None => {
                shared.limiter.login_failed(ip, Instant::now());
                let _ = session.reject_login(RejectCode::SessionNotFound, "no such session");
                None
            }
        };
    }

    let attempt = LoginAttempt {
        user_id: login.user_id,
        credential: login.credential,
        device: login.device,
        properties: login.properties,
        remote_addr: remote,
    };
    let deadline = session.poll_timeout().unwrap_or_else(Instant::now);
    // A panicking authenticator fails this login with INTERNAL_ERROR, as a
    // panicking handler fails its request, instead of dropping the
    // connection without an answer.
    let authenticated =
        AssertUnwindSafe(async { auth.authenticate(&attempt).await }).catch_unwind();
    let identity = match tokio::time::timeout_at(deadline.into(), authenticated).await {
        Ok(Ok(Ok(identity))) => identity,
        Ok(Err(_panic)) => {
            error!(%remote, user = %PeerText(&attempt.user_id), "the authenticator panicked");
            let _ = session.reject_login(RejectCode::InternalError, "internal error");
            return None;
        }
        Ok(Ok(Err(rejection))) => {
            debug!(%remote, user = %PeerText(&attempt.user_id), code = %rejection.code, "login rejected");
            shared.limiter.login_failed(ip, Instant::now());
            let _ = session.reject_login(rejection.code, &rejection.message);
            return None;
        }
        Err(_) => {
            debug!(%remote, user = %PeerText(&attempt.user_id), "authenticator missed the login deadline");
            session.handle_timeout(Instant::now());
            return None;
        }
    };

    let user_id: Arc<str> = identity.user_id.into();
    let device = shared.device(attempt.device);
    // The conflict check, the closing of replaced sessions and the filing of
    // the new one happen under one lock, so two racing logins of the same
    // user and device cannot both win under `RejectNewer`, and a shutdown
    // either finds the new session filed or is seen here.
    let _admit = admit_lock();
    if *shared.shutdown.borrow() {
        let retry = Some(shared.options.retry_after);
        let _ = session.close(CloseCode::ServerShutdown, "server shutting down", retry);
        return None;
    }
    let existing = shared.of_user_device(&user_id, &device);
    match shared.options.conflict.admit(&device, existing.len()) {
        Admission::Reject => {
            let _ = session.reject_login(
                RejectCode::LoginConflict,
                "already logged in on this device",
            );
            return None;
        }
        Admission::AdmitReplacing => {
            for old in &existing {
                shared.with_session(old, |state| {
                    let _ =
                        state
                            .session
                            .close(CloseCode::LoginConflict, "logged in elsewhere", None);
                });
            }
        }
        Admission::Admit => {}
    }
    let id =
        match session.accept_login(Instant::now(), login.requested_heartbeat_ms, &mut OsEntropy) {
            Ok(id) => id,
            Err(_) => return None,
        };
    let attachment = shared.new_attachment();
    // The accepted core moves into the shared cell; this task keeps an
    // empty placeholder that is dropped right away.
    let core = std::mem::replace(
        session,
        ServerSession::new(Instant::now(), shared.core.clone()),
    );
    let cell = Arc::new(SessionCell {
        info: SessionInfo {
            id,
            user_id,
            device,
            remote_addr: remote,
        },
        state: Mutex::new(CellState::new(core, attachment)),
    });
    shared.insert(cell.clone());
    // Forward `Opened` (queued by `accept_login`) to the dispatcher.
    shared.with_session(&cell, |_| ());
    Some((cell, attachment))
}

/// The lock under which a new session is admitted and filed, and under
/// which [`Server::shutdown`](crate::Server::shutdown) raises its flag: a
/// login decided while the shutdown starts is either filed before it (and
/// closed with the rest) or sees the flag and gets `SERVER_SHUTDOWN`.
pub(crate) fn admit_lock() -> std::sync::MutexGuard<'static, ()> {
    static ADMIT: Mutex<()> = Mutex::new(());
    ADMIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Attached {
    /// Whether a reactor takes this connection: plain TCP, on a server with
    /// reactors.
    pub(crate) fn wants_reactor(&self) -> bool {
        !self.shared.reactors.is_empty()
            && match self.conn.kind() {
                TransportKind::Tcp => true,
                // Unless a client sent more than its login (or a ping)
                // before the answer: then tungstenite holds bytes.
                TransportKind::Ws => self.conn.ws_ready_to_hand_on(),
                _ => false,
            }
    }

    /// Hands the connection to one of the server's reactors (see
    /// [`wants_reactor`](Self::wants_reactor)).
    pub(crate) fn into_reactor(self) {
        let Self {
            conn,
            cell,
            attachment,
            remote,
            shared,
            slot,
        } = self;
        let ws = conn.kind() == TransportKind::Ws;
        let parts = if ws {
            conn.into_ws_tcp().map(|stream| (stream, BytesMut::new()))
        } else {
            conn.into_tcp()
        };
        let taken = parts
            .ok_or_else(|| "output left unflushed after login".to_owned())
            .and_then(|(stream, buffered)| match stream.into_std() {
                Ok(stream) => Ok((stream, buffered)),
                Err(error) => Err(format!("cannot take the socket from tokio: {error}")),
            });
        let (stream, buffered) = match taken {
            Ok(taken) => taken,
            Err(why) => {
                debug!(%remote, %why, "cannot hand the connection to a reactor");
                let runtime = tokio::runtime::Handle::current();
                connection_lost(&shared, &cell, attachment, &runtime);
                return;
            }
        };
        let reactor = &shared.reactors[(attachment % shared.reactors.len() as u64) as usize];
        reactor.adopt(Adopt {
            stream,
            buffered,
            cell,
            attachment,
            slot,
            ws,
        });
    }
}

/// The attached phase: frames in, output out, one timer, until the session
/// closes, the connection is lost, or a resume takes the session elsewhere.
pub(crate) async fn attached(attached: Attached) -> Ended {
    let Attached {
        mut conn,
        cell,
        attachment,
        remote,
        shared,
        slot: _slot,
    } = attached;
    let write_timeout = shared.options.write_timeout;
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    // Taken before the first look at the session, once: a cell's waiters
    // never change after they are made.
    let waiters = cell.lock().waiters();
    let ended = loop {
        let (close, deadline) = {
            let mut state = cell.lock();
            if state.attachment != attachment {
                break Ended::Replaced;
            }
            // This task waits on the cell's waiters: no reactor slot (one
            // left by a connection this one resumed from) may take its
            // wake-ups.
            state.driver = None;
            let close = drain(&mut state.session, &mut buf, &mut frames);
            (close, state.session.poll_timeout())
        };
        // Boxed: the write state (with its deadline) would otherwise sit in
        // every idle session's task.
        if !frames.is_empty()
            && Box::pin(write(&mut conn, &mut frames, write_timeout))
                .await
                .is_err()
        {
            break Ended::Lost;
        }
        if close {
            break Ended::Closed;
        }
        tokio::select! {
            frame = conn.next() => match frame {
                Some(Ok(frame)) => shared.with_session(&cell, |state| {
                    if state.attachment == attachment {
                        if let Err(error) = state.session.handle_frame(Instant::now(), frame) {
                            warn!(%remote, session = %cell.info.id, %error, "protocol error");
                        }
                    }
                }),
                Some(Err(error)) => match error.protocol_error() {
                    Some(error) => shared.with_session(&cell, |state| {
                        warn!(%remote, session = %cell.info.id, %error, "bad input");
                        if state.attachment == attachment {
                            state.session.handle_protocol_error(Instant::now(), error);
                        }
                    }),
                    None => {
                        debug!(%remote, session = %cell.info.id, %error, "connection failed");
                        break Ended::Lost;
                    }
                },
                None => break Ended::Lost,
            },
            () = waiters.notified() => {}
            () = sleep_until(deadline) => shared.with_session(&cell, |state| {
                if state.attachment == attachment {
                    state.session.handle_timeout(Instant::now());
                }
            }),
        }
    };
    if ended == Ended::Closed {
        // Detach first (the session is already closed, so this only records
        // that no connection is attached), then linger without the lock.
        shared.with_session(&cell, |state| {
            if state.attachment == attachment {
                state.attachment = 0;
            }
        });
        // Boxed for the same reason: closing is rare.
        let _ = Box::pin(conn.close_with_linger(LINGER)).await;
        return ended;
    }
    if ended != Ended::Replaced {
        connection_lost(
            &shared,
            &cell,
            attachment,
            &tokio::runtime::Handle::current(),
        );
    }
    ended
}

/// The connection `attachment` of `cell` is gone: the session detaches (and
/// a watchdog on `runtime` takes over its expiry) unless a resume already
/// moved it elsewhere.
pub(crate) fn connection_lost(
    shared: &Arc<Shared>,
    cell: &Arc<SessionCell>,
    attachment: u64,
    runtime: &tokio::runtime::Handle,
) {
    if detach(shared, cell, attachment) {
        runtime.spawn(watch_detached(cell.clone(), shared.clone()));
    }
}

/// Detaches the session of `cell` from connection `attachment`; true if it
/// now waits detached and needs a watchdog ([`watch_detached`]).
pub(crate) fn detach(shared: &Arc<Shared>, cell: &Arc<SessionCell>, attachment: u64) -> bool {
    shared.with_session(cell, |state| {
        if state.attachment == attachment {
            state.attachment = 0;
            state.driver = None;
            state.session.handle_disconnect(Instant::now());
        }
        state.attachment == 0 && state.session.state() == ServerState::Detached
    })
}

/// Drives a detached session's expiry until it is resumed or closes.
pub(crate) async fn watch_detached(cell: Arc<SessionCell>, shared: Arc<Shared>) {
    // Taken before the first look at the session, once (as above).
    let waiters = cell.lock().waiters();
    loop {
        let deadline = {
            let state = cell.lock();
            if state.attachment != 0 || state.session.state() != ServerState::Detached {
                return;
            }
            state.session.poll_timeout()
        };
        tokio::select! {
            () = sleep_until(deadline) => shared.with_session(&cell, |state| {
                if state.attachment == 0 {
                    state.session.handle_timeout(Instant::now());
                }
            }),
            () = waiters.notified() => {}
        }
    }
}
