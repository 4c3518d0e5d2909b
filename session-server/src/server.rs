//! `Server`: the builder, the accept loops and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{CloseCode, ServerSession};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{Authenticator, DenyAll, NoopListener, NotFound, RequestHandler, SessionListener};
use crate::connection;
use crate::dispatch::{Answer, Shard};
use crate::entropy::OsEntropy;
use crate::handle::ServerHandle;
use crate::limits::Limiter;
use crate::options::ServerOptions;
use crate::reactor::{self, ReactorHandle, StopOnDrop};
use crate::registry::Shared;
use crate::wire;

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// One listener to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Listen {
    /// Plain TCP with varint-delimited frames.
    Tcp {
        /// Where (port 0 picks a free port).
        addr: SocketAddr,
    },
    /// TLS over TCP.
    Tls {
        /// Where.
        addr: SocketAddr,
        /// Certificate and key.
        tls: TlsFiles,
    },
    /// WebSocket, subprotocol `session.v1`.
    Ws {
        /// Where.
        addr: SocketAddr,
        /// The upgrade path, e.g. `/session`.
        path: String,
    },
    /// WebSocket over TLS.
    Wss {
        /// Where.
        addr: SocketAddr,
        /// The upgrade path.
        path: String,
        /// Certificate and key.
        tls: TlsFiles,
    },
}

impl Listen {
    /// The URL scheme clients use for this listener.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Tcp { .. } => "tcp",
            Self::Tls { .. } => "tls",
            Self::Ws { .. } => "ws",
            Self::Wss { .. } => "wss",
        }
    }

    fn path(&self) -> &str {
        match self {
            Self::Ws { path, .. } | Self::Wss { path, .. } => path,
            _ => "",
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound or configured.
    #[error("cannot listen on {scheme}://{addr}: {message}")]
    Listen {
        /// The scheme.
        scheme: &'static str,
        /// The address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The OS random generator is unavailable (resume tokens need it).
    #[error("the OS random generator is unavailable: {0}")]
    Entropy(std::io::Error),
    /// A reactor's poll or thread could not be created.
    #[error("cannot start a reactor: {0}")]
    Reactor(std::io::Error),
}

/// Builds a [`Server`]: listeners, options, and the backend's
/// authenticator, session listener and request handler.
#[derive(Debug)]
#[must_use]
pub struct ServerBuilder<A = DenyAll, L = NoopListener, H = NotFound> {
    listen: Vec<Listen>,
    options: ServerOptions,
    authenticator: A,
    listener: L,
    handler: H,
}

impl ServerBuilder {
    fn new() -> Self {
        Self {
            listen: Vec::new(),
            options: ServerOptions::default(),
            authenticator: DenyAll,
            listener: NoopListener,
            handler: NotFound,
        }
    }
}

impl<A: Authenticator, L: SessionListener, H: RequestHandler> ServerBuilder<A, L, H> {
    /// Adds a listener.
    pub fn listen(mut self, listen: Listen) -> Self {
        self.listen.push(listen);
        self
    }

    /// Sets every option at once.
    pub fn options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// Who decides logins (default: [`DenyAll`]).
    pub fn authenticator<A2: Authenticator>(self, authenticator: A2) -> ServerBuilder<A2, L, H> {
        ServerBuilder {
            listen: self.listen,
            options: self.options,
            authenticator,
            listener: self.listener,
            handler: self.handler,
        }
    }

    /// Who hears about sessions opening, expiring and closing (default:
    /// nobody).
    pub fn session_listener<L2: SessionListener>(self, listener: L2) -> ServerBuilder<A, L2, H> {
        ServerBuilder {
            listen: self.listen,
            options: self.options,
            authenticator: self.authenticator,
            listener,
            handler: self.handler,
        }
    }

    /// Who answers requests (default: `NOT_FOUND` for all).
    pub fn request_handler<H2: RequestHandler>(self, handler: H2) -> ServerBuilder<A, L, H2> {
        ServerBuilder {
            listen: self.listen,
            options: self.options,
            authenticator: self.authenticator,
            listener: self.listener,
            handler,
        }
    }

    /// Binds every listener and starts serving. Must run inside a tokio
    /// runtime.
    pub async fn start(self) -> Result<Server, StartError> {
        OsEntropy::check().map_err(StartError::Entropy)?;
        let limiter = Limiter::new(self.options.clone(), Instant::now());
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        debug_assert!(shards <= crate::dispatch::MAX_SHARDS);
        let dispatch = (0..shards).map(|_| Shard::default()).collect();
        let mut reactors = Vec::new();
        let mut polls = Vec::new();
        // Sessions name their reactor in 16 bits.
        for _ in 0..self.options.reactor_threads.min(usize::from(u16::MAX)) {
            let (reactor, poll) = ReactorHandle::new().map_err(StartError::Reactor)?;
            reactors.push(reactor);
            polls.push(poll);
        }
        let shared = Arc::new(Shared::new(self.options, limiter, dispatch, reactors));
        let handle = ServerHandle {
            shared: shared.clone(),
        };
        let (listener, handler) = (Arc::new(self.listener), Arc::new(self.handler));
        let answer: Answer = {
            let (handler, handle) = (handler.clone(), handle.clone());
            Arc::new(move |cell, id, body| {
                crate::dispatch::answer(cell, id, body, &handler, &handle)
            })
        };
        for (index, poll) in (0..=u16::MAX).zip(polls) {
            reactor::spawn(index, poll, shared.clone(), answer.clone())
                .map_err(StartError::Reactor)?;
        }
        // The reactors stop when the runtime drops this task (or at shutdown).
        let stop = StopOnDrop(shared.clone());
        tokio::spawn(async move {
            let _stop = stop;
            std::future::pending::<()>().await;
        });
        for index in 0..shards {
            tokio::spawn(crate::dispatch::run(
                index,
                listener.clone(),
                handler.clone(),
                handle.clone(),
            ));
        }
        let authenticator = Arc::new(self.authenticator);
        let mut local_addrs = Vec::new();
        let mut accept_tasks = Vec::new();
        for listen in self.listen {
            let bound = wire::bind(&listen, &shared.options)
                .await
                .map_err(|message| StartError::Listen {
                    scheme: listen.scheme(),
                    addr: listen_addr(&listen).to_string(),
                    message,
                })?;
            let addr = bound.local_addr();
            info!(url = %format!("{}://{addr}{}", listen.scheme(), listen.path()), "listening");
            local_addrs.push((listen.scheme(), addr));
            accept_tasks.push(tokio::spawn(
                accept_loop(bound, shared.clone(), authenticator.clone())
                    .instrument(info_span!("listener", scheme = listen.scheme(), %addr)),
            ));
        }
        Ok(Server {
            handle,
            local_addrs,
            accept_tasks,
        })
    }
}

fn listen_addr(listen: &Listen) -> SocketAddr {
    match listen {
        Listen::Tcp { addr }
        | Listen::Tls { addr, .. }
        | Listen::Ws { addr, .. }
        | Listen::Wss { addr, .. } => *addr,
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    handle: ServerHandle,
    local_addrs: Vec<(&'static str, SocketAddr)>,
    accept_tasks: Vec<JoinHandle<()>>,
}

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions sent `SERVER_SHUTDOWN`.
    pub sessions_closed: usize,
    /// Connections still open when the shutdown timeout passed (0 when
    /// everything closed in time).
    pub connections_left: usize,
}

impl Server {
    /// A builder with no listener, default options, and backend parts that
    /// refuse every login and answer every request with `NOT_FOUND`.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// The handle the backend uses to publish, close and look up sessions.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Where each listener listens, as `(scheme, address)`, in the order
    /// they were added.
    pub fn local_addrs(&self) -> &[(&'static str, SocketAddr)] {
        &self.local_addrs
    }

    /// The address of the first listener of `scheme` ("tcp", "ws", ...).
    pub fn local_addr(&self, scheme: &str) -> Option<SocketAddr> {
        self.local_addrs
            .iter()
            .find(|(s, _)| *s == scheme)
            .map(|(_, a)| *a)
    }

    /// Graceful shutdown: stop accepting, send `SERVER_SHUTDOWN` to every
    /// session (and to connections still logging in), flush, close; waits
    /// at most `shutdown_timeout`.
    pub async fn shutdown(self) -> ShutdownReport {
        let shared = &self.handle.shared;
        {
            // No login is being filed while the flag goes up (see
            // `connection::admit_lock`).
            let _admit = connection::admit_lock();
            // Kept even with no connection listening for it yet: logins
            // that start later read it (`send` would drop it then).
            shared.shutdown.send_replace(true);
        }
        for task in &self.accept_tasks {
            task.abort();
        }
        let sessions_closed = shared.count();
        self.handle.close_all(shared.options.retry_after);
        let deadline =
            session_core::deadline_after(Instant::now(), shared.options.shutdown_timeout);
        while Instant::now() < deadline && (shared.limiter.connections() > 0 || shared.count() > 0)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let connections_left = shared.limiter.connections();
        for reactor in &shared.reactors {
            reactor.stop();
        }
        info!(sessions_closed, connections_left, "shut down");
        ShutdownReport {
            sessions_closed,
            connections_left,
        }
    }
}

/// Accepts connections until the listener task is aborted.
async fn accept_loop<A: Authenticator>(mut bound: wire::Bound, shared: Arc<Shared>, auth: Arc<A>) {
    loop {
        let (incoming, remote) = match bound.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: back off instead of spinning.
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let accepted_at = Instant::now();
        match shared.limiter.admit(remote.ip(), accepted_at) {
            Ok(slot) => {
                let (shared, auth) = (shared.clone(), auth.clone());
                tokio::spawn(
                    async move {
                        // Created now, so that the login deadline covers the
                        // TLS handshake and the WebSocket upgrade.
                        let session = ServerSession::new(accepted_at, shared.core.clone());
                        let deadline =
                            session_core::deadline_after(accepted_at, shared.core.login_timeout);
                        // The transport boxes the handshakes it runs (TLS,
                        // WebSocket), so a plain TCP connection's task does
                        // not carry their 12 KB of state.
                        let conn = match tokio::time::timeout_at(
                            deadline.into(),
                            incoming.handshake(deadline),
                        )
                        .await
                        {
                            Ok(Ok(conn)) => conn,
                            Ok(Err(error)) => {
                                debug!(%error, "handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!("handshake missed the login deadline");
                                return;
                            }
                        };
                        // Not boxed: the login is on every connection's
                        // path, and one allocation for the task and its
                        // login leaves fewer holes behind than two.
                        let login = connection::login(conn, session, remote, shared, auth, slot);
                        match login.await {
                            // The attached phase gets a small task of its own;
                            // this one, sized for the login, ends here.
                            Ok(attached) => {
                                if attached.wants_reactor() {
                                    attached.into_reactor();
                                } else {
                                    tokio::spawn(
                                        connection::attached(attached)
                                            .instrument(info_span!("session", %remote)),
                                    );
                                }
                            }
                            Err(ended) => debug!(?ended, "connection ended before login"),
                        }
                    }
                    .instrument(info_span!("connection", %remote)),
                );
            }
            Err(limit) => {
                debug!(%remote, %limit, "connection refused");
                let shared = shared.clone();
                // Tell the peer why, within a short deadline; a flood only
                // costs what the rate limit lets through.
                tokio::spawn(async move {
                    let budget = Duration::from_secs(1);
                    let _ = tokio::time::timeout(budget, async {
                        if let Ok(mut conn) = incoming.handshake(Instant::now() + budget).await {
                            let mut session =
                                ServerSession::new(Instant::now(), shared.core.clone());
                            let _ = session.close(
                                CloseCode::PolicyViolation,
                                &limit.to_string(),
                                Some(shared.options.retry_after),
                            );
                            connection::flush_closing(&mut conn, &mut session).await;
                            let _ = conn.close_with_linger(budget).await;
                        }
                    })
                    .await;
                });
            }
        }
    }
}
