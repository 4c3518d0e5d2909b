//! A small table of deadlines, one per kind of timer (as in quinn-proto).

use std::time::Instant;

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
