//! A small table of deadlines, one per kind of timer (as in quinn-proto).

use std::time::{Duration, Instant};

/// How far away a deadline that "never" comes is put: decades, far enough
/// that nothing waits for it, near enough that `Instant` holds it.
const NEVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + after`, or a deadline decades away if that sum overflows, so that
/// a timeout of `Duration::MAX` means "no timeout" instead of a panic.
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let now = Instant::now();
/// assert_eq!(session_core::deadline_after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
/// assert!(session_core::deadline_after(now, Duration::MAX) > now + Duration::from_secs(3600 * 24 * 365));
/// ```
pub fn deadline_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now.checked_add(NEVER).unwrap_or(now))
}

/// A kind of timer, usable as an index into a [`TimerTable`].
pub(crate) trait TimerKind: Copy + 'static {
    /// Every kind, in index order.
    const ALL: &'static [Self];
    /// This kind's index.
    fn index(self) -> usize;
}

/// At most one deadline per timer kind.
#[derive(Debug, Clone)]
pub(crate) struct TimerTable<T, const N: usize> {
    deadlines: [Option<Instant>; N],
    _kind: std::marker::PhantomData<T>,
}

impl<T: TimerKind, const N: usize> TimerTable<T, N> {
    pub(crate) fn new() -> Self {
        Self {
            deadlines: [None; N],
            _kind: std::marker::PhantomData,
        }
    }

    pub(crate) fn set(&mut self, timer: T, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: T) {
        self.deadlines[timer.index()] = None;
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; N];
    }

    pub(crate) fn get(&self, timer: T) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Stops and returns the first timer (in kind order) due at `now`.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<T> {
        for &kind in T::ALL {
            if let Some(at) = self.deadlines[kind.index()] {
                if at <= now {
                    self.deadlines[kind.index()] = None;
                    return Some(kind);
                }
            }
        }
        None
    }
}
