//! The four listeners of the client lifecycle (connected, disconnected,
//! online, offline), as a trait and as a stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use session_core::{CloseReason, DisconnectReason, OnlineInfo};
use tokio::sync::mpsc;

/// One change in a client's life, network layer (`Connected`,
/// `Disconnected`) or session layer (`Online`, `Offline`).
///
/// The changes come in the order the session core produces them, for
/// example:
///
/// | what happened | changes |
/// |---|---|
/// | connect, login | `Connected`, `Online` |
/// | logout | `Offline(LoggedOut)`, `Disconnected(Closed)` |
/// | kick, conflict, shutdown, server-side expiry | `Offline(Server { code, .. })`, `Disconnected(Closed)` |
/// | connection lost | `Disconnected(Lost)` (the session is suspended, not over) |
/// | resume | `Connected`, `Online` (with `resumed`) |
/// | suspended past the session timeout | `Offline(Expired)` |
/// | resume refused for good (`SESSION_NOT_FOUND`, ...) | `Connected`, `Offline(ResumeRejected { .. })`, `Disconnected(Closed)` |
/// | resume refused for now (`RATE_LIMITED`, `SERVER_BUSY`, ...), or closed before the answer (`SERVER_SHUTDOWN`, `LOGIN_TIMEOUT`, ...) | `Connected`, `Disconnected(Closed)` (still suspended) |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lifecycle {
    /// A connection is up.
    Connected,
    /// The connection is gone, for this reason.
    Disconnected(DisconnectReason),
    /// The session is online, after a login or a resume
    /// ([`OnlineInfo::resumed`] tells which).
    Online(OnlineInfo),
    /// The session is over, for this reason: once per session.
    Offline(CloseReason),
}

/// Callbacks for the four lifecycle changes. Every method has an empty
/// default, so implement only what you need.
///
/// Callbacks run on the client's task, one at a time, in the order of the
/// changes; each fires exactly once per occurrence. They must return
/// quickly and must not block: to do async work, send to a channel or
/// spawn a task.
///
/// ```
/// use session_client::{ClientListener, ClientOptions, core::CloseReason};
///
/// struct Log;
///
/// impl ClientListener for Log {
///     fn on_offline(&self, reason: &CloseReason) {
///         eprintln!("session over: {reason}");
///     }
/// }
///
/// let options = ClientOptions::default().with_listener(Log);
/// # let _ = options;
/// ```
pub trait ClientListener: Send + Sync + 'static {
    /// A connection is up (network layer).
    fn on_connected(&self) {}

    /// The connection is gone (network layer). After a loss (`Lost`,
    /// `ServerSilent`) an online session is suspended, not over.
    fn on_disconnected(&self, _reason: DisconnectReason) {}

    /// The session is online, after a login or a resume (session layer).
    fn on_online(&self, _info: &OnlineInfo) {}

    /// The session is over (session layer): exactly once per session, with
    /// the server's reason when the server ended it.
    fn on_offline(&self, _reason: &CloseReason) {}
}

/// Calls the listener method that matches `change`.
pub(crate) fn notify(listener: &dyn ClientListener, change: &Lifecycle) {
    match change {
        Lifecycle::Connected => listener.on_connected(),
        Lifecycle::Disconnected(reason) => listener.on_disconnected(*reason),
        Lifecycle::Online(info) => listener.on_online(info),
        Lifecycle::Offline(reason) => listener.on_offline(reason),
    }
}

/// The lifecycle changes of a client from the moment
/// [`Client::lifecycle`](crate::Client::lifecycle) was called, as a
/// [`Stream`]. Unbounded: a subscriber that does not read holds the changes
/// in memory (they are few). Ends when the client's task ends.
#[derive(Debug)]
pub struct LifecycleStream {
    rx: mpsc::UnboundedReceiver<Lifecycle>,
}

impl LifecycleStream {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Lifecycle>) -> Self {
        Self { rx }
    }
}

impl Stream for LifecycleStream {
    type Item = Lifecycle;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Lifecycle>> {
        self.rx.poll_recv(cx)
    }
}
