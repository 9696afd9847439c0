//! Reading rows back: log search newest first, and every row of one trace.

use std::ops::Bound;

use prost::Message;
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{DocAddress, Order, Searcher, TantivyDocument, Term};

use crate::error::IndexError;
use crate::query::{Expr, compile};
use crate::store::Store;
use crate::{LogRow, Signal, SpanRow, log_fields, span_fields};

/// A log search.
#[derive(Clone, Debug)]
pub struct LogSearch {
    /// The parsed query; `None` matches every record.
    pub query: Option<Expr>,
    /// Inclusive start of the time range.
    pub start_unix_nano: u64,
    /// Exclusive end of the time range.
    pub end_unix_nano: u64,
    /// Most records to return.
    pub limit: usize,
}

/// Records found by a log search.
#[derive(Clone, Debug, Default)]
pub struct LogPage {
    /// Matching records, newest first.
    pub logs: Vec<LogRow>,
    /// True when more records matched than `limit`.
    pub more: bool,
}

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

pub(crate) fn time_range(field: Field, start: u64, end: u64) -> Box<dyn Query> {
    Box::new(RangeQuery::new(
        Bound::Included(Term::from_field_u64(field, start)),
        Bound::Excluded(Term::from_field_u64(field, end)),
    ))
}

fn stored_source<M: Message + Default>(
    searcher: &Searcher,
    field: Field,
    address: DocAddress,
) -> Result<M, IndexError> {
    let doc: TantivyDocument = searcher.doc(address)?;
    let bytes = doc
        .get_first(field)
        .and_then(|v| v.as_bytes())
        .unwrap_or_default();
    Ok(M::decode(bytes)?)
}

impl Store {
    /// Log records matching `search`, newest first.
    pub fn search_logs(&self, search: &LogSearch) -> Result<LogPage, IndexError> {
        let fields = log_fields();
        let matcher: Box<dyn Query> = match &search.query {
            Some(expr) => compile(expr, Signal::Logs)?,
            None => Box::new(AllQuery),
        };
        let query = BooleanQuery::new(vec![
            (Occur::Must, matcher),
            (
                Occur::Must,
                time_range(fields.time, search.start_unix_nano, search.end_unix_nano),
            ),
        ]);
        let mut page = LogPage::default();
        // Partitions do not overlap in time, so walking them newest first and stopping once
        // the page is full yields the newest records overall.
        for partition in
            self.partitions_overlapping(Signal::Logs, search.start_unix_nano, search.end_unix_nano)
        {
            let wanted = search.limit + 1 - page.logs.len();
            let searcher = partition.searcher();
            let hits = searcher.search(
                &query,
                &TopDocs::with_limit(wanted).order_by_fast_field::<u64>("time", Order::Desc),
            )?;
            for (_, address) in hits {
                if page.logs.len() == search.limit {
                    page.more = true;
                    break;
                }
                page.logs
                    .push(stored_source(&searcher, fields.source, address)?);
            }
            if page.more {
                break;
            }
        }
        Ok(page)
    }

    /// Every span and log of `trace_id`, from every partition: a trace is found whatever its
    /// age, and wherever its rows fell in time.
    pub fn trace(
        &self,
        trace_id: &[u8; 16],
        max_spans: usize,
        max_logs: usize,
    ) -> Result<TraceRows, IndexError> {
        let mut rows = TraceRows::default();
        let span_query = TermQuery::new(
            Term::from_field_bytes(span_fields().trace_id, trace_id),
            IndexRecordOption::Basic,
        );
        for partition in self.partitions_overlapping(Signal::Spans, 0, u64::MAX) {
            let searcher = partition.searcher();
            let hits = searcher.search(
                &span_query,
                &TopDocs::with_limit(max_spans + 1).order_by_score(),
            )?;
            for (_, address) in hits {
                rows.spans
                    .push(stored_source(&searcher, span_fields().source, address)?);
            }
        }
        let log_query = TermQuery::new(
            Term::from_field_bytes(log_fields().trace_id, trace_id),
            IndexRecordOption::Basic,
        );
        for partition in self.partitions_overlapping(Signal::Logs, 0, u64::MAX) {
            let searcher = partition.searcher();
            let hits = searcher.search(
                &log_query,
                &TopDocs::with_limit(max_logs + 1).order_by_score(),
            )?;
            for (_, address) in hits {
                rows.logs
                    .push(stored_source(&searcher, log_fields().source, address)?);
            }
        }
        rows.spans
            .sort_by_key(|s: &SpanRow| (s.start_time_unix_nano, s.span_id.clone()));
        rows.logs.sort_by_key(|l: &LogRow| l.time_unix_nano);
        if rows.spans.len() > max_spans || rows.logs.len() > max_logs {
            rows.truncated = true;
            rows.spans.truncate(max_spans);
            rows.logs.truncate(max_logs);
        }
        Ok(rows)
    }
}
