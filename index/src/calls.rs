//! Calls between services, for Jaeger's dependency graph and weft's service map.
//!
//! A call is a span whose parent span belongs to another service: the parent's service called
//! the span's. The pair is found while indexing, not by reading stored spans later:
//! [`CallTracker`] remembers the last [`RECENT_SPANS`] spans (a hash of trace and span ID, the
//! service, the span's middle and whether it is a client span) and the children still waiting
//! for their parent, so a call is recorded when the
//! second of its two spans arrives, in whichever order they come. Services export on their own
//! schedules, seconds apart; at 100,000 spans a second the window is five seconds, and a pair
//! further apart than that is not counted (as with Tempo's service graphs). After a restart or
//! an index failure the window starts empty.
//!
//! Each partition keeps a `CallTable`: per five minutes (of the child span's start) and pair of
//! services, the call count, errors, a latency histogram of the called span and a few exemplar
//! traces. The table is committed with the partition's rows (a file `calls-<position>.json`
//! written just before the commit of that WAL position; see `partition`), so it is exactly as
//! durable as they are: a row replayed from the WAL after a crash was never committed, and
//! neither was the call it completed.
//!
//! A call from a client span also gives the difference of the two services' clocks, which
//! `crate::clock` gathers into a running estimate per service.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::histogram::LatencyHistogram;
use crate::model::SpanRow;

/// Width of the time buckets calls are counted in: five minutes, so that a partition's table
/// (rewritten with each of its commits) holds at most twelve rows per pair of services.
pub const CALL_BUCKET_NANOS: u64 = 300 * 1_000_000_000;
/// Spans remembered for children that arrive after their parent (about 32 bytes each).
pub(crate) const RECENT_SPANS: usize = 1 << 19;
/// Parents awaited by children that arrived first.
const WAITING_PARENTS: usize = 1 << 17;
/// Children waiting for one parent; a client claiming more children for a span is not believed
/// further (each would cost memory until the parent came).
const CHILDREN_PER_PARENT: usize = 1024;
/// Distinct services the tracker names before it starts over (a client inventing a service per
/// span must not grow it without end).
const MAX_SERVICES: usize = 100_000;
/// Rows of one partition's table; calls beyond are counted in `dropped` only.
pub(crate) const MAX_TABLE_ROWS: usize = 2_000;
/// Exemplar traces kept per row of a partition's table: errors first, then the slowest.
const EXEMPLARS: usize = 3;
/// Exemplar traces in an answer summed over many rows.
pub const ANSWER_EXEMPLARS: usize = 10;

/// One call: `parent` called `child`, whose span is described by the rest.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Call {
    pub parent: Arc<str>,
    pub child: Arc<str>,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub error: bool,
    pub trace_id: [u8; 16],
    /// When the calling span is a client span (it times the call from request to response):
    /// the called span's middle minus the calling span's, each by its own service's clock, which
    /// is how far the callee's clock is ahead if the network takes as long each way
    /// (`crate::clock`). Other parents may make several calls in turn, so their middles say
    /// nothing.
    pub clock_delta_ns: Option<i64>,
}

/// A trace that shows a call: the called span's trace, duration and outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemplar {
    /// Trace ID.
    pub trace_id: [u8; 16],
    /// Duration of the called span.
    pub duration_ns: u64,
    /// Whether the called span failed.
    pub error: bool,
}

/// What is known about the calls from one service to another over some time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStats {
    /// Calls.
    pub calls: u64,
    /// Calls whose span has status error.
    pub errors: u64,
    /// Durations of the called spans.
    pub latency: LatencyHistogram,
    /// A few traces showing the call, failed and slow ones first.
    pub exemplars: Vec<Exemplar>,
}

impl CallStats {
    fn record(&mut self, call: &Call) {
        self.calls += 1;
        self.errors += u64::from(call.error);
        self.latency.record(call.duration_ns);
        let exemplar = Exemplar {
            trace_id: call.trace_id,
            duration_ns: call.duration_ns,
            error: call.error,
        };
        self.offer_exemplar(exemplar, EXEMPLARS);
    }

    fn offer_exemplar(&mut self, exemplar: Exemplar, keep: usize) {
        if self
            .exemplars
            .iter()
            .any(|e| e.trace_id == exemplar.trace_id)
        {
            return;
        }
        self.exemplars.push(exemplar);
        self.exemplars
            .sort_by_key(|e| std::cmp::Reverse((e.error, e.duration_ns)));
        self.exemplars.truncate(keep);
    }

    /// Adds `other`'s calls to these, keeping at most `exemplars` exemplars.
    pub fn merge(&mut self, other: &CallStats, exemplars: usize) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
        for exemplar in &other.exemplars {
            self.offer_exemplar(exemplar.clone(), exemplars);
        }
    }
}

/// Calls between two services, summed over a time range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCall {
    /// The calling service.
    pub parent: String,
    /// The called service.
    pub child: String,
    /// The calls.
    pub stats: CallStats,
}

/// A row's key: the time bucket, and the calling and called services as numbers into the
/// table's list of services.
type TableKey = (u64, u32, u32);

/// A partition's calls: per time bucket and pair of services. Service names are kept once in
/// `services`; a row names them by position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredTable", into = "StoredTable")]
pub(crate) struct CallTable {
    services: Vec<String>,
    rows: BTreeMap<TableKey, CallStats>,
    /// Calls not kept because the table was full.
    dropped: u64,
}

/// How a table is written (compactly: it is rewritten with every commit of its partition):
/// `{"services": [...], "rows": [[bucket, parent, child, calls, errors, [[b, n], ...],
/// [["trace hex", duration, error], ...]], ...], "dropped": n}`.
#[derive(Serialize, Deserialize)]
struct StoredTable {
    services: Vec<String>,
    rows: Vec<StoredRow>,
    #[serde(default)]
    dropped: u64,
}

type StoredRow = (
    u64,
    u32,
    u32,
    u64,
    u64,
    LatencyHistogram,
    Vec<(String, u64, bool)>,
);

impl TryFrom<StoredTable> for CallTable {
    type Error = String;

    fn try_from(stored: StoredTable) -> Result<Self, String> {
        let mut rows = BTreeMap::new();
        for (bucket, parent, child, calls, errors, latency, exemplars) in stored.rows {
            if parent as usize >= stored.services.len() || child as usize >= stored.services.len() {
                return Err(format!(
                    "a row names service {parent} or {child} of {}",
                    stored.services.len()
                ));
            }
            let exemplars = exemplars
                .into_iter()
                .map(|(trace, duration_ns, error)| {
                    let trace_id = crate::text::trace_id(&trace)
                        .map_err(|why| format!("exemplar trace ID {why}"))?;
                    Ok(Exemplar {
                        trace_id,
                        duration_ns,
                        error,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let stats = CallStats {
                calls,
                errors,
                latency,
                exemplars,
            };
            rows.insert((bucket, parent, child), stats);
        }
        Ok(CallTable {
            services: stored.services,
            rows,
            dropped: stored.dropped,
        })
    }
}

impl From<CallTable> for StoredTable {
    fn from(table: CallTable) -> Self {
        StoredTable {
            services: table.services,
            rows: table
                .rows
                .into_iter()
                .map(|((bucket, parent, child), s)| {
                    let exemplars = s
                        .exemplars
                        .into_iter()
                        .map(|e| (hex::encode(e.trace_id), e.duration_ns, e.error))
                        .collect();
                    (
                        bucket, parent, child, s.calls, s.errors, s.latency, exemplars,
                    )
                })
                .collect(),
            dropped: table.dropped,
        }
    }
}

impl CallTable {
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.dropped == 0
    }

    /// The number of `name` in this table's list of services, adding it if new.
    fn service_number(&mut self, name: &str) -> u32 {
        match self.services.iter().position(|s| s == name) {
            Some(n) => n as u32,
            None => {
                self.services.push(name.to_string());
                (self.services.len() - 1) as u32
            }
        }
    }

    fn add(&mut self, bucket: u64, parent: &str, child: &str, stats: &CallStats) {
        let known = |t: &Self, name: &str| t.services.iter().position(|s| s == name);
        let full = self.rows.len() >= MAX_TABLE_ROWS;
        if full {
            // Only rows already present may grow.
            let key = match (known(self, parent), known(self, child)) {
                (Some(p), Some(c)) => (bucket, p as u32, c as u32),
                _ => {
                    self.dropped += stats.calls;
                    return;
                }
            };
            match self.rows.get_mut(&key) {
                Some(row) => row.merge(stats, EXEMPLARS),
                None => self.dropped += stats.calls,
            }
            return;
        }
        let key = (
            bucket,
            self.service_number(parent),
            self.service_number(child),
        );
        self.rows.entry(key).or_default().merge(stats, EXEMPLARS);
    }

    pub(crate) fn record(&mut self, call: &Call) {
        let mut stats = CallStats::default();
        stats.record(call);
        self.add(
            call.start_ns / CALL_BUCKET_NANOS,
            &call.parent,
            &call.child,
            &stats,
        );
    }

    /// Adds every row of `other`, within the same bound on rows.
    pub(crate) fn merge(&mut self, other: &CallTable) {
        self.dropped += other.dropped;
        for ((bucket, parent, child), stats) in &other.rows {
            let (parent, child) = (
                &other.services[*parent as usize],
                &other.services[*child as usize],
            );
            self.add(*bucket, parent, child, stats);
        }
    }

    /// Adds the rows whose time bucket overlaps `[start, end)` into `into`, by pair of services.
    pub(crate) fn sum_into(
        &self,
        start: u64,
        end: u64,
        into: &mut BTreeMap<(String, String), CallStats>,
    ) {
        if end <= start {
            return;
        }
        let first = start / CALL_BUCKET_NANOS;
        let last = (end - 1) / CALL_BUCKET_NANOS;
        // Summed here by service numbers first, so names are copied once per pair.
        let mut mine: BTreeMap<(u32, u32), CallStats> = BTreeMap::new();
        for ((bucket, parent, child), stats) in &self.rows {
            if (first..=last).contains(bucket) {
                mine.entry((*parent, *child))
                    .or_default()
                    .merge(stats, ANSWER_EXEMPLARS);
            }
        }
        for ((parent, child), stats) in mine {
            let key = (
                self.services[parent as usize].clone(),
                self.services[child as usize].clone(),
            );
            into.entry(key).or_default().merge(&stats, ANSWER_EXEMPLARS);
        }
    }
}

/// A span remembered by the tracker: a hash of its trace and span IDs.
type SpanKey = u64;

fn span_key(trace_id: &[u8], span_id: &[u8]) -> SpanKey {
    let mut bytes = [0u8; 24];
    bytes[..16].copy_from_slice(&trace_id[..16.min(trace_id.len())]);
    bytes[16..16 + 8.min(span_id.len())].copy_from_slice(&span_id[..8.min(span_id.len())]);
    crate::ids::fnv1a(&bytes)
}

/// The middle of a span, by its service's clock.
fn middle(span: &SpanRow) -> u64 {
    span.start_time_unix_nano + span.duration_ns() / 2
}

/// `child` minus `parent`, as a signed difference.
fn delta(child: u64, parent: u64) -> i64 {
    (i128::from(child) - i128::from(parent)).clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

/// A span the tracker remembers: its service, its middle and whether it is a client span.
#[derive(Clone, Copy)]
struct Recent {
    service: u32,
    middle_ns: u64,
    client: bool,
}

impl Recent {
    /// The clock difference a call from this span to one centred at `child_middle_ns` shows,
    /// when this span is a client span.
    fn clock_delta(&self, child_middle_ns: u64) -> Option<i64> {
        self.client.then(|| delta(child_middle_ns, self.middle_ns))
    }
}

/// A child span waiting for its parent to arrive.
struct WaitingChild {
    span: SpanKey,
    service: u32,
    start_ns: u64,
    duration_ns: u64,
    error: bool,
    trace_id: [u8; 16],
}

/// Pairs spans with their parents as they are indexed; see the module comment.
#[derive(Default)]
pub(crate) struct CallTracker {
    services: Vec<Arc<str>>,
    service_numbers: HashMap<Arc<str>, u32>,
    /// Recent spans, oldest first in `recent_order`.
    recent: HashMap<SpanKey, Recent>,
    recent_order: VecDeque<SpanKey>,
    /// Children by the key of the parent they wait for.
    waiting: HashMap<SpanKey, Vec<WaitingChild>>,
    waiting_order: VecDeque<SpanKey>,
}

impl CallTracker {
    /// Forgets everything, after a failure: the rows since the checkpoint come again.
    pub(crate) fn reset(&mut self) {
        *self = CallTracker::default();
    }

    fn service_number(&mut self, service: &str) -> u32 {
        if let Some(n) = self.service_numbers.get(service) {
            return *n;
        }
        if self.services.len() >= MAX_SERVICES {
            self.reset();
        }
        let name: Arc<str> = Arc::from(service);
        let n = self.services.len() as u32;
        self.services.push(name.clone());
        self.service_numbers.insert(name, n);
        n
    }

    /// Takes note of `span`, adding to `calls` the calls it completes: with its parent, if that
    /// came first, and with children that came before it.
    pub(crate) fn observe(&mut self, span: &SpanRow, calls: &mut Vec<Call>) {
        let Ok(trace_id) = <[u8; 16]>::try_from(span.trace_id.as_slice()) else {
            return;
        };
        let service = self.service_number(&span.service);
        let key = span_key(&trace_id, &span.span_id);
        let recent = Recent {
            service,
            middle_ns: middle(span),
            client: span.kind == crate::model::SPAN_KIND_CLIENT,
        };
        if let Some(children) = self.waiting.remove(&key) {
            for child in children {
                if child.service != service {
                    calls.push(Call {
                        parent: self.services[service as usize].clone(),
                        child: self.services[child.service as usize].clone(),
                        start_ns: child.start_ns,
                        duration_ns: child.duration_ns,
                        error: child.error,
                        trace_id: child.trace_id,
                        clock_delta_ns: recent.clock_delta(child.start_ns + child.duration_ns / 2),
                    });
                }
            }
        }
        if self.recent.insert(key, recent).is_none() {
            self.recent_order.push_back(key);
            if self.recent_order.len() > RECENT_SPANS
                && let Some(old) = self.recent_order.pop_front()
            {
                self.recent.remove(&old);
            }
        }
        if span.parent_span_id.is_empty() {
            return;
        }
        let parent_key = span_key(&trace_id, &span.parent_span_id);
        let error = span.status_code == 2;
        match self.recent.get(&parent_key) {
            Some(&parent) => {
                if parent.service != service {
                    calls.push(Call {
                        parent: self.services[parent.service as usize].clone(),
                        child: self.services[service as usize].clone(),
                        start_ns: span.start_time_unix_nano,
                        duration_ns: span.duration_ns(),
                        error,
                        trace_id,
                        clock_delta_ns: parent.clock_delta(recent.middle_ns),
                    });
                }
            }
            None => {
                let waiting = self.waiting.entry(parent_key).or_default();
                if waiting.is_empty() {
                    self.waiting_order.push_back(parent_key);
                }
                // A span sent twice (an exporter's retry) waits once.
                if waiting.len() >= CHILDREN_PER_PARENT || waiting.iter().any(|c| c.span == key) {
                    return;
                }
                waiting.push(WaitingChild {
                    span: key,
                    service,
                    start_ns: span.start_time_unix_nano,
                    duration_ns: span.duration_ns(),
                    error,
                    trace_id,
                });
                while self.waiting_order.len() > WAITING_PARENTS {
                    if let Some(old) = self.waiting_order.pop_front() {
                        self.waiting.remove(&old);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: u8, id: u8, parent: Option<u8>, service: &str) -> SpanRow {
        SpanRow {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            service: service.into(),
            start_time_unix_nano: 120 * CALL_BUCKET_NANOS + u64::from(id),
            end_time_unix_nano: 120 * CALL_BUCKET_NANOS + 1_000_000,
            ..SpanRow::default()
        }
    }

    fn pairs(calls: &[Call]) -> Vec<(String, String)> {
        calls
            .iter()
            .map(|c| (c.parent.to_string(), c.child.to_string()))
            .collect()
    }

    #[test]
    fn a_call_is_found_whichever_span_comes_first() {
        let mut tracker = CallTracker::default();
        let mut calls = Vec::new();
        // frontend(1) -> checkout(2) -> checkout(3) -> payments(4); 4 arrives before 3.
        tracker.observe(&span(7, 1, None, "frontend"), &mut calls);
        tracker.observe(&span(7, 2, Some(1), "checkout"), &mut calls);
        tracker.observe(&span(7, 4, Some(3), "payments"), &mut calls);
        assert_eq!(pairs(&calls), [("frontend".into(), "checkout".into())]);
        tracker.observe(&span(7, 3, Some(2), "checkout"), &mut calls);
        assert_eq!(
            pairs(&calls),
            [
                ("frontend".into(), "checkout".into()),
                ("checkout".into(), "payments".into())
            ]
        );
        // The same IDs in another trace are another span.
        tracker.observe(&span(8, 4, Some(1), "payments"), &mut calls);
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn only_a_client_span_gives_the_clock_difference() {
        let timed = |parent_kind: i32, child_first: bool| {
            let mut tracker = CallTracker::default();
            let mut calls = Vec::new();
            let mut parent = span(3, 1, None, "api");
            parent.kind = parent_kind;
            (parent.start_time_unix_nano, parent.end_time_unix_nano) = (1_000, 2_000);
            // The server span's clock is 5,000 ahead; it is centred in the client span.
            let mut child = span(3, 2, Some(1), "db");
            (child.start_time_unix_nano, child.end_time_unix_nano) = (6_400, 6_600);
            let order = if child_first {
                [&child, &parent]
            } else {
                [&parent, &child]
            };
            for s in order {
                tracker.observe(s, &mut calls);
            }
            assert_eq!(calls.len(), 1);
            calls[0].clock_delta_ns
        };
        for child_first in [false, true] {
            assert_eq!(
                timed(crate::model::SPAN_KIND_CLIENT, child_first),
                Some(5_000)
            );
            // A server span may make several calls in turn, a producer's message is consumed
            // later: neither centres its child.
            assert_eq!(timed(2, child_first), None);
            assert_eq!(timed(crate::model::SPAN_KIND_PRODUCER, child_first), None);
        }
    }

    #[test]
    fn a_retried_child_waits_once() {
        let mut tracker = CallTracker::default();
        let mut calls = Vec::new();
        tracker.observe(&span(1, 2, Some(1), "db"), &mut calls);
        tracker.observe(&span(1, 2, Some(1), "db"), &mut calls);
        tracker.observe(&span(1, 1, None, "api"), &mut calls);
        assert_eq!(pairs(&calls), [("api".into(), "db".into())]);
    }

    #[test]
    fn the_window_is_bounded() {
        let mut tracker = CallTracker::default();
        let mut calls = Vec::new();
        for i in 0..(WAITING_PARENTS as u32 + 10) {
            let mut child = span(1, 0, Some(0), "a");
            child.span_id = (u64::from(i) + 1).to_be_bytes().to_vec();
            child.parent_span_id = (u64::from(i) + 1_000_000_000).to_be_bytes().to_vec();
            tracker.observe(&child, &mut calls);
        }
        assert!(tracker.waiting.len() <= WAITING_PARENTS);
        assert!(tracker.recent.len() <= RECENT_SPANS);
        assert!(calls.is_empty());
        // Many children of one parent wait up to a bound.
        let mut tracker = CallTracker::default();
        for i in 0..(CHILDREN_PER_PARENT as u64 + 50) {
            let mut child = span(2, 0, Some(9), "a");
            child.span_id = (i + 1).to_be_bytes().to_vec();
            tracker.observe(&child, &mut calls);
        }
        assert_eq!(
            tracker.waiting.values().map(Vec::len).sum::<usize>(),
            CHILDREN_PER_PARENT
        );
        tracker.observe(&span(2, 9, None, "b"), &mut calls);
        assert_eq!(calls.len(), CHILDREN_PER_PARENT);
    }

    #[test]
    fn tables_sum_by_time_bucket_and_keep_the_telling_exemplars() {
        let call = |bucket: u64, ms: u64, error: bool, trace: u8| Call {
            parent: "api".into(),
            child: "db".into(),
            start_ns: bucket * CALL_BUCKET_NANOS + 5,
            duration_ns: ms * 1_000_000,
            error,
            clock_delta_ns: None,
            trace_id: [trace; 16],
        };
        let mut table = CallTable::default();
        for (i, ms) in [10, 20, 900, 30, 40].into_iter().enumerate() {
            table.record(&call(100, ms, i == 3, i as u8));
        }
        table.record(&call(101, 5, false, 9));
        let round_trip: CallTable =
            serde_json::from_str(&serde_json::to_string(&table).unwrap()).unwrap();
        assert_eq!(round_trip, table);
        let mut sums = BTreeMap::new();
        table.sum_into(100 * CALL_BUCKET_NANOS, 101 * CALL_BUCKET_NANOS, &mut sums);
        let stats = &sums[&("api".to_string(), "db".to_string())];
        assert_eq!((stats.calls, stats.errors), (5, 1));
        let kept: Vec<(bool, u64)> = stats
            .exemplars
            .iter()
            .map(|e| (e.error, e.duration_ns / 1_000_000))
            .collect();
        assert_eq!(kept, [(true, 30), (false, 900), (false, 40)]);
        let mut both = BTreeMap::new();
        table.sum_into(100 * CALL_BUCKET_NANOS, 102 * CALL_BUCKET_NANOS, &mut both);
        assert_eq!(both[&("api".to_string(), "db".to_string())].calls, 6);
    }

    #[test]
    fn tables_merge_by_service_name_and_refuse_damage() {
        let call = |parent: &str, child: &str| Call {
            parent: parent.into(),
            child: child.into(),
            start_ns: 0,
            duration_ns: 1,
            error: false,
            clock_delta_ns: None,
            trace_id: [2; 16],
        };
        let mut a = CallTable::default();
        a.record(&call("x", "y"));
        // Numbered the other way round in `b`.
        let mut b = CallTable::default();
        b.record(&call("y", "z"));
        b.record(&call("x", "y"));
        a.merge(&b);
        let mut sums = BTreeMap::new();
        a.sum_into(0, CALL_BUCKET_NANOS, &mut sums);
        let counts: Vec<(&str, &str, u64)> = sums
            .iter()
            .map(|((p, c), s)| (p.as_str(), c.as_str(), s.calls))
            .collect();
        assert_eq!(counts, [("x", "y", 2), ("y", "z", 1)]);
        for damaged in [
            r#"{"services":["a"],"rows":[[0,0,3,1,0,[],[]]]}"#,
            r#"{"services":["a","b"],"rows":[[0,0,1,1,0,[],[["nothex",1,false]]]]}"#,
        ] {
            assert!(
                serde_json::from_str::<CallTable>(damaged).is_err(),
                "{damaged}"
            );
        }
    }

    #[test]
    fn a_full_table_counts_what_it_drops() {
        let mut table = CallTable::default();
        for i in 0..(MAX_TABLE_ROWS as u64 + 7) {
            table.record(&Call {
                parent: "a".into(),
                child: format!("s{i}").into(),
                start_ns: 0,
                duration_ns: 1,
                error: false,
                clock_delta_ns: None,
                trace_id: [1; 16],
            });
        }
        assert_eq!(table.rows.len(), MAX_TABLE_ROWS);
        assert_eq!(table.dropped, 7);
    }
}
