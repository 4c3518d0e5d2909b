//! `Client`: the cheap, cloneable handle applications hold.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use session_core::{ClientState, Credentials, OnlineInfo, SessionId};
use session_transport::{ConnectOptions, Endpoint, Transport};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Attach, Command, Driver, Shared, Timings, lock};
use crate::error::{ConnectError, LoginError, LogoutError, RequestError, ResumeError};
use crate::events::{AckPolicy, Event, Events};
use crate::listener::LifecycleStream;
use crate::options::ClientOptions;
use crate::retry::{RetryPolicy, random};

/// A session client: a cheap handle (clone it freely) to one task that owns
/// the connection and the session.
///
/// - **Network layer:** [`connect`](Self::connect) opens the connection;
///   [`reconnect`](Self::reconnect) opens a new one after a session ended.
/// - **Session layer:** [`login`](Self::login), [`request`](Self::request),
///   [`logout`](Self::logout); events from [`take_events`](Self::take_events).
/// - **After a connection loss** the session is suspended, and stays so:
///   nothing reconnects behind the application's back.
///   [`resume`](Self::resume) re-attaches it (or
///   [`resume_with_backoff`](Self::resume_with_backoff), which retries).
/// - **Lifecycle:** a [`ClientListener`](crate::ClientListener) in the
///   options, and [`lifecycle`](Self::lifecycle) streams.
///
/// When the last handle is dropped, the task logs out (if a session is in
/// progress), closes the connection and ends.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Endpoint,
    connect: ConnectOptions,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    events: Mutex<Option<Events>>,
}

impl Client {
    /// Connects to `url`: `tcp://host:port`, `tls://host:port`,
    /// `ws://host:port/path` or `wss://host:port/path` (the path defaults
    /// to `/session`). `on_connected` fires before this returns.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Self, ConnectError> {
        let endpoint = Endpoint::parse(url)?;
        let connect = options.connect_options();
        let transport = session_transport::connect_to(&endpoint, &connect).await?;
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(options.listener.clone()));
        let timings = Timings {
            request_timeout: options.request_timeout,
            write_timeout: options.write_timeout,
            close_linger: options.close_linger,
        };
        let mut driver = Driver::new(
            options.core_config(),
            transport,
            shared.clone(),
            events_tx,
            timings,
        );
        driver.start().await;
        tokio::spawn(driver.run(commands_rx));
        let acks = (options.ack == AckPolicy::OnTake).then(|| commands.downgrade());
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                connect,
                commands,
                shared,
                events: Mutex::new(Some(Events::new(events_rx, acks))),
            }),
        })
    }

    /// Logs in over the current connection and waits for the answer;
    /// `on_online` fires before this returns.
    ///
    /// A rejected login closes the connection (as the server does): call
    /// [`reconnect`](Self::reconnect) before trying again.
    pub async fn login(&self, credentials: Credentials) -> Result<OnlineInfo, LoginError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Login { credentials, reply })
            .map_err(|()| LoginError::Terminated)?;
        answer.await.unwrap_or(Err(LoginError::Terminated))
    }

    /// Sends a request and waits for its response, at most
    /// [`ClientOptions::request_timeout`].
    ///
    /// Many requests may be in flight at once; they are sent in the order
    /// of the calls. Beyond the window the server announced at login, they
    /// wait for a free slot. While the session is suspended they wait, and
    /// go out after the resume, with every request still unanswered; the
    /// server executes each request once, even when it is sent again. If
    /// the session ends first, the request fails at once with
    /// [`RequestError::SessionClosed`] and the reason.
    pub async fn request(&self, body: impl Into<Bytes>) -> Result<Bytes, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Request {
            body: body.into(),
            reply,
        })
        .map_err(|()| RequestError::Terminated)?;
        answer.await.unwrap_or(Err(RequestError::Terminated))
    }

    /// Like [`request`](Self::request), but gives up with
    /// [`RequestError::TimedOut`] after `timeout` if that comes before
    /// [`ClientOptions::request_timeout`].
    ///
    /// This deadline is kept here, not by the session: a request given up
    /// on this way still counts against the server's window until it is
    /// answered or `request_timeout` passes, and the server may still
    /// execute it.
    pub async fn request_with_timeout(
        &self,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        tokio::time::timeout(timeout, self.request(body))
            .await
            .unwrap_or(Err(RequestError::TimedOut))
    }

    /// The stream of pushed events. There is one per client: the first call
    /// takes it, later calls return `None`. Events that arrive before it is
    /// taken wait in it. See [`AckPolicy`] for when they are acknowledged.
    pub fn take_events(&self) -> Option<Events> {
        lock(&self.inner.events).take()
    }

    /// Acknowledges `event` and every event before it, under
    /// [`AckPolicy::Manual`] (under [`AckPolicy::OnTake`] taking the event
    /// already did). Has no effect on an event of an earlier session.
    pub fn ack(&self, event: &Event) {
        let _ = self.send(Command::Ack {
            session_id: event.session_id,
            seq: event.seq,
        });
    }

    /// Logs out: sends the logout, flushes, closes the connection, and
    /// returns once it is closed. `on_offline` fires with
    /// [`CloseReason::LoggedOut`](session_core::CloseReason::LoggedOut) and
    /// pending requests fail with it. A suspended session just ends here
    /// (there is no connection to tell the server).
    pub async fn logout(&self) -> Result<(), LogoutError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Logout { reply })
            .map_err(|()| LogoutError::Terminated)?;
        answer.await.unwrap_or(Err(LogoutError::Terminated))
    }

    /// Resumes the suspended session: connects again to the same URL with
    /// the same options, and asks the server to re-attach the session.
    /// Every event the client missed then arrives, once and in order, and
    /// requests still unanswered are sent again (and executed once).
    ///
    /// On [`ResumeError::is_retryable`] errors the session is still
    /// suspended and a later attempt may succeed: the server could not be
    /// reached, did not answer, closed the connection before answering
    /// ([`ResumeError::Closed`], e.g. shutting down, with a
    /// [`retry_after`](ResumeError::retry_after) hint), or refused for now
    /// ([`ResumeError::Rejected`], e.g. `RATE_LIMITED`). On
    /// [`ResumeError::SessionEnded`] it is over and `on_offline` fired.
    pub async fn resume(&self) -> Result<OnlineInfo, ResumeError> {
        let status = lock(&self.inner.shared.status).clone();
        match (status.state, status.close_reason) {
            (ClientState::Suspended, _) => {}
            (ClientState::Closed, Some(reason)) => return Err(ResumeError::SessionEnded(reason)),
            _ => return Err(ResumeError::NotSuspended),
        }
        let transport = self.open().await.map_err(ResumeError::Connect)?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Attach {
            transport,
            purpose: Attach::Resume(reply),
        })
        .map_err(|()| ResumeError::Terminated)?;
        answer.await.unwrap_or(Err(ResumeError::Terminated))
    }

    /// Calls [`resume`](Self::resume) until it succeeds, fails for good,
    /// or `policy` allows no more attempts, waiting between attempts as
    /// `policy` says, and at least as long as the server asked (a close
    /// signal's `retry_after`, up to the policy's `max`; see
    /// [`RetryPolicy::delay_with_hint`]). Returns the last error.
    pub async fn resume_with_backoff(
        &self,
        policy: &RetryPolicy,
    ) -> Result<OnlineInfo, ResumeError> {
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            match self.resume().await {
                Err(error) if error.is_retryable() && policy.allows_after(attempt) => {
                    let wait = policy.delay_with_hint(attempt - 1, random(), error.retry_after());
                    tracing::debug!(%error, attempt, ?wait, "resume failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }

    /// Opens a new connection to the same URL, for a new
    /// [`login`](Self::login) after a session ended or a login failed.
    /// A suspended session must be resumed (or logged out of) instead.
    pub async fn reconnect(&self) -> Result<(), ConnectError> {
        let status = lock(&self.inner.shared.status).clone();
        match status.state {
            ClientState::Suspended | ClientState::Resuming => {
                return Err(ConnectError::SessionSuspended);
            }
            ClientState::Connected | ClientState::LoggingIn | ClientState::Online => {
                return Err(ConnectError::AlreadyConnected);
            }
            _ => {}
        }
        let transport = self.open().await?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Attach {
            transport,
            purpose: Attach::Reconnect(reply),
        })
        .map_err(|()| ConnectError::Terminated)?;
        answer.await.unwrap_or(Err(ConnectError::Terminated))
    }

    /// Drops the connection as a network failure would, without logging
    /// out: an online session is then suspended, to be resumed. Useful to
    /// test an application's resume path, or to give up a connection known
    /// to be dead. Returns once the change is reported.
    pub async fn drop_connection(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::DropConnection { reply }).is_ok() {
            let _ = answer.await;
        }
    }

    /// The lifecycle changes from now on, as a stream (each subscriber gets
    /// every change once). The first `Connected` happened inside
    /// [`connect`](Self::connect), so only a listener set in the options
    /// sees it.
    pub fn lifecycle(&self) -> LifecycleStream {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.shared.subscribers).push(tx);
        LifecycleStream::new(rx)
    }

    /// The current state, network and session layers together.
    pub fn state(&self) -> ClientState {
        lock(&self.inner.shared.status).state
    }

    /// The id of the current (or last) session.
    pub fn session_id(&self) -> Option<SessionId> {
        lock(&self.inner.shared.status).session_id
    }

    /// Where the client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    async fn open(&self) -> Result<Transport, session_transport::TransportError> {
        session_transport::connect_to(&self.inner.endpoint, &self.inner.connect).await
    }

    fn send(&self, command: Command) -> Result<(), ()> {
        self.inner.commands.send(command).map_err(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_streams_can_move_between_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        fn send<T: Send + 'static>() {}
        send_sync::<Client>();
        send::<Events>();
        send::<LifecycleStream>();
        send_sync::<ClientOptions>();
    }
}
