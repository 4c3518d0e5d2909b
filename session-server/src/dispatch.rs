//! The dispatcher: hands each session's core events to the backend, in
//! order (listener callbacks, request handler tasks, lifecycle subscribers).
//! A reactor answers some requests itself (see [`Shard::push`]).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use bytes::Bytes;
use futures_util::FutureExt;
use session_core::{ErrorCode, ResponseError, ServerEvent};
use tokio::sync::Notify;
use tracing::{debug, error, info};

use crate::api::{RequestHandler, SessionInfo, SessionListener};
use crate::handle::{LifecycleEvent, LifecycleKind, ServerHandle};
use crate::registry::{Dispatch, SessionCell, lock};

/// One dispatcher's queue: the events of its sessions in the order the
/// sessions made them (each is pushed under its session's lock), and the
/// wake-up of the task that takes them.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    queue: Mutex<Vec<Dispatch>>,
    ready: Notify,
    /// Events queued and not yet handled.
    pending: AtomicUsize,
}

thread_local! {
    /// On a thread that defers its wake-ups (a reactor): the shards it
    /// queued events for since it last flushed them, a bit each.
    static DEFERRED: Cell<Option<u64>> = const { Cell::new(None) };

    /// On a thread that defers its wake-ups: requests set aside to be
    /// answered on this thread ([`take_inline`]) instead of queued.
    static INLINE: RefCell<Vec<Dispatch>> = const { RefCell::new(Vec::new()) };
}

/// Events a dispatcher hands on before it lets other tasks run.
const YIELD_EVERY: usize = 128;

/// Room for events a dispatcher keeps between batches.
const KEPT_CAPACITY: usize = 1024;

/// The most shards a server has: one bit each in [`DEFERRED`].
pub(crate) const MAX_SHARDS: usize = 64;

impl Shard {
    /// Queues an event of shard `index`, and wakes its dispatcher if the
    /// queue was empty (otherwise the first event's wake-up is on its way);
    /// or, on a reactor, sets a request aside for the reactor to answer.
    ///
    /// On a thread that defers wake-ups, the wake-up for an event that is
    /// not `urgent` waits for the thread's next [`flush_wakeups`]; an urgent
    /// one (a request: someone waits for its answer) goes at once, and takes
    /// this thread's deferred wake-up of the shard with it.
    pub(crate) fn push(&self, index: usize, dispatch: Dispatch, urgent: bool) {
        let deferring = DEFERRED.get().is_some();
        if deferring {
            // A request whose shard has nothing queued or in hand is
            // answered on this thread once the session's lock is released
            // (`take_inline`): every event its session made before it has
            // been handled, so it cannot overtake one.
            if urgent && self.pending.load(Ordering::Acquire) == 0 {
                INLINE.with_borrow_mut(|inline| inline.push(dispatch));
                return;
            }
            // Requests set aside by this change to the session go first,
            // to keep the session's order.
            let set_aside = INLINE.with_borrow_mut(std::mem::take);
            for earlier in set_aside {
                debug_assert!(Arc::ptr_eq(&earlier.cell, &dispatch.cell));
                self.enqueue(index, earlier, true);
            }
        }
        self.enqueue(index, dispatch, urgent);
    }

    fn enqueue(&self, index: usize, dispatch: Dispatch, urgent: bool) {
        self.pending.fetch_add(1, Ordering::AcqRel);
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
            shard.pending.fetch_sub(1, Ordering::AcqRel);
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

/// A request's answer on its way, after its first poll.
pub(crate) type Waiting = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the handler of request `id` and responds: a handler that answers
/// without waiting (an echo, a relay) answers here; one that waits is
/// returned, for the caller to spawn as a task (whose first poll registers
/// the real waker).
pub(crate) fn answer<H: RequestHandler>(
    cell: Arc<SessionCell>,
    id: u64,
    body: Bytes,
    handler: &Arc<H>,
    server: &ServerHandle,
) -> Option<Waiting> {
    let (handler, server) = (handler.clone(), server.clone());
    let mut answer: Waiting = Box::pin(async move {
        // A handler that panics fails its request, not the thread that
        // polls it (a reactor, a dispatcher or a task of its own). The call
        // to `handle` runs inside the guard too: a handler may panic before
        // it returns its future (synchronous code ahead of an `async`
        // block).
        let handled = AssertUnwindSafe(async { handler.handle(&cell.info, body, &server).await })
            .catch_unwind()
            .await;
        let result = handled.unwrap_or_else(|_| {
            error!(session = %cell.info.id, request = id, "the request handler panicked");
            Err(ResponseError {
                code: ErrorCode::Internal,
                message: "the handler failed".into(),
            })
        });
        server.shared.with_session(&cell, |state| {
            // Refused only if the session closed meanwhile.
            let _ = state.session.respond(id, result);
        });
    });
    let mut cx = Context::from_waker(Waker::noop());
    answer.as_mut().poll(&mut cx).is_pending().then_some(answer)
}

/// Answers a request on a reactor: [`answer`] with the server's handler.
pub(crate) type Answer = Arc<dyn Fn(Arc<SessionCell>, u64, Bytes) -> Option<Waiting> + Send + Sync>;

/// Takes the requests this thread set aside to answer itself (see
/// [`Shard::push`]); call it right after the change to the session that
/// made them, with the session's lock released.
pub(crate) fn take_inline() -> Vec<Dispatch> {
    INLINE.with_borrow_mut(std::mem::take)
}

/// Hands one event to the backend.
fn handle<L: SessionListener, H: RequestHandler>(
    Dispatch { cell, event }: Dispatch,
    listener: &L,
    handler: &Arc<H>,
    server: &ServerHandle,
) {
    let session = &cell.info;
    let kind = match event {
        ServerEvent::Request { id, body } => {
            if let Some(waiting) = answer(cell, id, body, handler, server) {
                tokio::spawn(waiting);
            }
            return;
        }
        ServerEvent::Opened { .. } => {
            info!(session = %session.id, user = %PeerText(&session.user_id), device = %PeerText(&session.device), remote = %session.remote_addr, "session opened");
            guarded("on_open", session, || listener.on_open(session, server));
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
            guarded("on_expire", session, || listener.on_expire(session));
            LifecycleKind::Expired
        }
        ServerEvent::Closed { code, reason } => {
            // A logout's reason is the client's, up to a frame long.
            info!(session = %session.id, user = %PeerText(&session.user_id), %code, reason = %PeerText(&reason), "session closed");
            guarded("on_close", session, || {
                listener.on_close(session, code, &reason);
            });
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

/// The most characters of a peer's string that go into a log line.
const LOGGED_CHARS: usize = 128;

/// A string a peer chose (a user id, a device name, a logout's reason), as
/// it goes into a log line: its first [`LOGGED_CHARS`] characters, escaped
/// as `Debug` escapes a string and in quotes, then, if it was longer, its
/// length in bytes. So a peer can neither flood the log (a reason may be
/// as long as a frame, 1 MiB) nor forge lines or terminal colours in it (a
/// newline shows as `\n`, an escape character as `\u{1b}`).
pub(crate) struct PeerText<'a>(pub(crate) &'a str);

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(LOGGED_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// Runs the listener's `callback` for `session`. A panic in it is logged
/// and goes no further: the dispatcher serves its other sessions, and this
/// session's lifecycle goes on as if the callback had returned (its
/// subscribers hear of the event, `on_close` follows `on_expire`).
fn guarded(callback: &'static str, session: &SessionInfo, run: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(run)).is_err() {
        error!(session = %session.id, callback, "the session listener panicked");
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Waker};

    use session_core::ServerEvent;

    use super::{LOGGED_CHARS, PeerText, Shard, defer_wakeups, flush_wakeups, take_inline};
    use crate::registry::{Dispatch, SessionCell};

    fn event(urgent: bool) -> Dispatch {
        let cell = SessionCell::for_test(7, "u");
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
    fn a_reactor_sets_a_request_aside_only_while_its_shard_is_idle() {
        defer_wakeups();
        let shards = [Shard::default()];
        let request = event(true);
        let cell = request.cell.clone();
        // Nothing pending: the request is the reactor's to answer.
        shards[0].push(0, request, true);
        assert_eq!(queued(&shards[0]), 0);
        let taken = take_inline();
        assert_eq!(taken.len(), 1);
        assert!(take_inline().is_empty());

        // Set aside again, then an event of the same change to the session
        // that is not a request: both go to the queue, the request first.
        shards[0].push(
            0,
            Dispatch {
                cell: cell.clone(),
                ..event(true)
            },
            true,
        );
        shards[0].push(
            0,
            Dispatch {
                cell: cell.clone(),
                ..event(false)
            },
            false,
        );
        assert!(take_inline().is_empty());
        let queue = shards[0].queue.lock().unwrap();
        assert!(matches!(queue[0].event, ServerEvent::Request { .. }));
        assert!(matches!(queue[1].event, ServerEvent::Detached));
        drop(queue);

        // With events pending, a request queues behind them.
        shards[0].push(
            0,
            Dispatch {
                cell,
                ..event(true)
            },
            true,
        );
        assert!(take_inline().is_empty());
        assert_eq!(queued(&shards[0]), 3);
        assert_eq!(shards[0].pending.load(Ordering::Acquire), 3);
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

    #[test]
    fn a_peers_short_string_is_logged_whole_in_quotes() {
        assert_eq!(PeerText("alice").to_string(), r#""alice""#);
        assert_eq!(PeerText("").to_string(), r#""""#);
        let exact = "é".repeat(LOGGED_CHARS);
        assert_eq!(PeerText(&exact).to_string(), format!("{exact:?}"));
    }

    #[test]
    fn a_peers_string_cannot_forge_log_lines_or_colours() {
        let forged = "bye\n2026-01-01T00:00:00Z  INFO session closed\r\u{1b}[31mred\u{202e}";
        let logged = PeerText(forged).to_string();
        assert_eq!(
            logged,
            r#""bye\n2026-01-01T00:00:00Z  INFO session closed\r\u{1b}[31mred\u{202e}""#
        );
        assert!(!logged.contains(['\n', '\r', '\u{1b}', '\u{202e}']));
    }

    #[test]
    fn a_peers_long_string_is_cut_with_its_length_noted() {
        let reason = "x".repeat(1 << 20);
        assert_eq!(
            PeerText(&reason).to_string(),
            format!("\"{}\"... (1048576 bytes)", "x".repeat(LOGGED_CHARS))
        );
        // Cut on a character boundary: 129 two-byte characters.
        let accented = "é".repeat(LOGGED_CHARS + 1);
        assert_eq!(
            PeerText(&accented).to_string(),
            format!("\"{}\"... (258 bytes)", "é".repeat(LOGGED_CHARS))
        );
        // However it escapes, a frame's worth stays a few lines' worth.
        for c in ['\0', '\u{7f}', '\u{10ffff}', '"'] {
            let text = c.to_string().repeat(1 << 20);
            let logged = PeerText(&text).to_string();
            assert!(
                logged.len() <= LOGGED_CHARS * 10 + 32,
                "{c:?}: {}",
                logged.len()
            );
            assert!(logged.ends_with(&format!("... ({} bytes)", text.len())));
        }
    }
}
