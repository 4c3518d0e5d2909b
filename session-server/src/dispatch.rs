//! The dispatcher: hands each session's core events to the backend, in
//! order (listener callbacks, request handler tasks, lifecycle subscribers).

use std::cell::Cell;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use session_core::ServerEvent;
use tokio::sync::Notify;
use tracing::{debug, info};

use crate::api::{RequestHandler, SessionListener};
use crate::handle::{LifecycleEvent, LifecycleKind, ServerHandle};
use crate::registry::{Dispatch, lock};

/// One dispatcher's queue: the events of its sessions in the order the
/// sessions made them (each is pushed under its session's lock), and the
/// wake-up of the task that takes them.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    queue: Mutex<Vec<Dispatch>>,
    ready: Notify,
}

thread_local! {
    /// On a thread that defers its wake-ups (a reactor): the shards it
    /// queued events for since it last flushed them, a bit each.
    static DEFERRED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Events a dispatcher hands on before it lets other tasks run.
const YIELD_EVERY: usize = 128;

/// Room for events a dispatcher keeps between batches.
const KEPT_CAPACITY: usize = 1024;

/// The most shards a server has: one bit each in [`DEFERRED`].
pub(crate) const MAX_SHARDS: usize = 64;

impl Shard {
    /// Queues an event of shard `index`, and wakes its dispatcher if the
    /// queue was empty (otherwise the first event's wake-up is on its way).
    ///
    /// On a thread that defers wake-ups, the wake-up for an event that is
    /// not `urgent` waits for the thread's next [`flush_wakeups`]; an urgent
    /// one (a request: someone waits for its answer) goes at once, and takes
    /// this thread's deferred wake-up of the shard with it.
    pub(crate) fn push(&self, index: usize, dispatch: Dispatch, urgent: bool) {
        let first = {
            let mut queue = lock(&self.queue);
            queue.push(dispatch);
            queue.len() == 1
        };
        let bit = 1 << index;
        let wake = DEFERRED.with(|deferred| match deferred.get() {
            None => first,
            Some(shards) if urgent => {
                deferred.set(Some(shards & !bit));
                first || shards & bit != 0
            }
            Some(shards) => {
                if first {
                    deferred.set(Some(shards | bit));
                }
                false
            }
        });
        if wake {
            self.ready.notify_one();
        }
    }
}

/// Makes the calling thread defer the wake-ups of the dispatchers it queues
/// events for until it calls [`flush_wakeups`]. A reactor does: a turn that
/// opens a hundred sessions wakes each dispatcher once, not a hundred
/// times, and events arrive at most one turn later.
pub(crate) fn defer_wakeups() {
    DEFERRED.set(Some(0));
}

/// Wakes the dispatchers the calling thread deferred wake-ups for.
pub(crate) fn flush_wakeups(shards: &[Shard]) {
    let mut pending = DEFERRED.replace(Some(0)).unwrap_or(0);
    while pending != 0 {
        let index = pending.trailing_zeros() as usize;
        pending &= pending - 1;
        shards[index].ready.notify_one();
    }
}

/// Runs for the life of the runtime. One dispatcher serves a shard of the
/// sessions; a session always goes to the same shard, so its callbacks
/// never run concurrently or out of order. It takes its queue whole, a
/// batch per lock.
///
/// A request's handler is polled once right here: if it answers without
/// waiting, no task is spawned for it (most of the cost of a quick
/// request); otherwise it continues on a task of its own, so a slow
/// handler never holds up the shard.
pub(crate) async fn run<L: SessionListener, H: RequestHandler>(
    index: usize,
    listener: Arc<L>,
    handler: Arc<H>,
    server: ServerHandle,
) {
    let shard = &server.shared.dispatch[index];
    let mut batch = Vec::new();
    loop {
        std::mem::swap(&mut batch, &mut *lock(&shard.queue));
        if batch.is_empty() {
            // A push after the swap stored a permit, if it came first.
            shard.ready.notified().await;
            continue;
        }
        for (done, dispatch) in batch.drain(..).enumerate() {
            handle(dispatch, &*listener, &handler, &server);
            // A long batch (ten thousand sessions detaching at once) lets
            // the worker's other tasks run now and then, as a channel's
            // cooperative budget would.
            if done % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
        if batch.capacity() > KEPT_CAPACITY {
            // A burst's room goes back once it is handled.
            batch = Vec::new();
        }
    }
}

/// Hands one event to the backend.
fn handle<L: SessionListener, H: RequestHandler>(
    Dispatch { cell, event }: Dispatch,
    listener: &L,
    handler: &Arc<H>,
    server: &ServerHandle,
) {
    {
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
                return;
            }
            ServerEvent::Opened { .. } => {
                info!(session = %session.id, user = %session.user_id, device = %session.device, remote = %session.remote_addr, "session opened");
                listener.on_open(session, server);
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
            ServerEvent::LoginRequested(_) => return,
            _ => return,
        };
        // Nobody may be subscribed: that is fine.
        let _ = server.shared.lifecycle.send(LifecycleEvent {
            session: session.clone(),
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Waker};
    use std::time::Instant;

    use session_core::{ServerConfig, ServerEvent, ServerSession, SessionId};

    use super::{Shard, defer_wakeups, flush_wakeups};
    use crate::api::SessionInfo;
    use crate::registry::{CellState, Dispatch, SessionCell};

    fn event(urgent: bool) -> Dispatch {
        let session = ServerSession::new(Instant::now(), Arc::new(ServerConfig::default()));
        let cell = Arc::new(SessionCell {
            info: SessionInfo {
                id: SessionId(7),
                user_id: "u".into(),
                device: "d".into(),
                remote_addr: "127.0.0.1:1".parse().unwrap(),
            },
            state: Mutex::new(CellState::new(session, 0)),
        });
        let event = if urgent {
            ServerEvent::Request {
                id: 1,
                body: Default::default(),
            }
        } else {
            ServerEvent::Detached
        };
        Dispatch { cell, event }
    }

    /// Whether the shard's dispatcher would wake now: a permit is stored.
    fn woken(shard: &Shard) -> bool {
        let notified = pin!(shard.ready.notified());
        notified
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    fn queued(shard: &Shard) -> usize {
        shard.queue.lock().unwrap().len()
    }

    #[test]
    fn a_thread_that_does_not_defer_wakes_the_dispatcher_once_per_empty_queue() {
        let shard = Shard::default();
        shard.push(0, event(false), false);
        shard.push(0, event(false), false);
        assert_eq!(queued(&shard), 2);
        assert!(woken(&shard));
        // The second event found the first's wake-up on its way.
        assert!(!woken(&shard));
    }

    #[test]
    fn a_deferring_thread_wakes_each_dispatcher_once_when_it_flushes() {
        // Each test runs on a thread of its own: the deferral is this one's.
        defer_wakeups();
        let shards = [Shard::default(), Shard::default(), Shard::default()];
        for _ in 0..3 {
            shards[0].push(0, event(false), false);
        }
        shards[2].push(2, event(false), false);
        assert!(shards.iter().all(|shard| !woken(shard)));
        flush_wakeups(&shards);
        assert!(woken(&shards[0]));
        assert!(!woken(&shards[1]));
        assert!(woken(&shards[2]));
        // Nothing is left to flush.
        flush_wakeups(&shards);
        assert!(shards.iter().all(|shard| !woken(shard)));
        assert_eq!(queued(&shards[0]), 3);
    }

    #[test]
    fn a_request_is_not_held_back_by_a_deferred_wake_up() {
        defer_wakeups();
        let shards = [Shard::default()];
        shards[0].push(0, event(false), false);
        assert!(!woken(&shards[0]));
        // The request queues behind the deferred event, and wakes the
        // dispatcher for both at once.
        shards[0].push(0, event(true), true);
        assert!(woken(&shards[0]));
        // Its wake-up took the deferred one's place.
        flush_wakeups(&shards);
        assert!(!woken(&shards[0]));
        assert_eq!(queued(&shards[0]), 2);
    }
}
