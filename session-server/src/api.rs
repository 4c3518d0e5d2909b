//! What a backend plugs in: the `Authenticator`, the `SessionListener` and the
//! `RequestHandler`, with the types they see.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use session_core::{CloseCode, ErrorCode, RejectCode, ResponseError, SessionId};

use crate::handle::ServerHandle;

/// A login to decide, as the authenticator sees it. Its strings are the
/// client's own text, up to the frame limit before login (4 KiB by
/// default), newlines and all: bound and escape them before logging them.
#[derive(Clone)]
pub struct LoginAttempt {
    /// The user the client claims to be.
    pub user_id: String,
    /// The client's proof. Never log it.
    pub credential: Bytes,
    /// The kind of device.
    pub device: String,
    /// Free-form properties the client sent.
    pub properties: BTreeMap<String, String>,
    /// Where the connection comes from.
    pub remote_addr: SocketAddr,
}

impl std::fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("user_id", &self.user_id)
            .field("credential", &"<redacted>")
            .field("device", &self.device)
            .field("remote_addr", &self.remote_addr)
            .finish()
    }
}

/// Who a successful login is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id sessions are filed under (the authenticator may normalise
    /// the one the client sent).
    pub user_id: String,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The code sent to the client.
    pub code: RejectCode,
    /// Detail sent to the client; never put secrets here.
    pub message: String,
}

impl Rejection {
    /// A rejection for bad credentials.
    pub fn bad_credentials() -> Self {
        Self {
            code: RejectCode::BadCredentials,
            message: "bad credentials".into(),
        }
    }
}

/// Decides logins. Called once per login (not for resumes, whose proof is
/// the resume token), within the login deadline.
pub trait Authenticator: Send + Sync + 'static {
    /// Accepts `attempt` with an identity, or refuses it.
    fn authenticate(
        &self,
        attempt: &LoginAttempt,
    ) -> impl Future<Output = Result<Identity, Rejection>> + Send;
}

/// An authenticator that refuses everyone: the safe default until the
/// backend provides one.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl Authenticator for DenyAll {
    async fn authenticate(&self, _attempt: &LoginAttempt) -> Result<Identity, Rejection> {
        Err(Rejection::bad_credentials())
    }
}

/// An open session, as the backend sees it. The user id (unless the
/// authenticator replaced it) and the device are the client's own text:
/// bound and escape them before logging them, as the server's own log
/// lines do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id, stable across resumes.
    pub id: SessionId,
    /// Its user.
    pub user_id: Arc<str>,
    /// Its device kind.
    pub device: Arc<str>,
    /// Where the login came from.
    pub remote_addr: SocketAddr,
}

/// Reacts to the lifecycle of sessions (Atomix's `SessionListener`).
///
/// For each session: `on_open` comes first and once; `on_expire` is always
/// followed by `on_close`; nothing follows `on_close`, and nothing can be
/// published to the session after it. Callbacks of one session are never
/// concurrent. They run on the server's dispatcher: keep them short and
/// spawn anything slow. Events published from `on_open` (through `server`)
/// reach the client right after its `LoginOk`, in order.
///
/// A callback that panics is logged as an error and goes no further: the
/// session's lifecycle goes on as if it had returned (lifecycle
/// subscribers still hear of the event, `on_close` still follows
/// `on_expire`), and the dispatcher serves its other sessions. Whatever
/// the callback left half-done in the listener's own state stays so.
pub trait SessionListener: Send + Sync + 'static {
    /// A session opened.
    fn on_open(&self, session: &SessionInfo, server: &ServerHandle) {
        let _ = (session, server);
    }
    /// The session expired: nothing was heard for its timeout. `on_close`
    /// follows.
    fn on_expire(&self, session: &SessionInfo) {
        let _ = session;
    }
    /// The session is over. After a logout, `reason` is the client's own
    /// text, up to a frame long (`max_frame_len`, 1 MiB by default).
    fn on_close(&self, session: &SessionInfo, code: CloseCode, reason: &str) {
        let _ = (session, code, reason);
    }
}

/// A listener that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopListener;

impl SessionListener for NoopListener {}

/// Answers client requests. A request re-sent after a resume is answered
/// from the cache and not run again.
///
/// The handler's future is first polled where the request is taken: on the
/// reactor thread that read it (when its session's dispatcher has nothing
/// in hand), or on the dispatcher. A handler that answers without waiting
/// (an echo, a relay) answers there, with no task; one that waits continues
/// on a task of its own. So the future must not block before its first
/// `.await` (move blocking work to `spawn_blocking`): it would hold up the
/// other sessions of that reactor. A handler that panics, in `handle`
/// itself (before it returns its future) or in its future, fails its
/// request with `INTERNAL`; the session and the server carry on.
pub trait RequestHandler: Send + Sync + 'static {
    /// Answers `body` from `session`.
    fn handle(
        &self,
        session: &SessionInfo,
        body: Bytes,
        server: &ServerHandle,
    ) -> impl Future<Output = Result<Bytes, ResponseError>> + Send;
}

/// A handler that answers every request with `NOT_FOUND`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotFound;

impl RequestHandler for NotFound {
    async fn handle(
        &self,
        _session: &SessionInfo,
        _body: Bytes,
        _server: &ServerHandle,
    ) -> Result<Bytes, ResponseError> {
        Err(ResponseError {
            code: ErrorCode::NotFound,
            message: "no request handler".into(),
        })
    }
}
