//! Summaries of repeated measurements, and latency histograms that cross
//! process boundaries as plain `(value, count)` pairs.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The median, min and max of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The middle value (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Summary {
    /// Summarises `values`, ignoring NaNs; `None` when nothing is left.
    ///
    /// ```
    /// use session_bench::stats::Summary;
    /// let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
    /// assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
    /// ```
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            n: sorted.len(),
        })
    }
}

/// A latency histogram in microseconds, from 1 µs to one hour, three
/// significant digits.
pub type Latency = Histogram<u64>;

/// An empty [`Latency`].
pub fn latency() -> Latency {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}

/// A histogram as `(value, count)` pairs, for JSON between processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts(pub Vec<(u64, u64)>);

impl Counts {
    /// The recorded values of `histogram`.
    pub fn of(histogram: &Latency) -> Self {
        Self(
            histogram
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Adds these counts to `histogram`.
    pub fn add_to(&self, histogram: &mut Latency) {
        for &(value, count) in &self.0 {
            histogram.saturating_record_n(value, count);
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// The largest sample.
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of a histogram in microseconds.
    pub fn of(histogram: &Latency) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_even_and_odd_counts() {
        assert_eq!(Summary::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Summary::of(&[f64::NAN, 7.0]).unwrap().n, 1);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn counts_round_trip_through_json() {
        let mut h = latency();
        for v in [5, 5, 90, 1_500, 2_000_000] {
            h.record(v).unwrap();
        }
        let json = serde_json::to_string(&Counts::of(&h)).unwrap();
        let back: Counts = serde_json::from_str(&json).unwrap();
        let mut h2 = latency();
        back.add_to(&mut h2);
        assert_eq!(h2.len(), 5);
        assert_eq!(h2.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert!(h2.equivalent(h2.max(), 2_000_000));
        let p = Percentiles::of(&h2);
        assert!(p.p50_ms > 0.08 && p.p50_ms < 0.1, "{p:?}");
    }
}
