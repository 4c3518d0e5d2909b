//! `RetryPolicy`: exponential backoff with jitter for the opt-in
//! [`Client::resume_with_backoff`](crate::Client::resume_with_backoff).

use std::time::Duration;

/// How [`Client::resume_with_backoff`](crate::Client::resume_with_backoff)
/// spaces its attempts: exponential backoff with random jitter, so that
/// many clients cut off together do not all come back at the same instant.
///
/// The wait before retry `n` (from 0) is
/// `min(initial * multiplier^n, max)`, shortened by a random fraction of
/// up to `jitter` of itself. When the server asked for a wait (the
/// `retry_after` of a close signal), the wait is at least that, up to
/// `max` ([`delay_with_hint`](Self::delay_with_hint)).
///
/// ```
/// use std::time::Duration;
/// use session_client::RetryPolicy;
///
/// let policy = RetryPolicy {
///     initial: Duration::from_millis(100),
///     max_attempts: Some(5),
///     ..RetryPolicy::default()
/// };
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait before the first retry. Default 200 ms.
    pub initial: Duration,
    /// The longest wait between attempts. Default 10 s.
    pub max: Duration,
    /// How much each wait grows (at least 1). Default 2.
    pub multiplier: f64,
    /// The largest fraction of a wait removed at random, from 0 (no
    /// jitter) to 1 (anywhere between 0 and the full wait). Default 0.5.
    pub jitter: f64,
    /// How many attempts in all, the first included; `None` (the default)
    /// tries until the session expires, which the client notices on its
    /// own.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry` (0 for the first retry), given a
    /// uniformly random `random`.
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        let multiplier = if self.multiplier.is_finite() {
            self.multiplier.max(1.0)
        } else {
            1.0
        };
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let growth = multiplier.powi(exponent);
        let max = self.max.max(self.initial);
        let base = if growth.is_finite() && self.initial.as_secs_f64() * growth < max.as_secs_f64()
        {
            self.initial.mul_f64(growth)
        } else {
            max
        };
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // The top 53 bits make a uniform fraction in [0, 1).
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(1.0 - jitter * fraction)
    }

    /// The wait before retry `retry` when the server may have asked for
    /// one: [`delay`](Self::delay), lengthened to `retry_after` if that is
    /// longer, but never beyond `max` (a longer hint would outwait a
    /// session that expires meanwhile, which the next attempt reports at
    /// once).
    pub fn delay_with_hint(
        &self,
        retry: u32,
        random: u64,
        retry_after: Option<Duration>,
    ) -> Duration {
        let delay = self.delay(retry, random);
        let hint = retry_after
            .unwrap_or_default()
            .min(self.max.max(self.initial));
        delay.max(hint)
    }

    /// Whether attempt `attempt` (counting from 1) may be followed by
    /// another.
    pub(crate) fn allows_after(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt < max)
    }
}

/// A random number for the jitter, from the operating system; if that
/// fails, from the clock (jitter needs no secrecy, only spread).
pub(crate) fn random() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // SplitMix64's finaliser spreads the few varying bits over all 64.
        let mut z = u64::from(nanos).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_up_to_the_maximum_and_jitter_only_shortens_them() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: Some(3),
        };
        let no_luck = 0;
        assert_eq!(policy.delay(0, no_luck), Duration::from_millis(100));
        assert_eq!(policy.delay(1, no_luck), Duration::from_millis(200));
        assert_eq!(policy.delay(3, no_luck), Duration::from_millis(800));
        assert_eq!(policy.delay(4, no_luck), Duration::from_millis(1000));
        assert_eq!(policy.delay(u32::MAX, no_luck), Duration::from_millis(1000));
        let most = policy.delay(0, u64::MAX);
        assert!(most >= Duration::from_millis(50) && most < Duration::from_millis(51));
        for _ in 0..100 {
            let d = policy.delay(2, random());
            assert!(d > Duration::from_millis(200) && d <= Duration::from_millis(400));
        }
        assert!(policy.allows_after(2));
        assert!(!policy.allows_after(3));
    }

    #[test]
    fn the_servers_hint_lengthens_a_wait_up_to_the_maximum() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        };
        let hint = |ms| Some(Duration::from_millis(ms));
        assert_eq!(
            policy.delay_with_hint(0, 0, None),
            Duration::from_millis(100)
        );
        assert_eq!(
            policy.delay_with_hint(0, u64::MAX, hint(300)),
            Duration::from_millis(300)
        );
        // A shorter hint leaves the backoff as it is.
        assert_eq!(
            policy.delay_with_hint(3, 0, hint(300)),
            Duration::from_millis(800)
        );
        assert_eq!(
            policy.delay_with_hint(0, 0, hint(60_000)),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn nonsense_settings_do_not_panic() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(1),
            multiplier: f64::NAN,
            jitter: 7.0,
            max_attempts: None,
        };
        assert_eq!(policy.delay(10, 0), Duration::from_secs(5));
        assert_eq!(policy.delay(10, u64::MAX).as_millis(), 0);
        assert!(policy.allows_after(u32::MAX));
    }
}
