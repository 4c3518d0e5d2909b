//! The dispatcher: hands each session's core events to the backend, in
//! order (listener callbacks, request handler tasks, lifecycle subscribers).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Waker};

use session_core::ServerEvent;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::api::{RequestHandler, SessionListener};
use crate::handle::{LifecycleEvent, LifecycleKind, ServerHandle};
use crate::registry::Dispatch;

/// Runs until every sender is gone. One dispatcher serves a shard of the
/// sessions; a session always goes to the same shard, so its callbacks
/// never run concurrently or out of order.
///
/// A request's handler is polled once right here: if it answers without
/// waiting, no task is spawned for it (most of the cost of a quick
/// request); otherwise it continues on a task of its own, so a slow
/// handler never holds up the shard.
pub(crate) async fn run<L: SessionListener, H: RequestHandler>(
    mut events: mpsc::UnboundedReceiver<Dispatch>,
    listener: Arc<L>,
    handler: Arc<H>,
    server: ServerHandle,
) {
    while let Some(Dispatch { cell, event }) = events.recv().await {
        let session = &cell.info;
        let kind = match event {
            ServerEvent::Request { id, body } => {
                let (handler, server, cell) = (handler.clone(), server.clone(), cell.clone());
                let mut answer = Box::pin(async move {
                    let result = handler.handle(&cell.info, body, &server).await;
                    server.shared.with_session(&cell, |state| {
                        // Refused only if the session closed meanwhile.
                        let _ = state.session.respond(id, result);
                    });
                });
                // A handler that answers without waiting (an echo, a relay)
                // answers here; one that waits gets a task, whose first
                // poll registers the real waker.
                let mut cx = Context::from_waker(Waker::noop());
                if answer.as_mut().poll(&mut cx).is_pending() {
                    tokio::spawn(answer);
                }
                continue;
            }
            ServerEvent::Opened { .. } => {
                info!(session = %session.id, user = %session.user_id, device = %session.device, remote = %session.remote_addr, "session opened");
                listener.on_open(session, &server);
                LifecycleKind::Opened
            }
            ServerEvent::Detached => {
                debug!(session = %session.id, "session detached");
                LifecycleKind::Detached
            }
            ServerEvent::Resumed => {
                info!(session = %session.id, "session resumed");
                LifecycleKind::Resumed
            }
            ServerEvent::Expired => {
                listener.on_expire(session);
                LifecycleKind::Expired
            }
            ServerEvent::Closed { code, reason } => {
                info!(session = %session.id, user = %session.user_id, %code, reason = %reason, "session closed");
                listener.on_close(session, code, &reason);
                LifecycleKind::Closed { code, reason }
            }
            // Only a connection that has not logged in asks for a login; such
            // sessions are not filed and never reach the dispatcher.
            ServerEvent::LoginRequested(_) => continue,
            _ => continue,
        };
        // Nobody may be subscribed: that is fine.
        let _ = server.shared.lifecycle.send(LifecycleEvent {
            session: session.clone(),
            kind,
        });
    }
}
