//! Log search, newest first, and the log histogram: over this node's store, or on a search node
//! over the published splits plus every live ingest node's rows not yet published, merged in
//! the order and with the cursors of a single node.

use weft_index::aggregate::HistogramBucket;
use weft_index::store::Scope;
use weft_index::{LogCursor, LogPage, LogRow, LogSearch, Signal};

use super::aggregation::{Aggregation, MAX_BUCKETS};
use super::requests::{count, time_range};
use super::{Answer, Error, QueryService};

/// Histogram buckets when a request names no number.
pub const DEFAULT_BUCKETS: usize = 60;

/// Log records matching `q` in `buckets` equal buckets of `[start, end)`, by severity band.
#[derive(Clone, Debug)]
pub struct HistogramRequest {
    pub q: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub buckets: usize,
}

impl HistogramRequest {
    /// The request from its parameters as text (default: 60 buckets over the last hour).
    pub fn parse(
        q: &str,
        start: Option<&str>,
        end: Option<&str>,
        buckets: Option<&str>,
    ) -> Result<Self, Error> {
        if let Some(query) = weft_index::query::parse(q)? {
            weft_index::query::compile(&query, Signal::Logs)?;
        }
        let (start, end) = time_range(start, end)?;
        Ok(HistogramRequest {
            q: q.to_string(),
            start_unix_nano: start,
            end_unix_nano: end,
            buckets: count("buckets", buckets, DEFAULT_BUCKETS, MAX_BUCKETS)?,
        })
    }

    /// Each bucket's width.
    pub fn bucket_ns(&self) -> u64 {
        (self.end_unix_nano - self.start_unix_nano)
            .div_ceil(self.buckets as u64)
            .max(1)
    }
}

impl QueryService {
    /// A page of `search`. On a search node, each live ingest node gives its page of records
    /// not yet published, the splits give theirs, and the newest `limit` of them all make the
    /// page: the cursor is a position in one order shared by every node, so the next page
    /// continues each source where this one stopped, with no gap and no repeat.
    /// `authorization` is the caller's, passed on to the nodes asked.
    pub async fn search_logs(
        &self,
        search: LogSearch,
        authorization: Option<&str>,
    ) -> Result<Answer<LogPage>, Error> {
        let Some(fanout) = self.fanout().cloned() else {
            let page = self
                .run_query(move |store, _| Ok(store.search_logs(&search)?))
                .await?;
            return Ok(Answer::whole(page));
        };
        let gathered = fanout.logs(&search, authorization).await;
        let answered = Scope::Except(gathered.covered());
        let limit = search.limit;
        let (local, _) = self
            .run_query(move |store, _| Ok(store.search_logs_in(&search, &answered)?))
            .await?;
        let mut more = local.more;
        let mut rows: Vec<(LogCursor, LogRow)> = local
            .logs
            .into_iter()
            .map(|row| (LogCursor::of(&row), row))
            .collect();
        for answer in gathered.answers {
            more |= answer.value.more;
            rows.extend(
                answer
                    .value
                    .rows
                    .logs
                    .into_iter()
                    .map(|row| (LogCursor::of(&row), row)),
            );
        }
        rows.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
        if rows.len() > limit {
            more = true;
            rows.truncate(limit);
        }
        let next_cursor = if more {
            rows.last().map(|(key, _)| *key)
        } else {
            None
        };
        let page = LogPage {
            logs: rows.into_iter().map(|(_, row)| row).collect(),
            more,
            next_cursor,
        };
        Ok(Answer::missing(page, gathered.missing))
    }

    /// The histogram `request` asks for, its buckets in order (what a node adds past the
    /// buckets asked for is not counted).
    pub async fn log_histogram(
        &self,
        request: &HistogramRequest,
        authorization: Option<&str>,
    ) -> Result<Answer<Vec<HistogramBucket>>, Error> {
        let aggregation = Aggregation::Histogram {
            q: request.q.clone(),
            start_unix_nano: request.start_unix_nano,
            end_unix_nano: request.end_unix_nano,
            buckets: request.buckets,
        };
        let found = self.aggregate(aggregation, authorization).await?;
        let mut buckets = found
            .value
            .histogram_buckets(request.start_unix_nano, request.bucket_ns());
        buckets.truncate(request.buckets);
        Ok(Answer::missing(buckets, found.missing_nodes))
    }
}
