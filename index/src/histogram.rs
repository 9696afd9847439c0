//! A mergeable latency histogram with log-scaled buckets.
//!
//! Percentiles cannot be averaged, but histograms add: each bucket of one hour plus the same
//! bucket of the next is the histogram of both hours. Buckets are quarter powers of two (each
//! about 19 % wider than the last), so any duration from a nanosecond to centuries falls in one of
//! 256 buckets and a percentile read from them is within 19 % of the true value.

use serde::{Deserialize, Serialize};

/// Buckets per doubling of the duration.
const STEPS_PER_DOUBLING: f64 = 4.0;

/// Counts of durations per log-scaled bucket: only buckets that were hit, as `(bucket, count)`
/// sorted by bucket (a few dozen at most, so a sorted vector beats a map in memory). Written as
/// `[[bucket, count], ...]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(u8, u64)>", into = "Vec<(u8, u64)>")]
pub struct LatencyHistogram(Vec<(u8, u64)>);

impl From<Vec<(u8, u64)>> for LatencyHistogram {
    fn from(pairs: Vec<(u8, u64)>) -> Self {
        let mut histogram = LatencyHistogram::default();
        for (bucket, count) in pairs {
            histogram.add(bucket, count);
        }
        histogram
    }
}

impl From<LatencyHistogram> for Vec<(u8, u64)> {
    fn from(histogram: LatencyHistogram) -> Self {
        histogram.0
    }
}

impl LatencyHistogram {
    /// The bucket a duration falls in: bucket `i` holds `[2^(i/4), 2^((i+1)/4))` nanoseconds.
    pub fn bucket(duration_ns: u64) -> u8 {
        if duration_ns <= 1 {
            return 0;
        }
        ((duration_ns as f64).log2() * STEPS_PER_DOUBLING).floor() as u8
    }

    /// Lower bound of bucket `i` (inclusive).
    pub fn lower_bound(bucket: u8) -> u64 {
        if bucket == 0 {
            return 0;
        }
        Self::upper_bound(bucket - 1)
    }

    /// Upper bound of bucket `i`, the value a percentile falling in it reports.
    pub fn upper_bound(bucket: u8) -> u64 {
        // `as` saturates: the last bucket's bound, 2^64, becomes u64::MAX.
        ((f64::from(bucket) + 1.0) / STEPS_PER_DOUBLING)
            .exp2()
            .round() as u64
    }

    fn add(&mut self, bucket: u8, count: u64) {
        match self.0.binary_search_by_key(&bucket, |(b, _)| *b) {
            Ok(at) => self.0[at].1 += count,
            Err(at) => self.0.insert(at, (bucket, count)),
        }
    }

    /// Counts one duration.
    pub fn record(&mut self, duration_ns: u64) {
        self.add(Self::bucket(duration_ns), 1);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (bucket, count) in &other.0 {
            self.add(*bucket, *count);
        }
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// The bucket holding the rank of quantile `q` (0..=1); `None` when empty.
    pub fn quantile_bucket(&self, q: f64) -> Option<u8> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in &self.0 {
            seen += count;
            if seen >= rank {
                return Some(*bucket);
            }
        }
        self.0.last().map(|(b, _)| *b)
    }

    /// The duration below which a fraction `q` (0..=1) of the counted durations fall, as the
    /// upper bound of the bucket holding that rank; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        self.quantile_bucket(q).map(Self::upper_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentile_is_within_one_bucket_of_the_truth() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=1000u64 {
            h.record(ms * 1_000_000);
        }
        for (q, truth) in [(0.5, 500e6), (0.9, 900e6), (0.99, 990e6), (1.0, 1000e6)] {
            let got = h.quantile(q).unwrap() as f64;
            assert!(
                got >= truth && got <= truth * 1.19 + 1.0,
                "p{q}: {got} against {truth}"
            );
        }
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn histograms_add() {
        let (mut a, mut b, mut both) = Default::default();
        for d in [5u64, 70, 900, 12_000] {
            LatencyHistogram::record(&mut a, d);
            LatencyHistogram::record(&mut both, d);
        }
        for d in [3_000_000u64, 40] {
            LatencyHistogram::record(&mut b, d);
            LatencyHistogram::record(&mut both, d);
        }
        a.merge(&b);
        assert_eq!(a, both);
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn extreme_durations_have_buckets() {
        let mut h = LatencyHistogram::default();
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.count(), 2);
        assert!(h.quantile(1.0).unwrap() >= u64::MAX / 2);
        assert_eq!(h.quantile(0.0), Some(1));
    }
}
