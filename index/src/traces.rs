//! Trace summaries and trace search.
//!
//! A search finds spans matching the query in the time range (newest first), takes their
//! distinct trace IDs as candidates, assembles each candidate's spans and log counts, and keeps
//! the traces whose *whole* duration fits the duration filters.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use tantivy::Order;
use tantivy::collector::TopDocs;
use tantivy::query::Query;

use crate::aggregate::filtered;
use crate::error::IndexError;
use crate::format::Format;
use crate::format::column;
use crate::ids::{IdKind, IdQuery};
use crate::partition::PARTITION_NANOS;
use crate::query::Expr;
use crate::rows::RowReader;
use crate::store::{PartitionRef, Scope, Store};
use crate::{LogRow, Signal, SpanRow};

/// How far outside a search's range a candidate trace's other spans are looked for.
pub const TRACE_SLACK_NANOS: u64 = PARTITION_NANOS;
/// Matching spans read to find candidate traces, at most.
const MAX_CANDIDATE_SPANS: usize = 20_000;
/// Candidate traces assembled per search, at most.
pub const MAX_CANDIDATE_TRACES: usize = 2_000;
/// Spans of one trace read for a summary, at most.
const MAX_SUMMARY_SPANS: usize = 10_000;

/// The summary of one trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSummary {
    /// The trace ID.
    pub trace_id: [u8; 16],
    /// Service of the root span (or of the earliest span when the root is missing).
    pub root_service: Option<String>,
    /// Name of that span.
    pub root_name: Option<String>,
    /// Earliest span start (earliest log time for a trace with no spans).
    pub start_time_unix_nano: u64,
    /// Latest end minus earliest start.
    pub duration_ns: u64,
    /// Spans.
    pub span_count: usize,
    /// Spans with status ERROR.
    pub error_count: usize,
    /// Logs with this trace ID.
    pub log_count: usize,
    /// Services seen in spans and logs.
    pub services: BTreeSet<String>,
    /// True when no span of the trace lacks a parent: the root is missing.
    pub incomplete: bool,
    /// Spans, and spans with status ERROR, per service.
    pub spans_by_service: BTreeMap<String, (usize, usize)>,
    /// Spans whose parent is not among the trace's spans.
    pub orphan_count: usize,
}

impl TraceSummary {
    /// Summarizes rows of one trace. `log_services` are the services of its logs.
    pub fn new(
        trace_id: [u8; 16],
        spans: &[SpanRow],
        log_count: usize,
        log_times: impl Iterator<Item = u64>,
        log_services: impl Iterator<Item = String>,
    ) -> Self {
        let root = spans
            .iter()
            .filter(|s| s.parent_span_id.is_empty())
            .min_by_key(|s| s.start_time_unix_nano);
        let stand_in = root.or_else(|| spans.iter().min_by_key(|s| s.start_time_unix_nano));
        let (mut start, mut end) = (u64::MAX, 0u64);
        for s in spans {
            start = start.min(s.start_time_unix_nano);
            end = end.max(s.end_time_unix_nano);
        }
        if spans.is_empty() {
            for t in log_times {
                start = start.min(t);
                end = end.max(t);
            }
        }
        if start == u64::MAX {
            start = 0;
        }
        let mut services: BTreeSet<String> = spans.iter().map(|s| s.service.clone()).collect();
        services.extend(log_services);
        let mut spans_by_service: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for s in spans {
            let counts = spans_by_service.entry(s.service.clone()).or_default();
            counts.0 += 1;
            counts.1 += usize::from(s.is_error());
        }
        let ids: HashSet<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
        let orphan_count = spans
            .iter()
            .filter(|s| !s.parent_span_id.is_empty() && !ids.contains(s.parent_span_id.as_slice()))
            .count();
        TraceSummary {
            trace_id,
            root_service: stand_in.map(|s| s.service.clone()),
            root_name: stand_in.map(|s| s.name.clone()),
            start_time_unix_nano: start,
            duration_ns: end.saturating_sub(start),
            span_count: spans.len(),
            error_count: spans.iter().filter(|s| s.is_error()).count(),
            log_count,
            services,
            incomplete: root.is_none(),
            spans_by_service,
            orphan_count,
        }
    }

    /// Summarizes a whole trace as read by [`Store::trace`].
    pub fn from_rows(trace_id: [u8; 16], spans: &[SpanRow], logs: &[LogRow]) -> Self {
        TraceSummary::new(
            trace_id,
            spans,
            logs.len(),
            logs.iter().map(|l| l.time_unix_nano),
            logs.iter().map(|l| l.service.clone()),
        )
    }
}

/// A trace search.
#[derive(Clone, Debug)]
pub struct TraceSearch {
    /// Spans to look for (service, name, status, text, attributes…); `None` for any span.
    pub query: Option<Expr>,
    /// Inclusive start of the range matching spans must start in.
    pub start_unix_nano: u64,
    /// Exclusive end of that range.
    pub end_unix_nano: u64,
    /// Keep traces lasting at least this long (whole trace).
    pub min_duration_ns: Option<u64>,
    /// Keep traces lasting at most this long (whole trace).
    pub max_duration_ns: Option<u64>,
    /// Most traces to return.
    pub limit: usize,
}

/// Traces found, newest matching span first.
#[derive(Clone, Debug, Default)]
pub struct TraceSearchResult {
    /// Summaries.
    pub traces: Vec<TraceSummary>,
    /// True when the search stopped at a limit (the page, or the candidates it may examine).
    pub limited: bool,
}

impl TraceSearch {
    /// Whether a trace lasting `duration_ns` passes the duration filters.
    pub fn fits(&self, duration_ns: u64) -> bool {
        self.min_duration_ns.is_none_or(|d| duration_ns >= d)
            && self.max_duration_ns.is_none_or(|d| duration_ns <= d)
    }

    /// The range in which a candidate trace's spans and logs are looked for: the search's,
    /// widened by [`TRACE_SLACK_NANOS`] on each side.
    pub fn near_range(&self) -> (u64, u64) {
        (
            self.start_unix_nano.saturating_sub(TRACE_SLACK_NANOS),
            self.end_unix_nano.saturating_add(TRACE_SLACK_NANOS),
        )
    }
}

/// A trace a search may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceCandidate {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The start of its newest span that matches the search.
    pub newest_match_unix_nano: u64,
}

/// The candidate traces of a search, newest matching span first.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    /// The candidates.
    pub traces: Vec<TraceCandidate>,
    /// True when more spans or traces matched than a search examines.
    pub capped: bool,
}

impl Candidates {
    /// Puts the candidates in the order every node shares: newest matching span first, then
    /// by trace ID, so two stores holding the same spans list the same traces in the same
    /// order. A trace named twice keeps its newest match, once.
    pub fn sort(&mut self) {
        self.traces
            .sort_by_key(|c| (std::cmp::Reverse(c.newest_match_unix_nano), c.trace_id));
        let mut seen = std::collections::HashSet::new();
        self.traces.retain(|c| seen.insert(c.trace_id));
    }
}

/// What one part of the data holds of a trace: enough for its summary.
#[derive(Clone, Debug, Default)]
pub struct SummaryPart {
    /// Its spans there.
    pub spans: Vec<SpanRow>,
    /// Its log records there, counted per service.
    pub logs_by_service: BTreeMap<String, u64>,
}

impl SummaryPart {
    /// Adds another part of the data's.
    pub fn merge(&mut self, other: SummaryPart) {
        self.spans.extend(other.spans);
        for (service, n) in other.logs_by_service {
            *self.logs_by_service.entry(service).or_default() += n;
        }
    }

    /// The summary of trace `id`, when this is all of it.
    pub fn summary(&self, id: [u8; 16]) -> TraceSummary {
        TraceSummary::new(
            id,
            &self.spans,
            self.logs_by_service.values().sum::<u64>() as usize,
            std::iter::empty(),
            self.logs_by_service.keys().cloned(),
        )
    }
}

impl Store {
    /// Traces with a span matching `search`, filtered on whole-trace duration.
    pub fn search_traces(&self, search: &TraceSearch) -> Result<TraceSearchResult, IndexError> {
        let (candidates, _) = self.trace_candidates_in(search, &Scope::All)?;
        let mut result = TraceSearchResult::default();
        let (near_start, near_end) = search.near_range();
        for candidate in candidates.traces {
            let id = candidate.trace_id;
            let (part, _) = self.summary_part_in(&id, near_start, near_end, &Scope::All)?;
            let summary = part.summary(id);
            if !search.fits(summary.duration_ns) {
                continue;
            }
            if result.traces.len() == search.limit {
                result.limited = true;
                break;
            }
            result.traces.push(summary);
        }
        result.limited |= candidates.capped;
        Ok(result)
    }

    /// The traces with a span matching `search` among the partitions `scope` reads, newest
    /// matching span first, at most [`MAX_CANDIDATE_TRACES`]; and the local partitions read.
    pub fn trace_candidates_in(
        &self,
        search: &TraceSearch,
        scope: &Scope,
    ) -> Result<(Candidates, Vec<PartitionRef>), IndexError> {
        let query = filtered(
            search.query.as_ref(),
            Signal::Spans,
            search.start_unix_nano,
            search.end_unix_nano,
        )?;
        let mut found = Candidates::default();
        // Each trace's place in `found`, to keep its newest match across partitions.
        let mut seen = std::collections::HashMap::new();
        let partitions = self.partitions_matching_in(
            Signal::Spans,
            search.start_unix_nano,
            search.end_unix_nano,
            search.query.as_ref(),
            scope,
        )?;
        let read = partitions.local_refs();
        'partitions: for partition in partitions {
            let partition = partition?;
            let searcher = partition.searcher();
            // Format 2 keeps a span's whole trace ID in a column of its own.
            let trace_column = match Format::of_checked_schema(searcher.schema()) {
                Format::V1 => "trace_id",
                Format::V2 | Format::V3 => column::TRACE,
            };
            let hits = searcher.search(
                &query,
                &TopDocs::with_limit(MAX_CANDIDATE_SPANS)
                    .order_by_fast_field::<u64>("start", Order::Desc),
            )?;
            if hits.len() == MAX_CANDIDATE_SPANS {
                found.capped = true;
            }
            let mut bytes = Vec::with_capacity(16);
            for (start, address) in hits {
                let reader = searcher.segment_reader(address.segment_ord);
                let Some(column) = reader.fast_fields().bytes(trace_column)? else {
                    continue;
                };
                let Some(ord) = column.term_ords(address.doc_id).next() else {
                    continue;
                };
                bytes.clear();
                if !column.ord_to_bytes(ord, &mut bytes)? {
                    continue;
                }
                let Ok(id) = <[u8; 16]>::try_from(bytes.as_slice()) else {
                    continue;
                };
                let start = start.unwrap_or(0);
                if let Some(&at) = seen.get(&id) {
                    let known: &mut TraceCandidate = &mut found.traces[at];
                    known.newest_match_unix_nano = known.newest_match_unix_nano.max(start);
                    continue;
                }
                seen.insert(id, found.traces.len());
                found.traces.push(TraceCandidate {
                    trace_id: id,
                    newest_match_unix_nano: start,
                });
                if found.traces.len() == MAX_CANDIDATE_TRACES {
                    found.capped = true;
                    break 'partitions;
                }
            }
        }
        // Partitions of one hour (its parts, or the splits of several nodes) overlap in time,
        // so the order is made here, once, as a search node makes it over every node's.
        found.sort();
        Ok((found, read))
    }

    /// What the partitions `scope` reads that overlap `[start, end)` hold of trace `id`, and
    /// the local partitions read.
    pub fn summary_part_in(
        &self,
        id: &[u8; 16],
        start: u64,
        end: u64,
        scope: &Scope,
    ) -> Result<(SummaryPart, Vec<PartitionRef>), IndexError> {
        let span_query = IdQuery::new(Signal::Spans, IdKind::Trace, id);
        let mut part = SummaryPart::default();
        let partitions = self.partitions_matching_in(Signal::Spans, start, end, None, scope)?;
        let mut read = partitions.local_refs();
        for partition in partitions {
            let partition = partition?;
            let searcher = partition.searcher();
            let hits = searcher.search(
                &span_query,
                &TopDocs::with_limit(MAX_SUMMARY_SPANS).order_by_score(),
            )?;
            let mut reader = RowReader::new(&searcher);
            for (_, address) in hits {
                part.spans.push(reader.span(address)?);
            }
        }
        let log_query: Box<dyn Query> = Box::new(IdQuery::new(Signal::Logs, IdKind::Trace, id));
        let (by_service, logs_read) = self.count_by_service_in(&*log_query, start, end, scope)?;
        part.logs_by_service = by_service;
        read.extend(logs_read);
        Ok((part, read))
    }
}
