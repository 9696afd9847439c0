//! A trace's rows in one searcher: the lookup by trace ID every trace answer makes in each
//! partition it reads, and that packing a split records to build its hot cache
//! (`crate::hot_cache`), so that the ranges a lookup reads are exactly those recorded.

use tantivy::Searcher;
use tantivy::collector::TopDocs;
use tantivy::query::Query;

use crate::error::IndexError;
use crate::ids::{IdKind, IdQuery};
use crate::rows::RowReader;
use crate::{LogRow, Signal, SpanRow};

/// Every row of one trace.
#[derive(Clone, Debug, Default)]
pub struct TraceRows {
    /// Spans ordered by start time.
    pub spans: Vec<SpanRow>,
    /// Logs ordered by time.
    pub logs: Vec<LogRow>,
    /// True when the trace has more spans or logs than the limits allowed.
    pub truncated: bool,
}

impl TraceRows {
    /// Orders rows gathered from several places (spans by start, logs by time) and keeps at
    /// most `max_spans` and `max_logs`, noting when more were found.
    pub fn settle(&mut self, max_spans: usize, max_logs: usize) {
        self.spans
            .sort_by_key(|s: &SpanRow| (s.start_time_unix_nano, s.span_id.clone()));
        self.logs.sort_by_key(|l: &LogRow| l.time_unix_nano);
        if self.spans.len() > max_spans || self.logs.len() > max_logs {
            self.truncated = true;
            self.spans.truncate(max_spans);
            self.logs.truncate(max_logs);
        }
    }
}

/// The rows of `trace_id` in one partition of `signal`: at most `max_spans + 1` spans or
/// `max_logs + 1` logs, so that the caller sees when there are more. With `segments`, only
/// those segments (by ID) are searched: the trace filter says the others do not hold it.
pub(crate) fn trace_rows_in(
    searcher: &tantivy::Searcher,
    segments: Option<&[String]>,
    signal: Signal,
    trace_id: &[u8],
    (max_spans, max_logs): (usize, usize),
) -> Result<TraceRows, IndexError> {
    let mut reader = RowReader::new(searcher);
    let mut rows = TraceRows::default();
    let query = IdQuery::new(signal, IdKind::Trace, trace_id);
    let limit = TopDocs::with_limit(match signal {
        Signal::Spans => max_spans + 1,
        Signal::Logs => max_logs + 1,
    })
    .order_by_score();
    for (_, address) in search_segments(searcher, segments, &query, &limit)? {
        match signal {
            Signal::Spans => rows.spans.push(reader.span(address)?),
            Signal::Logs => rows.logs.push(reader.log(address)?.0),
        }
    }
    Ok(rows)
}

/// `searcher.search(query, collector)` over the segments named in `segments` only (all of
/// them without it). Document addresses keep the searcher's segment numbers.
pub(crate) fn search_segments<C: tantivy::collector::Collector>(
    searcher: &Searcher,
    segments: Option<&[String]>,
    query: &dyn Query,
    collector: &C,
) -> Result<C::Fruit, IndexError> {
    let Some(segments) = segments else {
        return Ok(searcher.search(query, collector)?);
    };
    let scoring = if collector.requires_scoring() {
        tantivy::query::EnableScoring::enabled_from_searcher(searcher)
    } else {
        tantivy::query::EnableScoring::disabled_from_searcher(searcher)
    };
    let weight = query.weight(scoring)?;
    let mut fruits = Vec::with_capacity(segments.len());
    for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
        if segments.contains(&segment.segment_id().uuid_string()) {
            fruits.push(collector.collect_segment(weight.as_ref(), ordinal as u32, segment)?);
        }
    }
    Ok(collector.merge_fruits(fruits)?)
}
