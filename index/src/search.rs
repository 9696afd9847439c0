//! Reading rows back: log search newest first, and every row of one trace.

use std::ops::Bound;

use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::Field;
use tantivy::{Order, Searcher, Term};

use crate::error::IndexError;
use crate::lookup::{TraceRows, search_segments, trace_rows_in};
use crate::query::{Expr, compile};
use crate::rows::RowReader;
use crate::store::{PartitionRef, Scope, Store};
use crate::trace_filter::TraceSegments;
use crate::{LogRow, Signal, log_fields};

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
    /// Continue after this record (from a previous page's `next_cursor`).
    pub cursor: Option<LogCursor>,
}

/// Records found by a log search.
#[derive(Clone, Debug, Default)]
pub struct LogPage {
    /// Matching records, newest first.
    pub logs: Vec<LogRow>,
    /// True when more records matched than `limit`.
    pub more: bool,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<LogCursor>,
}

/// A position in the newest-first order of log records: the last record of a page.
///
/// Records are ordered by time, then by a hash of the whole row's encoding (whichever format
/// stores it), so the order is total
/// and does not depend on how tantivy happens to lay out segments. Records arriving while a
/// client pages are newer than its cursor or land in their place in time; either way no page
/// repeats or skips a record that was there when the first page was read. (Two identical
/// records share a position and may be shown once.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogCursor {
    /// Time of the last record returned.
    pub time_unix_nano: u64,
    /// Its tie-breaking hash.
    pub tiebreak: u64,
}

impl LogCursor {
    /// The position of `row` in the order of log records.
    pub fn of(row: &LogRow) -> LogCursor {
        LogCursor {
            time_unix_nano: row.time_unix_nano,
            tiebreak: crate::rows::row_hash(row),
        }
    }

    /// The opaque text form clients pass back.
    pub fn encode(&self) -> String {
        format!("{:016x}{:016x}", self.time_unix_nano, self.tiebreak)
    }

    /// Parses [`LogCursor::encode`]'s output.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        Some(LogCursor {
            time_unix_nano: u64::from_str_radix(text.get(..16)?, 16).ok()?,
            tiebreak: u64::from_str_radix(text.get(16..)?, 16).ok()?,
        })
    }
}

/// Time windows a log search tries, newest first, before the whole range (10 s, 100 s, 1000 s).
const SEARCH_WINDOWS_NANOS: [u64; 4] =
    [10_000_000_000, 100_000_000_000, 1_000_000_000_000, u64::MAX];

/// Most records sharing one timestamp that a page boundary handles exactly.
const MAX_TIES: usize = 10_000;

pub(crate) fn time_range(field: Field, start: u64, end: u64) -> Box<dyn Query> {
    Box::new(RangeQuery::new(
        Bound::Included(Term::from_field_u64(field, start)),
        Bound::Excluded(Term::from_field_u64(field, end)),
    ))
}

struct Hit {
    key: LogCursor,
    row: LogRow,
}

/// Newest-first hits of `matcher` in `[start, end)` of one partition: at least the newest
/// `want` (fewer if fewer match), plus every record sharing the oldest time among them, so a
/// page boundary never splits a group of equal times arbitrarily.
fn partition_hits(
    partition: &crate::partition::Partition,
    matcher: &dyn Query,
    start: u64,
    end: u64,
    want: usize,
) -> Result<Vec<Hit>, IndexError> {
    let searcher = &partition.searcher();
    let segments = segments_that_may_match(partition, searcher, matcher)?;
    if segments.as_ref().is_some_and(|s| s.is_empty()) {
        return Ok(Vec::new());
    }
    let fields = log_fields();
    let mut rows = RowReader::new(searcher);
    let mut run = |from: u64, to: u64, limit: usize| -> Result<Vec<Hit>, IndexError> {
        let query = BooleanQuery::new(vec![
            (Occur::Must, matcher.box_clone()),
            (Occur::Must, time_range(fields.time, from, to)),
        ]);
        let found = search_segments(
            searcher,
            segments.as_deref(),
            &query,
            &TopDocs::with_limit(limit).order_by_fast_field::<u64>("time", Order::Desc),
        )?;
        found
            .into_iter()
            .map(|(_, address)| {
                let (row, hash) = rows.log(address)?;
                Ok(Hit {
                    key: LogCursor {
                        time_unix_nano: row.time_unix_nano,
                        tiebreak: hash,
                    },
                    row,
                })
            })
            .collect()
    };
    let mut hits = run(start, end, want)?;
    if hits.len() == want
        && let Some(oldest) = hits.iter().map(|h| h.key.time_unix_nano).min()
    {
        hits.retain(|h| h.key.time_unix_nano != oldest);
        hits.extend(run(oldest, oldest + 1, MAX_TIES)?);
    }
    hits.sort_by_key(|h| std::cmp::Reverse(h.key));
    Ok(hits)
}

/// For a split read in place, the segments where `matcher` matches something; `None` (all of
/// them) for a partition on the local disk.
///
/// Ordering hits by time opens a segment's time column, which tantivy reads whole, whether
/// or not the segment has a match; from object storage that is a request and megabytes per
/// segment. Finding that a word or an ID is absent costs a term dictionary block, often
/// already in the hot cache.
fn segments_that_may_match(
    partition: &crate::partition::Partition,
    searcher: &Searcher,
    matcher: &dyn Query,
) -> Result<Option<Vec<String>>, IndexError> {
    if !partition.is_read_in_place() {
        return Ok(None);
    }
    let weight = matcher.weight(tantivy::query::EnableScoring::disabled_from_searcher(
        searcher,
    ))?;
    let mut matching = Vec::new();
    for segment in searcher.segment_readers() {
        if weight.scorer(segment, 1.0)?.doc() != tantivy::TERMINATED {
            matching.push(segment.segment_id().uuid_string());
        }
    }
    Ok(Some(matching))
}

impl Store {
    /// Log records matching `search`, newest first, from its cursor on.
    pub fn search_logs(&self, search: &LogSearch) -> Result<LogPage, IndexError> {
        Ok(self.search_logs_in(search, &Scope::All)?.0)
    }

    /// [`Store::search_logs`] over the partitions `scope` reads; also returns the local
    /// partitions it listed, which a search node then leaves out of its own part (a listed
    /// partition left unread holds only records older than the page).
    pub fn search_logs_in(
        &self,
        search: &LogSearch,
        scope: &Scope,
    ) -> Result<(LogPage, Vec<PartitionRef>), IndexError> {
        let mut listed = std::collections::BTreeSet::new();
        let matcher: Box<dyn Query> = match &search.query {
            Some(expr) => compile(expr, Signal::Logs)?,
            None => Box::new(AllQuery),
        };
        let start = search.start_unix_nano;
        let mut end = search.end_unix_nano;
        let mut hits: Vec<Hit> = Vec::new();
        if let Some(cursor) = search.cursor {
            // The rest of the cursor's time group first, then strictly older records.
            let t = cursor.time_unix_nano;
            if t >= start && t < end {
                let partitions = self.partitions_matching_in(
                    Signal::Logs,
                    t,
                    t + 1,
                    search.query.as_ref(),
                    scope,
                )?;
                listed.extend(partitions.local_refs());
                for partition in partitions {
                    let partition = partition?;
                    let mut ties = partition_hits(&partition, &*matcher, t, t + 1, MAX_TIES)?;
                    ties.retain(|h| h.key < cursor);
                    hits.extend(ties);
                }
                // The parts of one hour each gave theirs: one order before the page is cut.
                hits.sort_by_key(|h| std::cmp::Reverse(h.key));
            }
            end = end.min(t);
        }
        // A common word matches millions of records, and ranking them all by time is what makes
        // a broad search slow. Recent windows are tried first, widening until one fills the
        // page: everything newer than a window's start is inside it, so a full window holds
        // the newest records of the whole range.
        let before_window = hits.len();
        // Windows count back from the newest record of the range rather than from its end: a
        // range that ends now holds nothing in its last seconds once ingest pauses, and every
        // empty window costs a pass over each segment's time column.
        let anchor = match hits.len() > search.limit {
            // The cursor's ties fill the page: no window is searched.
            true => end,
            false => self
                .newest_log_time(start, end, search.query.as_ref(), scope)?
                .map_or(end, |newest| newest.saturating_add(1).min(end)),
        };
        for window in SEARCH_WINDOWS_NANOS {
            let window_start = anchor.saturating_sub(window).max(start);
            hits.truncate(before_window);
            self.collect_newest(
                &*matcher,
                search.query.as_ref(),
                (window_start, end),
                (search.limit, scope),
                &mut hits,
                &mut listed,
            )?;
            if hits.len() > search.limit || window_start == start {
                break;
            }
        }
        let more = hits.len() > search.limit;
        hits.truncate(search.limit);
        let next_cursor = if more {
            hits.last().map(|h| h.key)
        } else {
            None
        };
        let page = LogPage {
            logs: hits.into_iter().map(|h| h.row).collect(),
            more,
            next_cursor,
        };
        Ok((page, listed.into_iter().collect()))
    }

    /// The time of the newest log record in `[start, end)` by the newest hour's segments'
    /// time columns (their largest value, kept in each column's header), or `None` when that
    /// hour's newest is past the range, nothing is there, or the hour is a split read in
    /// place. Only a hint for where to start looking: any answer leaves the search's result
    /// the same.
    fn newest_log_time(
        &self,
        start: u64,
        end: u64,
        query: Option<&Expr>,
        scope: &Scope,
    ) -> Result<Option<u64>, IndexError> {
        if start >= end {
            return Ok(None);
        }
        let mut partitions = self.partitions_matching_in(Signal::Logs, start, end, query, scope)?;
        let Some(hour) = partitions.next_hour() else {
            return Ok(None);
        };
        let mut newest: Option<u64> = None;
        while partitions.next_hour() == Some(hour) {
            // A partition only in object storage would be opened (fetched) for this.
            if !partitions.next_is_local() {
                return Ok(None);
            }
            let Some(partition) = partitions.next() else {
                break;
            };
            let partition = partition?;
            // A split read in place would fetch each segment's whole time column for this.
            if partition.is_read_in_place() {
                return Ok(None);
            }
            let searcher = partition.searcher();
            for reader in searcher.segment_readers() {
                if reader.num_docs() == 0 {
                    continue;
                }
                let column = reader.fast_fields().u64("time")?;
                newest = Some(newest.map_or(column.max_value(), |n| n.max(column.max_value())));
            }
        }
        Ok(newest.filter(|&t| t >= start && t < end))
    }

    /// Adds the newest hits in `[start, end)` of the partitions `scope` reads until there are
    /// more than `limit`; adds the local partitions listed to `listed`.
    fn collect_newest(
        &self,
        matcher: &dyn Query,
        query: Option<&Expr>,
        (start, end): (u64, u64),
        (limit, scope): (usize, &Scope),
        hits: &mut Vec<Hit>,
        listed: &mut std::collections::BTreeSet<PartitionRef>,
    ) -> Result<(), IndexError> {
        if start >= end {
            return Ok(());
        }
        // Hours do not overlap in time, so walking them newest first and stopping once the
        // page is full yields the newest records overall. The parts of one hour do overlap:
        // each gives its newest, and they are merged.
        let before = hits.len();
        let mut partitions = self.partitions_matching_in(Signal::Logs, start, end, query, scope)?;
        listed.extend(partitions.local_refs());
        let mut hour = None;
        let mut before_hour = hits.len();
        loop {
            if hits.len() > limit && partitions.next_hour() != hour {
                break;
            }
            let Some(partition) = partitions.next() else {
                break;
            };
            let partition = partition?;
            if hour != Some(partition.start_ns) {
                hour = Some(partition.start_ns);
                before_hour = hits.len();
            }
            let want = limit + 1 - before_hour;
            hits.extend(partition_hits(&partition, matcher, start, end, want)?);
        }
        hits[before..].sort_by_key(|h| std::cmp::Reverse(h.key));
        Ok(())
    }

    /// Every span and log of `trace_id`, from every partition: a trace is found whatever its
    /// age, and wherever its rows fell in time.
    pub fn trace(
        &self,
        trace_id: &[u8; 16],
        max_spans: usize,
        max_logs: usize,
    ) -> Result<TraceRows, IndexError> {
        Ok(self.trace_in(trace_id, max_spans, max_logs, &Scope::All)?.0)
    }

    /// [`Store::trace`] over the partitions `scope` reads; also returns the local partitions
    /// read, which a search node then leaves out of its own part.
    pub fn trace_in(
        &self,
        trace_id: &[u8; 16],
        max_spans: usize,
        max_logs: usize,
        scope: &Scope,
    ) -> Result<(TraceRows, Vec<PartitionRef>), IndexError> {
        // Spans and logs are looked up together, so that the remote hours of both are read
        // at once (see `Partitions::read_all`).
        let partitions = self
            .partitions_for_trace(Signal::Spans, trace_id, scope)?
            .chain(self.partitions_for_trace(Signal::Logs, trace_id, scope)?);
        let read = partitions.local_refs();
        let found = partitions.read_all(|partition| {
            let searcher = partition.searcher();
            let segments = match self.trace_segments(partition, &searcher, trace_id) {
                TraceSegments::None => return Ok(TraceRows::default()),
                TraceSegments::Some(segments) => Some(segments),
                TraceSegments::All => None,
            };
            partition.prefetch_for_lookup(segments.as_deref())?;
            trace_rows_in(
                &searcher,
                segments.as_deref(),
                partition.signal,
                trace_id,
                (max_spans, max_logs),
            )
        })?;
        let mut rows = TraceRows::default();
        for found in found {
            rows.spans.extend(found.spans);
            rows.logs.extend(found.logs);
        }
        rows.settle(max_spans, max_logs);
        Ok((rows, read))
    }
}
