//! The sessions of one server: who is online, the state each session's core
//! is in, and the one way to touch that state (`Shared::with_session`), which
//! forwards the core's events to the dispatcher in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use session_core::{ServerConfig, ServerEvent, ServerSession, ServerState, SessionId};
use tokio::sync::{Notify, broadcast, watch};

use crate::api::SessionInfo;
use crate::dispatch::Shard;
use crate::handle::LifecycleEvent;
use crate::limits::Limiter;
use crate::options::ServerOptions;
use crate::reactor::ReactorHandle;

/// One open (or detached) session.
#[derive(Debug)]
pub(crate) struct SessionCell {
    pub(crate) info: SessionInfo,
    pub(crate) state: Mutex<CellState>,
}

/// The state behind a cell's lock. Never held across an `.await`.
#[derive(Debug)]
pub(crate) struct CellState {
    pub(crate) session: ServerSession,
    /// Which connection is attached (0: none). A connection task that finds
    /// another number here was replaced by a resume and leaves quietly.
    pub(crate) attachment: u64,
    /// The reactor slot driving the attached connection, if a reactor does
    /// (otherwise a task or the detached watchdog waits on `waiters`).
    pub(crate) driver: Option<Driver>,
    /// Wakes the tasks that wait on this session: an attached connection's
    /// task (to write new output), one a resume replaced (to leave), a
    /// detached session's watchdog. Made by the first of them, so a session
    /// a reactor drives carries no `Notify`.
    waiters: Option<Arc<Notify>>,
}

/// Whom a change to a session wakes.
enum Wake {
    Reactor(Driver),
    Tasks(Arc<Notify>),
    Nobody,
}

/// Where a reactor-driven connection lives (8 bytes, `None` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Driver {
    pub(crate) reactor: u16,
    /// A wake-up is already on its way (or the reactor is about to look at
    /// the session anyway): later changes need not send another.
    pub(crate) woken: bool,
    pub(crate) slot: u32,
}

impl CellState {
    pub(crate) fn new(session: ServerSession, attachment: u64) -> Self {
        Self {
            session,
            attachment,
            driver: None,
            waiters: None,
        }
    }

    /// What a task waits on for changes to this session: it must take it
    /// under the lock, before it looks at the session, so that no change
    /// after the look goes unnoticed (a `notify_one` permit covers a task
    /// that has not started waiting yet).
    pub(crate) fn waiters(&mut self) -> Arc<Notify> {
        self.waiters.get_or_insert_with(Default::default).clone()
    }

    /// Records whether the reactor driving the session (if one does) has a
    /// wake-up on its way or looks at the session anyway.
    pub(crate) fn set_woken(&mut self, woken: bool) {
        if let Some(driver) = &mut self.driver {
            driver.woken = woken;
        }
    }
}

/// A core event on its way to the backend.
#[derive(Debug)]
pub(crate) struct Dispatch {
    pub(crate) cell: Arc<SessionCell>,
    pub(crate) event: ServerEvent,
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<SessionId, Arc<SessionCell>>,
    by_user: HashMap<Arc<str>, UserSessions>,
}

/// The sessions of one user: most users have one, which needs no list
/// (and the list is boxed, so that the table's entries stay small).
#[derive(Debug)]
enum UserSessions {
    One(Arc<SessionCell>),
    // Reason: the box keeps this enum at 16 bytes in every entry of the
    // users' table; the extra allocation is paid only by users with several
    // sessions.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Arc<SessionCell>>>),
}

impl UserSessions {
    fn push(&mut self, cell: Arc<SessionCell>) {
        match self {
            Self::One(first) => *self = Self::Many(Box::new(vec![first.clone(), cell])),
            Self::Many(list) => list.push(cell),
        }
    }

    /// Removes `cell`; true if no session is left.
    fn remove(&mut self, cell: &Arc<SessionCell>) -> bool {
        match self {
            Self::One(only) => Arc::ptr_eq(only, cell),
            Self::Many(list) => {
                list.retain(|c| !Arc::ptr_eq(c, cell));
                match list.as_slice() {
                    [] => true,
                    [only] => {
                        *self = Self::One(only.clone());
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    fn to_vec(&self) -> Vec<Arc<SessionCell>> {
        match self {
            Self::One(only) => vec![only.clone()],
            Self::Many(list) => list.to_vec(),
        }
    }
}

/// What every task of a server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: ServerOptions,
    pub(crate) core: Arc<ServerConfig>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) lifecycle: broadcast::Sender<LifecycleEvent>,
    /// Flips to true when a graceful shutdown starts.
    pub(crate) shutdown: watch::Sender<bool>,
    sessions: Mutex<Sessions>,
    /// Device names seen, shared by every session on such a device.
    devices: Mutex<HashSet<Arc<str>>>,
    /// The dispatchers' queues.
    pub(crate) dispatch: Vec<Shard>,
    /// The reactors that drive TCP and WebSocket sessions (none: a task each).
    pub(crate) reactors: Vec<ReactorHandle>,
    next_attachment: AtomicU64,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // State under these locks is only changed by code that does not panic
    // midway; after a panic elsewhere, keep serving the other sessions.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionCell {
    pub(crate) fn lock(&self) -> MutexGuard<'_, CellState> {
        lock(&self.state)
    }
}

impl Shared {
    pub(crate) fn new(
        options: ServerOptions,
        limiter: Arc<Limiter>,
        dispatch: Vec<Shard>,
        reactors: Vec<ReactorHandle>,
    ) -> Self {
        let mut core = options.core.clone();
        if core.wall_clock.is_none() {
            core.wall_clock = Some(crate::clock::wall_clock());
        }
        Self {
            core: Arc::new(core),
            options,
            limiter,
            lifecycle: broadcast::channel(1024).0,
            shutdown: watch::channel(false).0,
            sessions: Mutex::new(Sessions::default()),
            devices: Mutex::new(HashSet::new()),
            dispatch,
            reactors,
            next_attachment: AtomicU64::new(1),
        }
    }

    /// The device name as a shared string: a handful of device kinds serve
    /// every session, so each session need not keep a copy. Clients choose
    /// the names, so only the first few are kept.
    pub(crate) fn device(&self, device: String) -> Arc<str> {
        const KEPT: usize = 256;
        let mut devices = lock(&self.devices);
        if let Some(known) = devices.get(device.as_str()) {
            return known.clone();
        }
        let device: Arc<str> = device.into();
        if devices.len() < KEPT {
            devices.insert(device.clone());
        }
        device
    }

    pub(crate) fn new_attachment(&self) -> u64 {
        self.next_attachment.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `f` on the session under its lock, then forwards the core's
    /// events (in order, before the lock is released; a closed session is
    /// forgotten before its `Closed` goes out, so whoever hears of the close
    /// no longer finds the session), and wakes the session's driver.
    pub(crate) fn with_session<R>(
        &self,
        cell: &Arc<SessionCell>,
        f: impl FnOnce(&mut CellState) -> R,
    ) -> R {
        let (result, wake) = {
            let mut state = cell.lock();
            let result = f(&mut state);
            self.forward_events(cell, &mut state.session);
            let wake = match &mut state.driver {
                // A reactor drives the session: one wake-up until it looks.
                Some(driver) if !driver.woken => {
                    driver.woken = true;
                    Wake::Reactor(*driver)
                }
                Some(_) => Wake::Nobody,
                None => state.waiters.clone().map_or(Wake::Nobody, Wake::Tasks),
            };
            (result, wake)
        };
        match wake {
            Wake::Reactor(driver) => self.reactors[driver.reactor as usize].wake(driver.slot),
            Wake::Nobody => {}
            // Every waiter (an attached connection, a replaced one, a
            // detached session's watchdog) re-checks the cell; the stored
            // permit covers a waiter about to register.
            Wake::Tasks(waiters) => {
                waiters.notify_waiters();
                waiters.notify_one();
            }
        }
        result
    }

    /// Sends the core's pending events to the session's dispatcher, and
    /// takes a closed session out of the registry before its `Closed` goes
    /// (the core emits nothing after it). Called under the cell's lock; the
    /// registry's lock nests inside it, never the other way round.
    fn forward_events(&self, cell: &Arc<SessionCell>, session: &mut ServerSession) {
        while let Some(event) = session.poll_event() {
            if matches!(event, ServerEvent::Closed { .. }) {
                self.forget(cell);
            }
            let shard = (cell.info.id.0 % self.dispatch.len() as u64) as usize;
            let urgent = matches!(event, ServerEvent::Request { .. });
            let dispatch = Dispatch {
                cell: cell.clone(),
                event,
            };
            self.dispatch[shard].push(shard, dispatch, urgent);
        }
    }

    /// Files a newly opened session.
    pub(crate) fn insert(&self, cell: Arc<SessionCell>) {
        let mut sessions = lock(&self.sessions);
        match sessions.by_user.entry(cell.info.user_id.clone()) {
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                entry.get_mut().push(cell.clone());
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(UserSessions::One(cell.clone()));
            }
        }
        sessions.by_id.insert(cell.info.id, cell);
    }

    fn forget(&self, cell: &Arc<SessionCell>) {
        let mut sessions = lock(&self.sessions);
        if sessions
            .by_id
            .get(&cell.info.id)
            .is_some_and(|c| Arc::ptr_eq(c, cell))
        {
            sessions.by_id.remove(&cell.info.id);
        }
        if let Some(list) = sessions.by_user.get_mut(&cell.info.user_id) {
            if list.remove(cell) {
                sessions.by_user.remove(&cell.info.user_id);
            }
        }
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<Arc<SessionCell>> {
        lock(&self.sessions).by_id.get(&id).cloned()
    }

    /// The live (open or detached) sessions of `user`.
    pub(crate) fn of_user(&self, user: &str) -> Vec<Arc<SessionCell>> {
        lock(&self.sessions)
            .by_user
            .get(user)
            .map(UserSessions::to_vec)
            .unwrap_or_default()
    }

    /// The live sessions of `user` on `device`.
    pub(crate) fn of_user_device(&self, user: &str, device: &str) -> Vec<Arc<SessionCell>> {
        let mut cells = self.of_user(user);
        cells.retain(|c| &*c.info.device == device);
        cells.retain(|c| {
            matches!(
                c.lock().session.state(),
                ServerState::Open | ServerState::Detached
            )
        });
        cells
    }

    pub(crate) fn all(&self) -> Vec<Arc<SessionCell>> {
        lock(&self.sessions).by_id.values().cloned().collect()
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.sessions).by_id.len()
    }
}
