//! Calls between services: spans paired with their parents across batches as they are
//! indexed (the tracker), summed per partition, and added up over a range.

#[allow(unused_imports)]
use super::*;

/// Summed call statistics as a list of calls, by calling then called service.
pub(super) fn service_calls(
    sums: BTreeMap<(String, String), crate::calls::CallStats>,
) -> Vec<ServiceCall> {
    sums.into_iter()
        .map(|((parent, child), stats)| ServiceCall {
            parent,
            child,
            stats,
        })
        .collect()
}

impl Store {
    pub(super) fn clock(&self) -> std::sync::MutexGuard<'_, crate::clock::ClockEstimator> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Each service's clock offset, as the calls and logs indexed so far on this node tell
    /// (`crate::clock`).
    pub fn clock_offsets(&self) -> BTreeMap<String, crate::clock::ClockOffset> {
        self.clock().offsets()
    }

    pub(super) fn tracker(&self) -> std::sync::MutexGuard<'_, CallTracker> {
        // Only the indexing thread takes it; a panic there is followed by a rollback, which
        // resets the tracker.
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Calls between services whose called span started in `[start, end)`, summed per pair of
    /// services, from the committed calls tables of the span partitions: no stored row is read.
    pub fn calls(&self, start: u64, end: u64) -> Result<Vec<ServiceCall>, IndexError> {
        let mut sums = BTreeMap::new();
        let local = self.all_partitions();
        // A call is kept with the partition of the span that completed its pair and timed by
        // the child's start: the same hour, or a neighbour when a pair straddles an hour's
        // end. Local partitions are all read; remote ones within that margin.
        let mut remote = Vec::new();
        for partition in self.partitions_overlapping(
            Signal::Spans,
            start.saturating_sub(crate::PARTITION_NANOS),
            end.saturating_add(crate::PARTITION_NANOS),
        )? {
            let partition = partition?;
            if !local.iter().any(|l| Arc::ptr_eq(l, &partition)) {
                remote.push(partition);
            }
        }
        for partition in local.iter().cloned().chain(remote) {
            if partition.signal == Signal::Spans {
                partition.sum_calls(start, end, &mut sums);
            }
        }
        Ok(service_calls(sums))
    }

    /// [`Store::calls`] from the span partitions `scope` reads, and the local ones read: every
    /// local one (a call is kept with the span that completed its pair, whenever that came),
    /// and remote ones within an hour of the range, as [`Store::calls`] reads them.
    pub fn calls_in(
        &self,
        start: u64,
        end: u64,
        scope: &Scope,
    ) -> Result<(Vec<ServiceCall>, Vec<PartitionRef>), IndexError> {
        if let Scope::All = scope {
            return Ok((self.calls(start, end)?, Vec::new()));
        }
        // Local partitions are all read, as by `calls`; a search node's splits within the
        // margin.
        let (from, to) = match scope {
            Scope::Except(_) => (
                start.saturating_sub(crate::PARTITION_NANOS),
                end.saturating_add(crate::PARTITION_NANOS),
            ),
            _ => (0, u64::MAX),
        };
        let mut sums = BTreeMap::new();
        let partitions = self.partitions_matching_in(Signal::Spans, from, to, None, scope)?;
        let read = partitions.local_refs();
        for partition in partitions {
            partition?.sum_calls(start, end, &mut sums);
        }
        Ok((service_calls(sums), read))
    }
}
