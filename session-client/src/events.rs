//! Pushed events: `Event`, the `Events` stream, and when they are
//! acknowledged.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use session_core::SessionId;
use tokio::sync::mpsc;

use crate::driver::Command;

/// An event the server pushed to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Its sequence number in the session: contiguous from 1, never
    /// repeated, also across resumes.
    pub seq: u64,
    /// The application's payload.
    pub body: Bytes,
    /// The session it belongs to.
    pub session_id: SessionId,
}

/// When events are acknowledged to the server, which may then forget them.
///
/// Acknowledgements are cumulative (acknowledging event 7 acknowledges 1 to
/// 7) and coalesced: many events taken at once cost one small frame, and an
/// acknowledgement waits up to [`ClientOptions::ack_delay`](crate::ClientOptions::ack_delay)
/// (1 s) to cover later events too, unless half the server's buffer is in
/// use.
///
/// Whatever the policy, an event is delivered to the application exactly
/// once, in order, also across a resume: the resume tells the server the
/// last event the client *received*, and the server replays only what came
/// after. Acknowledgements bound the server's buffer: it keeps every event
/// not yet acknowledged (1024 events or 4 MiB by default) and ends the
/// session with `SLOW_CONSUMER` when that overflows. So an application that
/// stops taking events (with [`AckPolicy::OnTake`]) or stops acknowledging
/// them (with [`AckPolicy::Manual`]) is told, rather than events being
/// dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckPolicy {
    /// An event is acknowledged when the application takes it from
    /// [`Events`] (the default).
    #[default]
    OnTake,
    /// The application acknowledges with [`Client::ack`](crate::Client::ack),
    /// for instance once the event is stored.
    Manual,
}

/// The events pushed to the client, in order, as a [`Stream`]; from
/// [`Client::take_events`](crate::Client::take_events).
///
/// Events arriving before anyone reads wait here, so none is missed.
/// Events of every session of the client (after a logout and a new login)
/// come through the same stream; [`Event::session_id`] tells them apart.
/// Ends when the client's task has ended and every event was taken.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
    /// Where to send acknowledgements under [`AckPolicy::OnTake`]; weak, so
    /// that this stream alone does not keep the client alive.
    acks: Option<mpsc::WeakUnboundedSender<Command>>,
}

impl Events {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Event>,
        acks: Option<mpsc::WeakUnboundedSender<Command>>,
    ) -> Self {
        Self { rx, acks }
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let event = ready!(self.rx.poll_recv(cx));
        if let (Some(event), Some(acks)) = (&event, &self.acks) {
            if let Some(acks) = acks.upgrade() {
                let _ = acks.send(Command::Ack {
                    session_id: event.session_id,
                    seq: event.seq,
                });
            }
        }
        Poll::Ready(event)
    }
}
