//! The sessions of one server: who is online, the state each session's core
//! is in, and the one way to touch that state (`Shared::with_session`), which
//! forwards the core's events to the dispatcher in order.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
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

/// The registry's tables. Each entry is one pointer to a cell, hashed and
/// compared by what the cell holds (its id, its user's name): the tables
/// keep no copy of a key, so a session costs 8 bytes in each (plus the
/// tables' room to grow), against 16 and 32 bytes for maps keyed by copies
/// of the id and the name.
#[derive(Debug, Default)]
struct Sessions {
    by_id: HashSet<ById>,
    /// The oldest live session of each user.
    by_user: HashSet<ByUser>,
    /// The other sessions of users with several, oldest first (rare: most
    /// users have one session, which needs no list).
    more: HashMap<Arc<str>, Vec<Arc<SessionCell>>>,
}

/// A cell filed by its session's id.
#[derive(Debug)]
struct ById(Arc<SessionCell>);

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `SessionId` hashes, so that the table can be searched by id.
        self.0.info.id.hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.info.id == other.0.info.id
    }
}

impl Eq for ById {}

impl Borrow<SessionId> for ById {
    fn borrow(&self) -> &SessionId {
        &self.0.info.id
    }
}

/// A cell filed by its user's name.
#[derive(Debug)]
struct ByUser(Arc<SessionCell>);

impl Hash for ByUser {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that the table can be searched by name.
        self.0.info.user_id.hash(state);
    }
}

impl PartialEq for ByUser {
    fn eq(&self, other: &Self) -> bool {
        self.0.info.user_id == other.0.info.user_id
    }
}

impl Eq for ByUser {}

impl Borrow<str> for ByUser {
    fn borrow(&self) -> &str {
        &self.0.info.user_id
    }
}

impl Sessions {
    fn insert(&mut self, cell: Arc<SessionCell>) {
        if self.by_user.contains(&*cell.info.user_id) {
            self.more
                .entry(cell.info.user_id.clone())
                .or_default()
                .push(cell.clone());
        } else {
            self.by_user.insert(ByUser(cell.clone()));
        }
        // `replace`: a cell filed under the same id (none is, ids are
        // unique) would give way, as a map's `insert` would.
        self.by_id.replace(ById(cell));
    }

    fn remove(&mut self, cell: &Arc<SessionCell>) {
        if self
            .by_id
            .get(&cell.info.id)
            .is_some_and(|c| Arc::ptr_eq(&c.0, cell))
        {
            self.by_id.remove(&cell.info.id);
        }
        let user = &*cell.info.user_id;
        let first = self
            .by_user
            .get(user)
            .is_some_and(|c| Arc::ptr_eq(&c.0, cell));
        if first {
            self.by_user.remove(user);
        }
        // A list in `more` is never empty: it goes with its last cell.
        if let Some(others) = self.more.get_mut(user) {
            if first {
                // The next oldest takes its place.
                self.by_user.insert(ByUser(others.remove(0)));
            } else {
                others.retain(|c| !Arc::ptr_eq(c, cell));
            }
            if others.is_empty() {
                self.more.remove(user);
            }
        }
    }

    /// The live sessions of `user`, oldest first.
    fn of_user(&self, user: &str) -> Vec<Arc<SessionCell>> {
        let Some(first) = self.by_user.get(user) else {
            return Vec::new();
        };
        let others = self.more.get(user).map_or(&[][..], Vec::as_slice);
        let mut cells = Vec::with_capacity(1 + others.len());
        cells.push(first.0.clone());
        cells.extend(others.iter().cloned());
        cells
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

    /// A fresh, unattached session `id` of `user` on device `d`, for unit
    /// tests.
    #[cfg(test)]
    pub(crate) fn for_test(id: u64, user: &str) -> Arc<Self> {
        let session =
            ServerSession::new(std::time::Instant::now(), Arc::new(ServerConfig::default()));
        Arc::new(Self {
            info: SessionInfo {
                id: SessionId(id),
                user_id: user.into(),
                device: "d".into(),
                remote_addr: "127.0.0.1:1".parse().unwrap(),
            },
            state: Mutex::new(CellState::new(session, 0)),
        })
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
        lock(&self.sessions).insert(cell);
    }

    fn forget(&self, cell: &Arc<SessionCell>) {
        lock(&self.sessions).remove(cell);
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<Arc<SessionCell>> {
        lock(&self.sessions).by_id.get(&id).map(|c| c.0.clone())
    }

    /// The live (open or detached) sessions of `user`.
    pub(crate) fn of_user(&self, user: &str) -> Vec<Arc<SessionCell>> {
        lock(&self.sessions).of_user(user)
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
        lock(&self.sessions)
            .by_id
            .iter()
            .map(|c| c.0.clone())
            .collect()
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.sessions).by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(cells: &[Arc<SessionCell>]) -> Vec<u64> {
        cells.iter().map(|c| c.info.id.0).collect()
    }

    /// What the tables hold, in a form to compare: every cell by id, and
    /// every user's sessions in order.
    fn contents(sessions: &Sessions) -> (Vec<u64>, Vec<(String, Vec<u64>)>) {
        let mut by_id: Vec<u64> = sessions.by_id.iter().map(|c| c.0.info.id.0).collect();
        by_id.sort_unstable();
        let mut users: Vec<(String, Vec<u64>)> = sessions
            .by_user
            .iter()
            .map(|c| {
                let user = c.0.info.user_id.to_string();
                let cells = ids(&sessions.of_user(&user));
                (user, cells)
            })
            .collect();
        users.sort();
        (by_id, users)
    }

    #[test]
    fn a_users_sessions_stay_in_order_whichever_goes_first() {
        let mut sessions = Sessions::default();
        let cells: Vec<_> = (1..=4).map(|id| SessionCell::for_test(id, "ann")).collect();
        let bob = SessionCell::for_test(9, "bob");
        for c in &cells {
            sessions.insert(c.clone());
        }
        sessions.insert(bob.clone());
        assert_eq!(ids(&sessions.of_user("ann")), [1, 2, 3, 4]);
        assert_eq!(ids(&sessions.of_user("bob")), [9]);
        assert!(sessions.of_user("carl").is_empty());
        assert_eq!(sessions.more.len(), 1, "bob needs no list");

        // The oldest goes: the next takes its place.
        sessions.remove(&cells[0]);
        assert_eq!(ids(&sessions.of_user("ann")), [2, 3, 4]);
        // One from the middle.
        sessions.remove(&cells[2]);
        assert_eq!(ids(&sessions.of_user("ann")), [2, 4]);
        sessions.remove(&cells[1]);
        assert_eq!(ids(&sessions.of_user("ann")), [4]);
        assert!(
            sessions.more.is_empty(),
            "ann's list goes with her second session"
        );
        assert_eq!(
            contents(&sessions),
            (
                vec![4, 9],
                vec![("ann".into(), vec![4]), ("bob".into(), vec![9])]
            )
        );

        sessions.remove(&cells[3]);
        sessions.remove(&bob);
        assert!(
            sessions.by_id.is_empty() && sessions.by_user.is_empty() && sessions.more.is_empty()
        );
    }

    #[test]
    fn an_entry_is_one_pointer() {
        assert_eq!(size_of::<ById>(), 8);
        assert_eq!(size_of::<ByUser>(), 8);
    }

    #[test]
    fn a_cell_is_found_by_id_and_only_the_filed_one_is_forgotten() {
        let mut sessions = Sessions::default();
        let first = SessionCell::for_test(5, "ann");
        sessions.insert(first.clone());
        assert!(Arc::ptr_eq(
            &sessions.by_id.get(&SessionId(5)).unwrap().0,
            &first
        ));
        assert!(!sessions.by_id.contains(&SessionId(6)));

        // Removing a cell that is not filed (same id and user, another
        // cell) leaves the filed one alone; removing twice is harmless.
        let stranger = SessionCell::for_test(5, "ann");
        sessions.remove(&stranger);
        assert_eq!(
            contents(&sessions),
            (vec![5], vec![("ann".into(), vec![5])])
        );
        sessions.remove(&first);
        sessions.remove(&first);
        assert_eq!(contents(&sessions), (vec![], vec![]));
    }

    #[test]
    fn many_users_and_sessions_come_and_go() {
        // A model check: the tables against a plain list, over a mix of
        // logins and closes in a fixed pseudo-random order.
        let mut sessions = Sessions::default();
        let mut model: Vec<Arc<SessionCell>> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for id in 0..2_000 {
            if model.is_empty() || next() % 3 != 0 {
                let c = SessionCell::for_test(id, &format!("user-{}", next() % 50));
                sessions.insert(c.clone());
                model.push(c);
            } else {
                let c = model.remove((next() % model.len() as u64) as usize);
                sessions.remove(&c);
            }
            if id % 97 == 0 {
                let mut want_ids: Vec<u64> = model.iter().map(|c| c.info.id.0).collect();
                want_ids.sort_unstable();
                let mut want_users: Vec<(String, Vec<u64>)> = Vec::new();
                for c in &model {
                    let user = c.info.user_id.to_string();
                    match want_users.iter_mut().find(|(u, _)| *u == user) {
                        Some((_, list)) => list.push(c.info.id.0),
                        None => want_users.push((user, vec![c.info.id.0])),
                    }
                }
                want_users.sort();
                assert_eq!(contents(&sessions), (want_ids, want_users), "after {id}");
            }
        }
    }
}
