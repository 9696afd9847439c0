//! How a partition's segments grow: the merge policy (tantivy's log policy, merging 16 at a
//! time and, with object storage, never past [`SEGMENT_MAX_DOCS`]), the groups a merge takes,
//! and the least memory a writer may have. Used by a partition's writer and by packing a
//! split, which merges its segments the same way.

use tantivy::SegmentMeta;
use tantivy::merge_policy::{LogMergePolicy, MergeCandidate, MergePolicy};

/// The least memory tantivy lets a writer thread have.
pub(crate) const MIN_WRITER_MEMORY_BYTES: usize = 15_000_000;

/// The most documents a merge makes one segment of, with object storage (without it, merges
/// are not capped: one large segment is the smallest and fastest to search from the disk).
///
/// A trace lookup in a split read from object storage reads whole columns (tantivy opens a
/// column from all its bytes) of the segments that may hold the trace, which the trace filter
/// names: smaller segments, fewer bytes per lookup. Every segment also has its own term
/// dictionaries and posting tails, so smaller segments cost bytes: at this size, about 10
/// more per log record and 4 per span in the index (BENCHMARKS.md).
pub const SEGMENT_MAX_DOCS: u32 = 32_768;

/// A commit every half second makes a small segment each time. Merging 16 at once instead of
/// tantivy's default 8 rewrites each document one time fewer on its way to a large segment.
/// Merges stop at `max_docs` ([`SEGMENT_MAX_DOCS`] with object storage, `u32::MAX` without).
pub(crate) fn merge_policy(max_docs: u32) -> CappedMergePolicy {
    let mut inner = LogMergePolicy::default();
    inner.set_min_num_segments(16);
    CappedMergePolicy { inner, max_docs }
}

/// tantivy's log merge policy, with each merge cut down to at most `max_docs` documents.
#[derive(Debug)]
pub(crate) struct CappedMergePolicy {
    inner: LogMergePolicy,
    max_docs: u32,
}

impl MergePolicy for CappedMergePolicy {
    fn compute_merge_candidates(&self, segments: &[SegmentMeta]) -> Vec<MergeCandidate> {
        // Segments of half the cap or more have nothing to merge with.
        let small: Vec<SegmentMeta> = segments
            .iter()
            .filter(|s| s.num_docs() < self.max_docs / 2)
            .cloned()
            .collect();
        self.inner
            .compute_merge_candidates(&small)
            .into_iter()
            .filter_map(|candidate| {
                let mut members: Vec<&SegmentMeta> = small
                    .iter()
                    .filter(|s| candidate.0.contains(&s.id()))
                    .collect();
                members.sort_by_key(|s| s.num_docs());
                Some(MergeCandidate(cap_group(
                    members.iter().map(|s| (s.id(), s.num_docs())),
                    self.max_docs,
                )?))
            })
            .collect()
    }
}

/// The first of `segments` (with their document counts) that add up to at most `max_docs`,
/// when there are two or more of them: a merge of one segment is no merge.
pub(crate) fn cap_group<T>(
    segments: impl IntoIterator<Item = (T, u32)>,
    max_docs: u32,
) -> Option<Vec<T>> {
    let mut total = 0u64;
    let mut group = Vec::new();
    for (segment, docs) in segments {
        total += u64::from(docs);
        if total > u64::from(max_docs) {
            break;
        }
        group.push(segment);
    }
    (group.len() >= 2).then_some(group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signal;
    use crate::format::Format;
    use tantivy::Index;

    #[test]
    fn a_group_takes_the_first_segments_within_the_cap_and_at_least_two() {
        assert_eq!(
            cap_group([("a", 10), ("b", 20), ("c", 30)], 35),
            Some(vec!["a", "b"])
        );
        assert_eq!(cap_group([("a", 10), ("b", 20)], 30), Some(vec!["a", "b"]));
        assert_eq!(cap_group([("a", 10), ("b", 30)], 35), None);
        assert_eq!(cap_group([("a", 40)], 35), None);
    }

    #[test]
    fn merges_stop_at_the_cap() {
        let index = Index::create_in_ram(Signal::Logs.schema(Format::CURRENT));
        let meta =
            |docs: u32| index.new_segment_meta(tantivy::index::SegmentId::generate_random(), docs);
        let policy = merge_policy(SEGMENT_MAX_DOCS);
        // Twenty small segments: tantivy's policy would merge them all into one.
        let small: Vec<SegmentMeta> = (0..20).map(|_| meta(3_000)).collect();
        let candidates = policy.compute_merge_candidates(&small);
        assert!(!candidates.is_empty());
        for candidate in &candidates {
            let docs = 3_000 * candidate.0.len() as u32;
            assert!(
                candidate.0.len() >= 2 && docs <= SEGMENT_MAX_DOCS,
                "{docs} docs"
            );
        }
        // Without object storage there is no cap: tantivy's policy merges the twenty.
        let uncapped = merge_policy(u32::MAX).compute_merge_candidates(&small);
        assert!(
            uncapped
                .iter()
                .any(|c| 3_000 * c.0.len() as u32 > SEGMENT_MAX_DOCS),
            "{uncapped:?}"
        );
        // Segments of half the cap or more are never merged.
        let large: Vec<SegmentMeta> = (0..20).map(|_| meta(SEGMENT_MAX_DOCS / 2)).collect();
        assert!(policy.compute_merge_candidates(&large).is_empty());
    }
}
