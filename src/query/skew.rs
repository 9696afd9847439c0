//! Clock skew inside one trace: a service whose clock runs ahead (or behind) draws its spans
//! after their parent has ended (or before it began), and its logs outside the request they
//! belong to. Where a span of another service than its parent's starts before the parent or
//! ends after it, that service's offset is estimated by the midpoint rule (the called span is
//! centred in the calling one: the network takes as long each way) and every span, span event
//! and log of that service in the trace is moved back by it.
//!
//! The trace's root services are the reference. Services are taken in the order calls reach
//! them, each judged against its callers' already adjusted spans, so a call back from a skewed
//! service into one that is not leaves the latter where it is. A call that fits inside its
//! parent (a slow network leaves a gap on each side) is never taken for skew, and neither is a
//! message consumed after its producer ended.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use weft_index::SpanRow;
use weft_index::model::{SPAN_KIND_CONSUMER, SPAN_KIND_PRODUCER};

/// How far each service's clock is ahead in one trace (negative when behind), for the
/// services whose spans had to move.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSkew {
    offsets: BTreeMap<String, i64>,
}

impl TraceSkew {
    /// How far `service`'s clock is ahead in this trace (0 when it was not moved).
    pub fn offset(&self, service: &str) -> i64 {
        self.offsets.get(service).copied().unwrap_or(0)
    }

    /// What to add to a time of `service` to place it on the trace's clock.
    pub fn adjustment(&self, service: &str) -> i64 {
        -self.offset(service)
    }

    /// The services moved, with how far each clock is ahead.
    pub fn services(&self) -> impl Iterator<Item = (&str, i64)> {
        self.offsets.iter().map(|(s, o)| (s.as_str(), *o))
    }

    /// Whether no service had to move.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// `time` moved by `adjustment` nanoseconds, kept within `u64`.
pub fn adjusted(time: u64, adjustment: i64) -> u64 {
    time.saturating_add_signed(adjustment)
}

/// The skew of the services of one trace's spans.
pub fn trace_skew(spans: &[SpanRow]) -> TraceSkew {
    let by_id: HashMap<&[u8], &SpanRow> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let mut children: HashMap<&[u8], Vec<&SpanRow>> = HashMap::new();
    let mut roots = Vec::new();
    for span in spans {
        match by_id.get(span.parent_span_id.as_slice()) {
            Some(_) if !span.parent_span_id.is_empty() => children
                .entry(span.parent_span_id.as_slice())
                .or_default()
                .push(span),
            _ => roots.push(span),
        }
    }
    // Offsets decided so far (root services: 0), and the services still to judge.
    let mut decided: HashMap<&str, i64> = roots.iter().map(|r| (r.service.as_str(), 0)).collect();
    let mut frontier: VecDeque<&SpanRow> = roots.into_iter().collect();
    let mut visited: HashSet<&[u8]> = HashSet::new();
    // Spans of services not yet decided, reached from a decided parent, waiting their turn.
    while !frontier.is_empty() {
        // One level of the tree at a time: every call into a new service at this level is
        // judged together (the median of its estimates), before its spans call further.
        let level: Vec<&SpanRow> = frontier.drain(..).collect();
        let mut estimates: HashMap<&str, Vec<i64>> = HashMap::new();
        let mut fitting: HashSet<&str> = HashSet::new();
        let mut next = Vec::new();
        for parent in &level {
            if !visited.insert(parent.span_id.as_slice()) {
                continue;
            }
            let parent_adjust = -decided.get(parent.service.as_str()).copied().unwrap_or(0);
            let (p_start, p_end) = (
                adjusted(parent.start_time_unix_nano, parent_adjust),
                adjusted(parent.end_time_unix_nano, parent_adjust),
            );
            for child in children
                .get(parent.span_id.as_slice())
                .into_iter()
                .flatten()
            {
                next.push(*child);
                let service = child.service.as_str();
                if service == parent.service || decided.contains_key(service) {
                    continue;
                }
                // A message is consumed whenever its consumer gets to it, long after the
                // producer may have ended: no clock can be read off that.
                if parent.kind == SPAN_KIND_PRODUCER || child.kind == SPAN_KIND_CONSUMER {
                    continue;
                }
                let (c_start, c_end) = (child.start_time_unix_nano, child.end_time_unix_nano);
                if c_start >= p_start && c_end <= p_end {
                    fitting.insert(service);
                    continue;
                }
                // The midpoint rule: the called span centred in the calling one.
                let child_mid = i128::from(c_start) + i128::from(c_end.saturating_sub(c_start)) / 2;
                let parent_mid =
                    i128::from(p_start) + i128::from(p_end.saturating_sub(p_start)) / 2;
                let offset = (child_mid - parent_mid).clamp(i64::MIN.into(), i64::MAX.into());
                estimates.entry(service).or_default().push(offset as i64);
            }
        }
        for service in fitting {
            decided.entry(service).or_insert(0);
        }
        for (service, mut found) in estimates {
            if decided.contains_key(service) {
                continue;
            }
            found.sort_unstable();
            decided.insert(service, found[found.len() / 2]);
        }
        // Spans of the same service as their parent, or of services decided above, go on.
        frontier.extend(next);
    }
    TraceSkew {
        offsets: decided
            .into_iter()
            .filter(|(_, offset)| *offset != 0)
            .map(|(service, offset)| (service.to_string(), offset))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn span(id: u8, parent: u8, service: &str, start: u64, end: u64) -> SpanRow {
        SpanRow {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 {
                Vec::new()
            } else {
                vec![parent; 8]
            },
            service: service.into(),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            ..Default::default()
        }
    }

    #[test]
    fn a_service_ahead_and_one_behind_are_both_found() {
        let t = 100 * S;
        let spans = [
            span(1, 0, "checkout", t, t + 500 * MS),
            // payments' clock is 3 s ahead: its call of 100 ms, really at +100 ms.
            span(2, 1, "payments", t + 3 * S + 100 * MS, t + 3 * S + 200 * MS),
            // stock's clock is 200 ms behind: its call of 50 ms, really at +100 ms.
            span(3, 1, "stock", t - 100 * MS, t - 50 * MS),
        ];
        let skew = trace_skew(&spans);
        // Centred in the parent (its middle at +250 ms): 3.15 s - 250 ms, and -75 ms - 250 ms.
        assert_eq!(skew.offset("payments"), (3 * S - 100 * MS) as i64);
        assert_eq!(skew.offset("stock"), -(325 * MS as i64));
        assert_eq!(skew.offset("checkout"), 0);
        let moved: Vec<_> = skew.services().collect();
        assert_eq!(moved.len(), 2, "{moved:?}");
    }

    #[test]
    fn a_call_back_from_a_skewed_service_stays_put() {
        let t = 100 * S;
        let spans = [
            span(1, 0, "checkout", t, t + 1_000 * MS),
            span(2, 1, "payments", t + 3 * S + 100 * MS, t + 3 * S + 800 * MS),
            // payments calls the ledger, whose clock is right: inside payments' real time.
            span(3, 2, "ledger", t + 200 * MS, t + 300 * MS),
        ];
        let skew = trace_skew(&spans);
        assert!(skew.offset("payments") > 2 * S as i64);
        assert_eq!(skew.offset("ledger"), 0, "the ledger's clock is right");
    }

    #[test]
    fn a_slow_network_is_not_skew() {
        let t = 100 * S;
        // 400 ms on the wire each way: the call sits deep inside its parent.
        let spans = [
            span(1, 0, "checkout", t, t + 1_000 * MS),
            span(2, 1, "payments", t + 400 * MS, t + 600 * MS),
            span(3, 1, "stock", t + 10 * MS, t + 20 * MS),
        ];
        assert!(trace_skew(&spans).is_empty());
    }

    #[test]
    fn a_message_consumed_later_is_not_skew() {
        let t = 100 * S;
        let mut produce = span(2, 1, "orders", t + 10 * MS, t + 20 * MS);
        produce.kind = SPAN_KIND_PRODUCER;
        let mut consume = span(3, 2, "billing", t + 5 * S, t + 5 * S + 50 * MS);
        consume.kind = SPAN_KIND_CONSUMER;
        let spans = [span(1, 0, "orders", t, t + 100 * MS), produce, consume];
        assert!(trace_skew(&spans).is_empty());
    }

    #[test]
    fn estimates_of_one_service_take_their_median() {
        let t = 100 * S;
        let mut spans = vec![span(1, 0, "front", t, t + 10 * S)];
        // Three calls from the front into api, whose clock is 20 s ahead (each centred).
        for (i, at) in [1u64, 4, 7].into_iter().enumerate() {
            spans.push(span(
                2 + i as u8,
                1,
                "api",
                t + 20 * S + at * S,
                t + 20 * S + at * S + S / 2,
            ));
        }
        let skew = trace_skew(&spans);
        // Centred in the 10 s parent: the middle call's midpoint is 4.25 s in, 0.75 s early.
        assert_eq!(skew.offset("api"), (20 * S - 750 * MS) as i64);
    }
}
