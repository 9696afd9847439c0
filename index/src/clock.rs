//! A running estimate of each service's clock offset, from what indexing sees anyway.
//!
//! Every call between services from a client span (`crate::calls`: the caller's span timing
//! the request from send to response, its child the server's span in another service) gives
//! the difference of the two clocks, if the network takes as long each way: the server span is
//! then centred in the client span, and the gap between their middles is how far the callee's
//! clock is ahead of the caller's. A slow network makes the gaps wider, not off-centre. Calls
//! from other spans (a handler making several calls in turn, a message consumed later) are not
//! centred and are left out. The median of the last [`WINDOW`] differences per pair of
//! services stands for that pair.
//! Services nobody calls (the entry points) are the reference (in a circle of services calling
//! each other, the one making the most calls); each service called from one already placed is
//! placed by the median over its callers. Where a service makes no calls
//! weft sees, its logs can still tell: when an agent sets `observed_time_unix_nano`, the gap to
//! the record's own time is how far the service's clock is ahead of the agent's.
//!
//! The estimate lives in memory, on the node that indexes the spans, and starts empty after a
//! restart; it needs [`MIN_PAIRS`] observations before it names an offset.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Differences kept per pair of services (and log gaps per service).
pub const WINDOW: usize = 512;
/// Observations a service needs before its offset is estimated.
pub const MIN_PAIRS: u64 = 10;
/// Services followed; beyond it, new ones are not (bounded memory whatever a client sends).
const MAX_SERVICES: usize = 10_000;

/// A service's estimated clock offset: how far its clock is ahead (negative: behind), and how
/// many observations it rests on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockOffset {
    /// How far the service's clock is ahead, in nanoseconds (negative: behind).
    pub offset_ns: i64,
    /// Calls (or agent-stamped log records) the estimate rests on.
    pub pairs: u64,
}

/// Log gaps smaller than this are taken for a record stamped and observed by one clock (an SDK
/// sets both as it emits), which says nothing about that clock.
const SAME_CLOCK_NANOS: u64 = 1_000_000;

/// The differences seen so far.
#[derive(Debug, Default)]
pub struct ClockEstimator {
    /// Caller -> callee -> the callee's clock minus the caller's, per call, newest last.
    calls: HashMap<String, HashMap<String, VecDeque<i64>>>,
    /// (caller, callee) pairs followed.
    pair_count: usize,
    /// Service -> its records' time minus the time an agent observed them.
    log_gaps: HashMap<String, VecDeque<i64>>,
}

fn push(window: &mut VecDeque<i64>, value: i64) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(value);
}

fn median(values: impl Iterator<Item = i64>) -> Option<i64> {
    let mut all: Vec<i64> = values.collect();
    if all.is_empty() {
        return None;
    }
    // Linear, not a sort: the estimate is read under the lock indexing takes (at the cap,
    // 10,000 windows of 512 take milliseconds).
    let middle = all.len() / 2;
    Some(*all.select_nth_unstable(middle).1)
}

impl ClockEstimator {
    /// A call from `caller` to `callee`, the called span's middle `delta_ns` after the calling
    /// span's (both by their own clocks).
    pub fn observe_call(&mut self, caller: &str, callee: &str, delta_ns: i64) {
        // Found without allocating, as nearly every call is of a known pair.
        if let Some(window) = self.calls.get_mut(caller).and_then(|c| c.get_mut(callee)) {
            push(window, delta_ns);
            return;
        }
        if self.pair_count >= MAX_SERVICES {
            return;
        }
        self.pair_count += 1;
        let callees = self.calls.entry(caller.to_string()).or_default();
        push(callees.entry(callee.to_string()).or_default(), delta_ns);
    }

    /// A log record of `service` stamped `time` by the service and `observed` by an agent.
    pub fn observe_log(&mut self, service: &str, time: u64, observed: u64) {
        // Unset, or set by the SDK from the same clock as it emitted: nothing to learn.
        if observed == 0 || time.abs_diff(observed) < SAME_CLOCK_NANOS {
            return;
        }
        let gap = (i128::from(time) - i128::from(observed)).clamp(i64::MIN.into(), i64::MAX.into());
        if let Some(window) = self.log_gaps.get_mut(service) {
            push(window, gap as i64);
            return;
        }
        if self.log_gaps.len() >= MAX_SERVICES {
            return;
        }
        push(
            self.log_gaps.entry(service.to_string()).or_default(),
            gap as i64,
        );
    }

    /// Each service's offset, for those with at least [`MIN_PAIRS`] observations.
    pub fn offsets(&self) -> BTreeMap<String, ClockOffset> {
        // The median difference of each pair, and how many calls it rests on.
        let mut pairs: BTreeMap<&str, Vec<(&str, i64, u64)>> = BTreeMap::new();
        let mut called: BTreeMap<&str, u64> = BTreeMap::new();
        let mut calling: BTreeMap<&str, u64> = BTreeMap::new();
        for (caller, callee, window) in self
            .calls
            .iter()
            .flat_map(|(caller, callees)| callees.iter().map(move |(c, w)| (caller, c, w)))
        {
            let Some(delta) = median(window.iter().copied()) else {
                continue;
            };
            let n = window.len() as u64;
            pairs
                .entry(callee.as_str())
                .or_default()
                .push((caller.as_str(), delta, n));
            *called.entry(callee.as_str()).or_default() += n;
            *calling.entry(caller.as_str()).or_default() += n;
        }
        // The entry points, whom nobody calls, are the reference.
        let mut placed: BTreeMap<&str, ClockOffset> = calling
            .iter()
            .filter(|(service, _)| !called.contains_key(*service))
            .map(|(service, n)| {
                (
                    *service,
                    ClockOffset {
                        offset_ns: 0,
                        pairs: *n,
                    },
                )
            })
            .collect();
        // Then, wave by wave, every service called from one already placed.
        loop {
            let mut next: Vec<(&str, ClockOffset)> = Vec::new();
            for (callee, callers) in &pairs {
                if placed.contains_key(callee) {
                    continue;
                }
                let from_placed: Vec<(i64, u64)> = callers
                    .iter()
                    .filter_map(|(caller, delta, n)| {
                        placed
                            .get(caller)
                            .map(|p| (p.offset_ns.saturating_add(*delta), *n))
                    })
                    .collect();
                if from_placed.is_empty() {
                    continue;
                }
                // Each caller's estimate counts as often as the calls behind it.
                let mut weighted: Vec<(i64, u64)> = from_placed;
                weighted.sort_unstable();
                let total: u64 = weighted.iter().map(|(_, n)| n).sum();
                let mut seen = 0;
                let offset = weighted
                    .iter()
                    .find(|(_, n)| {
                        seen += n;
                        seen * 2 > total
                    })
                    .map_or(0, |(o, _)| *o);
                next.push((
                    callee,
                    ClockOffset {
                        offset_ns: offset,
                        pairs: total,
                    },
                ));
            }
            if next.is_empty() {
                // Services that only call each other in a circle have no entry point: the one
                // making the most calls is their reference.
                let Some((reference, n)) = calling
                    .iter()
                    .filter(|(service, _)| !placed.contains_key(*service))
                    .max_by_key(|(service, n)| (**n, std::cmp::Reverse(**service)))
                else {
                    break;
                };
                next.push((
                    reference,
                    ClockOffset {
                        offset_ns: 0,
                        pairs: *n,
                    },
                ));
            }
            placed.extend(next);
        }
        let mut out: BTreeMap<String, ClockOffset> = placed
            .into_iter()
            .map(|(service, offset)| (service.to_string(), offset))
            .collect();
        // Services no call places: their logs, when an agent stamped them.
        for (service, gaps) in &self.log_gaps {
            if out.contains_key(service) {
                continue;
            }
            if let Some(offset) = median(gaps.iter().copied()) {
                out.insert(
                    service.clone(),
                    ClockOffset {
                        offset_ns: offset,
                        pairs: gaps.len() as u64,
                    },
                );
            }
        }
        out.retain(|_, o| o.pairs >= MIN_PAIRS);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn a_callee_ahead_and_one_behind_are_placed_from_the_entry_point() {
        let mut clock = ClockEstimator::default();
        for i in 0..100 {
            // Jitter around the true offsets: 3 s ahead, 200 ms behind.
            let jitter = (i % 7 - 3) * MS;
            clock.observe_call("checkout", "payments", 3_000 * MS + jitter);
            clock.observe_call("checkout", "stock", -200 * MS + jitter);
            // payments calls the ledger, whose clock is right: 3 s before payments'.
            clock.observe_call("payments", "ledger", -3_000 * MS + jitter);
        }
        let offsets = clock.offsets();
        assert_eq!(offsets["checkout"].offset_ns, 0);
        assert_eq!(offsets["payments"].offset_ns, 3_000 * MS);
        assert_eq!(offsets["stock"].offset_ns, -200 * MS);
        assert_eq!(offsets["ledger"].offset_ns, 0);
        assert_eq!(offsets["payments"].pairs, 100);
    }

    #[test]
    fn services_calling_each_other_in_a_circle_take_the_busiest_for_reference() {
        let mut clock = ClockEstimator::default();
        for _ in 0..50 {
            clock.observe_call("a", "b", 700 * MS);
            clock.observe_call("a", "b", 700 * MS);
            clock.observe_call("b", "a", -700 * MS);
        }
        let offsets = clock.offsets();
        assert_eq!(offsets["a"].offset_ns, 0);
        assert_eq!(offsets["b"].offset_ns, 700 * MS);
    }

    #[test]
    fn few_observations_name_no_offset() {
        let mut clock = ClockEstimator::default();
        for _ in 0..MIN_PAIRS - 1 {
            clock.observe_call("a", "b", 5 * MS);
        }
        assert!(clock.offsets().is_empty());
        clock.observe_call("a", "b", 5 * MS);
        assert_eq!(clock.offsets()["b"].offset_ns, 5 * MS);
    }

    #[test]
    fn logs_stamped_by_an_agent_place_a_service_no_call_does() {
        let mut clock = ClockEstimator::default();
        for i in 0..20u64 {
            clock.observe_log(
                "batch",
                1_000_000_000 + i + 2_500_000_000,
                1_000_000_000 + i,
            );
            // Set by the SDK itself as it emitted: no information.
            clock.observe_log("sdk-only", 5_000_000 + i, 5_000_000);
        }
        let offsets = clock.offsets();
        assert_eq!(offsets["batch"].offset_ns, 2_500_000_000);
        assert!(!offsets.contains_key("sdk-only"));
    }

    #[test]
    fn the_window_forgets_old_differences() {
        let mut clock = ClockEstimator::default();
        for _ in 0..WINDOW {
            clock.observe_call("a", "b", 0);
        }
        // The clock drifted: the newest differences take over.
        for _ in 0..WINDOW {
            clock.observe_call("a", "b", 40 * MS);
        }
        assert_eq!(clock.offsets()["b"].offset_ns, 40 * MS);
    }
}
