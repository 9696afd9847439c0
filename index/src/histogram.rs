//! A mergeable latency histogram whose percentiles are within 1 % of the exact value.
//!
//! Percentiles cannot be averaged, but histograms add: each bucket of one hour plus the same
//! bucket of the next is the histogram of both hours, and so for partitions and nodes. The
//! buckets are log-linear (as HDR histograms and DDSketch make them): below 64 ns one per
//! nanosecond, then each doubling cut into 64 equal buckets, so a bucket is at most 1/64 of its
//! lower bound wide. A percentile reports the middle of the bucket holding its rank, at most
//! 1/128 (0.78 %) from any duration in it, and never outside the smallest and largest duration
//! counted, which the histogram keeps exactly. Every duration from 0 to `u64::MAX` ns falls in
//! one of 3,776 buckets; only those hit are kept.
//!
//! The latency heatmap draws coarser rows: four buckets each ([`LatencyHistogram::heatmap_row`]),
//! 16 per doubling, each at most 1/16 (6.25 %) wide, so a 5 % shift moves a band by a row.

use serde::{Deserialize, Serialize};

/// Buckets per doubling above [`LINEAR`]: 2^6.
const SUB_BUCKET_BITS: u32 = 6;
/// Durations below this many nanoseconds have a bucket each.
const LINEAR: u64 = 1 << SUB_BUCKET_BITS;
/// Fine buckets per heatmap row.
const HEATMAP_ROW_BUCKETS: u16 = 4;

/// Counts of durations per bucket (only buckets that were hit, sorted), and the smallest and
/// largest duration counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    buckets: Vec<(u16, u64)>,
    min: u64,
    max: u64,
}

/// How a histogram travels and is stored: `{"min": ns, "max": ns, "b": [[bucket, count], ...]}`.
/// Calls tables written before these buckets held `[[bucket, count], ...]` of quarter powers
/// of two; such a histogram is read with each count at its old bucket's middle (within 19 %,
/// as it was measured).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    LogLinear {
        min: u64,
        max: u64,
        b: Vec<(u16, u64)>,
    },
    QuarterPowers(Vec<(u8, u64)>),
}

impl Serialize for LatencyHistogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Stored::LogLinear {
            min: self.min,
            max: self.max,
            b: self.buckets.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut histogram = LatencyHistogram::default();
        match Stored::deserialize(deserializer)? {
            Stored::LogLinear { min, max, b } => {
                for (bucket, count) in b {
                    if bucket > LatencyHistogram::LAST_BUCKET {
                        return Err(serde::de::Error::custom(format!(
                            "latency bucket {bucket} is past the last, {}",
                            LatencyHistogram::LAST_BUCKET
                        )));
                    }
                    histogram.add(bucket, count);
                }
                if histogram.count() > 0 {
                    if min > max {
                        return Err(serde::de::Error::custom(format!(
                            "latency histogram with min {min} above max {max}"
                        )));
                    }
                    histogram.min = min;
                    histogram.max = max;
                }
            }
            Stored::QuarterPowers(pairs) => {
                for (old, count) in pairs {
                    let middle = quarter_power_middle(old);
                    histogram.add_duration(middle, count);
                }
            }
        }
        Ok(histogram)
    }
}

/// The middle of bucket `bucket` of the quarter-power-of-two histogram weft used before
/// (bucket `4e + k` held `2^e * 2^(k/4)` up to the next).
fn quarter_power_middle(bucket: u8) -> u64 {
    let low = 2f64.powf(f64::from(bucket) / 4.0);
    let high = 2f64.powf(f64::from(bucket) / 4.0 + 0.25);
    ((low + high) / 2.0).min(u64::MAX as f64) as u64
}

impl LatencyHistogram {
    /// The bucket of `u64::MAX`, the last.
    pub const LAST_BUCKET: u16 = 3775;

    /// The bucket a duration falls in. Integer arithmetic only: this runs once per span in
    /// every aggregation.
    #[inline]
    pub fn bucket(duration_ns: u64) -> u16 {
        if duration_ns < LINEAR {
            return duration_ns as u16;
        }
        let doubling = 63 - duration_ns.leading_zeros() - SUB_BUCKET_BITS;
        let within = (duration_ns >> doubling) - LINEAR;
        (LINEAR + u64::from(doubling) * LINEAR + within) as u16
    }

    /// The smallest duration of bucket `bucket`.
    pub fn lower_bound(bucket: u16) -> u64 {
        let bucket = u64::from(bucket.min(Self::LAST_BUCKET));
        if bucket < LINEAR {
            return bucket;
        }
        let doubling = (bucket - LINEAR) / LINEAR;
        let within = (bucket - LINEAR) % LINEAR;
        (LINEAR + within) << doubling
    }

    /// The largest duration of bucket `bucket`.
    pub fn upper_bound(bucket: u16) -> u64 {
        if bucket >= Self::LAST_BUCKET {
            return u64::MAX;
        }
        Self::lower_bound(bucket + 1) - 1
    }

    /// The duration a percentile falling in `bucket` reports: its middle (a bucket below 64 ns
    /// holds one duration).
    fn middle(bucket: u16) -> u64 {
        let (low, high) = (Self::lower_bound(bucket), Self::upper_bound(bucket));
        low + (high - low) / 2
    }

    /// The heatmap row of a duration: four buckets (16 per doubling).
    pub fn heatmap_row(duration_ns: u64) -> u16 {
        Self::bucket(duration_ns) / HEATMAP_ROW_BUCKETS
    }

    /// The smallest and largest duration of heatmap row `row`.
    pub fn heatmap_row_bounds(row: u16) -> (u64, u64) {
        let first = row.saturating_mul(HEATMAP_ROW_BUCKETS);
        let last = first.saturating_add(HEATMAP_ROW_BUCKETS - 1);
        (Self::lower_bound(first), Self::upper_bound(last))
    }

    /// Counts `count` durations in `bucket`, without knowing them exactly: the smallest and
    /// largest are then taken as the bucket's bounds (callers that know them say so with
    /// [`LatencyHistogram::note_extremes`]).
    pub fn add(&mut self, bucket: u16, count: u64) {
        if count == 0 {
            return;
        }
        let (low, high) = (Self::lower_bound(bucket), Self::upper_bound(bucket));
        self.widen(low, high);
        match self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
            Ok(at) => self.buckets[at].1 += count,
            Err(at) => self.buckets.insert(at, (bucket, count)),
        }
    }

    /// Counts `count` durations of `duration_ns`.
    fn add_duration(&mut self, duration_ns: u64, count: u64) {
        if count == 0 {
            return;
        }
        let was_empty = self.buckets.is_empty();
        let bucket = Self::bucket(duration_ns);
        match self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
            Ok(at) => self.buckets[at].1 += count,
            Err(at) => self.buckets.insert(at, (bucket, count)),
        }
        if was_empty {
            (self.min, self.max) = (duration_ns, duration_ns);
        } else {
            self.widen(duration_ns, duration_ns);
        }
    }

    /// Counts one duration.
    pub fn record(&mut self, duration_ns: u64) {
        self.add_duration(duration_ns, 1);
    }

    /// Sets the smallest and largest duration counted, when known exactly (after
    /// [`LatencyHistogram::add`] of bucket counts).
    pub fn note_extremes(&mut self, min: u64, max: u64) {
        if self.buckets.is_empty() || min > max {
            return;
        }
        self.min = min;
        self.max = max;
    }

    fn widen(&mut self, low: u64, high: u64) {
        if self.buckets.is_empty() {
            (self.min, self.max) = (low, high);
        } else {
            self.min = self.min.min(low);
            self.max = self.max.max(high);
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.buckets.is_empty() {
            return;
        }
        let was_empty = self.buckets.is_empty();
        for (bucket, count) in &other.buckets {
            match self.buckets.binary_search_by_key(bucket, |(b, _)| *b) {
                Ok(at) => self.buckets[at].1 += count,
                Err(at) => self.buckets.insert(at, (*bucket, *count)),
            }
        }
        if was_empty {
            (self.min, self.max) = (other.min, other.max);
        } else {
            self.widen(other.min, other.max);
        }
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// The smallest duration counted; `None` when empty.
    pub fn min(&self) -> Option<u64> {
        (!self.buckets.is_empty()).then_some(self.min)
    }

    /// The largest duration counted; `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (!self.buckets.is_empty()).then_some(self.max)
    }

    /// The bucket holding the rank of quantile `q` (0..=1): the `ceil(q * n)`-th smallest
    /// duration, the first for `q = 0`; `None` when empty.
    pub fn quantile_bucket(&self, q: f64) -> Option<u16> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(*bucket);
            }
        }
        self.buckets.last().map(|(b, _)| *b)
    }

    /// The duration below which a fraction `q` (0..=1) of the counted durations fall: the
    /// middle of the bucket holding that rank, within 1/128 of every duration in that bucket,
    /// kept within the smallest and largest duration counted (so `q = 1` is the largest
    /// exactly, and `q = 0` the smallest); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if q >= 1.0 {
            return self.max();
        }
        if q <= 0.0 {
            return self.min();
        }
        self.quantile_bucket(q)
            .map(|b| Self::middle(b).clamp(self.min, self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Durations of many shapes: tiny exact ones, spread over every power of two, clustered.
    fn durations() -> impl Strategy<Value = Vec<u64>> {
        let one = prop_oneof![
            0u64..64,
            (0u32..63).prop_flat_map(|e| (1u64 << e)..=(1u64 << e).saturating_mul(2)),
            40_000_000u64..41_000_000,
            any::<u64>(),
        ];
        prop::collection::vec(one, 1..2_000)
    }

    proptest! {
        /// Any durations, counted in up to five parts (partitions, nodes) and merged: every
        /// percentile is within 1 % of the exact nearest-rank one, and inside the extremes.
        #[test]
        fn merged_percentiles_are_within_one_percent(values in durations(), parts in 1usize..5) {
            let mut merged = LatencyHistogram::default();
            for chunk in values.chunks(values.len().div_ceil(parts)) {
                let mut part = LatencyHistogram::default();
                chunk.iter().for_each(|d| part.record(*d));
                merged.merge(&part);
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
            for q in [0.01, 0.25, 0.5, 0.9, 0.99, 0.999] {
                let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
                let truth = sorted[rank - 1];
                let got = merged.quantile(q).unwrap();
                prop_assert!((min..=max).contains(&got), "p{}: {} outside {}..={}", q, got, min, max);
                let error = (got as f64 - truth as f64).abs();
                prop_assert!(error <= truth as f64 / 100.0, "p{}: {} against {}", q, got, truth);
            }
            prop_assert_eq!(merged.quantile(1.0), Some(max));
            prop_assert_eq!(merged.quantile(0.0), Some(min));
            prop_assert_eq!(merged.count(), values.len() as u64);
        }
    }

    #[test]
    fn buckets_are_log_linear_and_their_bounds_agree() {
        assert_eq!(LatencyHistogram::bucket(0), 0);
        assert_eq!(LatencyHistogram::bucket(63), 63);
        assert_eq!(LatencyHistogram::bucket(64), 64);
        assert_eq!(LatencyHistogram::bucket(127), 127);
        assert_eq!(LatencyHistogram::bucket(128), 128);
        assert_eq!(LatencyHistogram::bucket(129), 128);
        assert_eq!(
            LatencyHistogram::bucket(u64::MAX),
            LatencyHistogram::LAST_BUCKET
        );
        let mut d = 0u64;
        while d < u64::MAX / 3 {
            for probe in [d, d + 1, d.saturating_sub(1), d + d / 7, d + d / 3] {
                let b = LatencyHistogram::bucket(probe);
                let (low, high) = (
                    LatencyHistogram::lower_bound(b),
                    LatencyHistogram::upper_bound(b),
                );
                assert!(
                    low <= probe && probe <= high,
                    "{probe} in {b}: {low}..={high}"
                );
                // At most 1/64 of the lower bound wide.
                assert!(
                    (high - low) as f64 <= low as f64 / 64.0,
                    "{b}: {low}..={high}"
                );
            }
            d = d * 2 + 3;
        }
        // Each bucket starts where the one before ends.
        for b in 1..=LatencyHistogram::LAST_BUCKET {
            assert_eq!(
                LatencyHistogram::lower_bound(b),
                LatencyHistogram::upper_bound(b - 1) + 1,
                "{b}"
            );
            assert_eq!(
                LatencyHistogram::bucket(LatencyHistogram::lower_bound(b)),
                b
            );
        }
    }

    #[test]
    fn heatmap_rows_are_a_sixteenth_of_a_doubling() {
        for d in [100u64, 1_000, 40_000_000, 999_999_999_999] {
            let row = LatencyHistogram::heatmap_row(d);
            let (low, high) = LatencyHistogram::heatmap_row_bounds(row);
            assert!(low <= d && d <= high, "{d}: {low}..={high}");
            assert!(
                (high - low) as f64 <= low as f64 / 16.0,
                "{d}: {low}..={high}"
            );
        }
    }

    #[test]
    fn percentiles_are_within_one_percent_and_inside_the_extremes() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=1000u64 {
            h.record(ms * 1_000_000 + 17);
        }
        for (q, rank) in [(0.5, 500u64), (0.9, 900), (0.99, 990)] {
            let truth = (rank * 1_000_000 + 17) as f64;
            let got = h.quantile(q).unwrap() as f64;
            assert!(
                (got - truth).abs() <= truth / 100.0,
                "p{q}: {got} against {truth}"
            );
        }
        assert_eq!(h.quantile(1.0), Some(1_000_000_017));
        assert_eq!(h.quantile(0.0), Some(1_000_017));
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
        assert_eq!((a.min(), a.max()), (Some(5), Some(3_000_000)));
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn extreme_durations_have_buckets() {
        let mut h = LatencyHistogram::default();
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.count(), 2);
        assert_eq!(h.quantile(1.0), Some(u64::MAX));
        assert_eq!(h.quantile(0.0), Some(0));
        assert_eq!(h.quantile(0.5), Some(0));
    }

    /// Through JSON, as between nodes; and a calls table written with the old buckets still
    /// reads, each count near its old bucket's middle.
    #[test]
    fn stored_forms_read_back() {
        let mut h = LatencyHistogram::default();
        for d in [1_000u64, 2_000, 3_000_000] {
            h.record(d);
        }
        let text = serde_json::to_string(&h).unwrap();
        let back: LatencyHistogram = serde_json::from_str(&text).unwrap();
        assert_eq!(back, h);
        // 1 ms sat in quarter-power bucket 79 (2^19.75 ≈ 0.88 ms up to 2^20 ≈ 1.05 ms).
        let old: LatencyHistogram = serde_json::from_str("[[79, 3]]").unwrap();
        assert_eq!(old.count(), 3);
        let p50 = old.quantile(0.5).unwrap();
        assert!((900_000..1_050_000).contains(&p50), "{p50}");
        assert!(
            serde_json::from_str::<LatencyHistogram>(r#"{"min":5,"max":1,"b":[[5,1]]}"#).is_err()
        );
        assert!(
            serde_json::from_str::<LatencyHistogram>(r#"{"min":0,"max":0,"b":[[9999,1]]}"#)
                .is_err()
        );
    }
}
