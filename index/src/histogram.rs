//! A mergeable latency histogram with log-scaled buckets.
//!
//! Percentiles cannot be averaged, but histograms add: each bucket of one hour plus the same
//! bucket of the next is the histogram of both hours. Buckets are quarter powers of two (each
//! about 19 % wider than the last), so any duration from a nanosecond to centuries falls in one of
//! 256 buckets and a percentile read from them is within 19 % of the true value.

use serde::{Deserialize, Serialize};

/// Where a doubling splits into its four buckets: the fraction above the power of two, in
/// 65536ths, at which buckets 1, 2 and 3 of the doubling start (`2^(k/4) - 1`, rounded up).
const QUARTERS: [u64; 3] = [12_400, 27_146, 44_682];

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
    /// The bucket a duration falls in: bucket `4e + k` holds the durations from `2^e` times
    /// `2^(k/4)` up to the next bucket's start. Integer arithmetic only: this runs once per span
    /// in every aggregation.
    #[inline]
    pub fn bucket(duration_ns: u64) -> u8 {
        if duration_ns <= 1 {
            return 0;
        }
        let e = 63 - duration_ns.leading_zeros();
        // The 16 bits after the leading one: the fraction of the way to the next power of two.
        let fraction = if e >= 16 {
            (duration_ns >> (e - 16)) & 0xFFFF
        } else {
            (duration_ns << (16 - e)) & 0xFFFF
        };
        let quarter = QUARTERS.iter().filter(|&&t| fraction >= t).count() as u32;
        (e * 4 + quarter) as u8
    }

    /// The smallest duration of bucket `i`.
    pub fn lower_bound(bucket: u8) -> u64 {
        if bucket == 0 {
            return 0;
        }
        let (e, quarter) = (u32::from(bucket / 4), usize::from(bucket % 4));
        let fraction = if quarter == 0 {
            0
        } else {
            QUARTERS[quarter - 1]
        };
        let bound = (u128::from(65_536 + fraction) << e).div_ceil(65_536);
        u64::try_from(bound).unwrap_or(u64::MAX)
    }

    /// The end of bucket `i` (the next bucket's start), the value a percentile falling in it
    /// reports.
    pub fn upper_bound(bucket: u8) -> u64 {
        match bucket.checked_add(1) {
            Some(next) => Self::lower_bound(next),
            None => u64::MAX,
        }
    }

    /// Counts `count` durations in `bucket`.
    pub fn add(&mut self, bucket: u8, count: u64) {
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
        assert_eq!(h.quantile(0.0), Some(2));
    }

    #[test]
    fn buckets_are_quarter_doublings_and_their_bounds_agree() {
        for k in 1..=3 {
            let exact = 2f64.powf(f64::from(k) / 4.0) - 1.0;
            assert_eq!(QUARTERS[k as usize - 1], (exact * 65_536.0).ceil() as u64);
        }
        let mut d = 0u64;
        while d < u64::MAX / 2 {
            for probe in [d, d + 1, d.saturating_sub(1), d + d / 7, d + d / 3] {
                let b = LatencyHistogram::bucket(probe);
                assert!(LatencyHistogram::lower_bound(b) <= probe, "{probe} in {b}");
                assert!(probe < LatencyHistogram::upper_bound(b), "{probe} in {b}");
                // Within a rounding of the logarithm's definition.
                if probe > 1 {
                    let ideal = (probe as f64).log2() * 4.0;
                    assert!(
                        (f64::from(b) - ideal).abs() < 1.001,
                        "{probe}: {b} vs {ideal}"
                    );
                }
            }
            d = d * 2 + 3;
        }
        // Each bound is exactly where its bucket starts: the duration just below is in an
        // earlier one (buckets below 4 ns that no integer falls in aside).
        for b in 1..=255u8 {
            let low = LatencyHistogram::lower_bound(b);
            if LatencyHistogram::bucket(low) == b {
                assert!(
                    LatencyHistogram::bucket(low - 1) < b,
                    "bucket {b} starts at {low}"
                );
            }
        }
    }
}
