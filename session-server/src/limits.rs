//! Connection limits: overall, per IP, and per-IP token buckets for new
//! connections and failed logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::options::{Rate, ServerOptions};

/// Why a connection was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The server holds `max_connections`.
    #[error("too many connections")]
    Connections,
    /// This address holds `max_connections_per_ip`.
    #[error("too many connections from this address")]
    ConnectionsPerIp,
    /// This address opens connections too fast.
    #[error("connecting too fast")]
    ConnectionRate,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        self.updated = now;
    }

    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(rate, now);
        probe.tokens >= f64::from(rate.burst)
    }
}

#[derive(Debug)]
struct PerIp {
    connections: usize,
    connect: Bucket,
    failed_logins: Bucket,
}

#[derive(Debug)]
struct State {
    connections: usize,
    per_ip: HashMap<IpAddr, PerIp>,
    last_sweep: Instant,
}

/// Counts connections and spends tokens; shared by all listeners.
#[derive(Debug)]
pub(crate) struct Limiter {
    options: ServerOptions,
    state: Mutex<State>,
}

/// A connection slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// `None` once [`into_ip`](Self::into_ip) handed the count on.
    limiter: Option<Arc<Limiter>>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(limiter) = self.limiter.take() {
            limiter.release(self.ip);
        }
    }
}

impl Admitted {
    /// The address, for whoever counts the connection from now on and
    /// calls [`Limiter::release`] with it when the connection ends (a
    /// reactor, which keeps the address in 17 bytes instead of this guard
    /// in 32).
    pub(crate) fn into_ip(mut self) -> IpAddr {
        self.limiter = None;
        self.ip
    }
}

impl Limiter {
    pub(crate) fn new(options: ServerOptions, now: Instant) -> Arc<Self> {
        Arc::new(Self {
            options,
            state: Mutex::new(State {
                connections: 0,
                per_ip: HashMap::new(),
                last_sweep: now,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave these counters inconsistent enough
        // to matter; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `ip`, or says which limit it hits.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Admitted, LimitExceeded> {
        let options = &self.options;
        let mut state = self.lock();
        self.sweep(&mut state, now);
        if state.connections >= options.max_connections {
            return Err(LimitExceeded::Connections);
        }
        let entry = state.per_ip.entry(ip).or_insert_with(|| PerIp {
            connections: 0,
            connect: Bucket::full(options.connection_rate, now),
            failed_logins: Bucket::full(options.failed_login_rate, now),
        });
        if entry.connections >= options.max_connections_per_ip {
            return Err(LimitExceeded::ConnectionsPerIp);
        }
        if !entry.connect.take(options.connection_rate, now) {
            return Err(LimitExceeded::ConnectionRate);
        }
        entry.connections += 1;
        state.connections += 1;
        Ok(Admitted {
            limiter: Some(self.clone()),
            ip,
        })
    }

    /// Whether `ip` may still try to log in (its failed-login bucket is not
    /// empty).
    pub(crate) fn may_login(&self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.options.failed_login_rate;
        let mut state = self.lock();
        state.per_ip.get_mut(&ip).is_none_or(|entry| {
            entry.failed_logins.refill(rate, now);
            entry.failed_logins.tokens >= 1.0
        })
    }

    /// Spends a failed-login token of `ip`.
    pub(crate) fn login_failed(&self, ip: IpAddr, now: Instant) {
        let rate = self.options.failed_login_rate;
        let mut state = self.lock();
        if let Some(entry) = state.per_ip.get_mut(&ip) {
            let _ = entry.failed_logins.take(rate, now);
        }
    }

    /// Connections open now.
    /// Counts one connection from `ip` as closed.
    pub(crate) fn release(&self, ip: IpAddr) {
        let mut state = self.lock();
        state.connections = state.connections.saturating_sub(1);
        if let Some(entry) = state.per_ip.get_mut(&ip) {
            entry.connections = entry.connections.saturating_sub(1);
        }
    }

    pub(crate) fn connections(&self) -> usize {
        self.lock().connections
    }

    /// Forgets idle addresses whose buckets are full again, at most once a
    /// minute, so that the table does not grow with every address seen.
    fn sweep(&self, state: &mut State, now: Instant) {
        if now.saturating_duration_since(state.last_sweep).as_secs() < 60 {
            return;
        }
        state.last_sweep = now;
        let (connect, failed) = (self.options.connection_rate, self.options.failed_login_rate);
        state.per_ip.retain(|_, e| {
            e.connections > 0
                || !e.connect.is_full(connect, now)
                || !e.failed_logins.is_full(failed, now)
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn options() -> ServerOptions {
        ServerOptions {
            max_connections: 3,
            max_connections_per_ip: 2,
            connection_rate: Rate {
                burst: 3,
                per_second: 1.0,
            },
            failed_login_rate: Rate {
                burst: 2,
                per_second: 0.5,
            },
            ..ServerOptions::default()
        }
    }

    #[test]
    fn per_ip_and_overall_connection_limits() {
        let now = Instant::now();
        let limiter = Limiter::new(options(), now);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = limiter.admit(a, now).unwrap();
        let _second = limiter.admit(a, now).unwrap();
        assert_eq!(
            limiter.admit(a, now).unwrap_err(),
            LimitExceeded::ConnectionsPerIp
        );
        let _third = limiter.admit(b, now).unwrap();
        assert_eq!(
            limiter.admit(b, now).unwrap_err(),
            LimitExceeded::Connections
        );
        drop(first);
        assert_eq!(limiter.connections(), 2);
        // The slot is back; `a` spends the last token of its burst of three...
        let again = limiter.admit(a, now).unwrap();
        drop(again);
        // ...and then has to wait.
        assert_eq!(
            limiter.admit(a, now).unwrap_err(),
            LimitExceeded::ConnectionRate
        );
        // ...until a token is refilled.
        assert!(limiter.admit(a, now + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn failed_logins_spend_a_bucket_that_refills() {
        let now = Instant::now();
        let limiter = Limiter::new(options(), now);
        let a: IpAddr = [127, 0, 0, 1].into();
        let _slot = limiter.admit(a, now).unwrap();
        assert!(limiter.may_login(a, now));
        limiter.login_failed(a, now);
        limiter.login_failed(a, now);
        assert!(!limiter.may_login(a, now));
        assert!(limiter.may_login(a, now + Duration::from_secs(2)));
    }
}
