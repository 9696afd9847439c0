//! The questions a search node asks each ingest node, about the rows the ingest node holds
//! that are not yet in a published split: [`NodeQueries`]. One question, two answerers:
//! [`LocalNode`] answers from this node's store, and `super::fanout::RemoteNode` asks
//! another node over HTTP, whose `/api/v1/internal/*` routes (`crate::api::internal`) hand
//! the question to its own `LocalNode`. So a search node's merge sees the same typed answer
//! whichever way it came, and the wire format (`super::wire`) is the adapters' business.

use std::collections::HashSet;
use std::future::Future;

use weft_index::store::{PartitionRef, Scope, SplitOrigin};
use weft_index::{Candidates, LogSearch, RowBatch, Signal, SummaryPart, TraceRows, TraceSearch};

use super::aggregation::{Aggregated, Aggregation};
use super::requests::limits::{MAX_LOGS, MAX_TRACE_LOGS, MAX_TRACE_SPANS};
use super::{Deadline, Error, QueryService};

/// Most candidate traces one [`NodeQueries::trace_parts`] question names.
pub const MAX_PARTS_PER_QUESTION: usize = 100;

/// A node's answer: its part (`T`), and the partitions whose published splits that part
/// stands for (the asker leaves those splits out of its own part, so nothing counts twice).
#[derive(Debug)]
pub struct NodeAnswer<T> {
    /// The node that answered.
    pub node: String,
    /// Its part.
    pub value: T,
    /// The partitions it read.
    pub covers: Vec<PartitionRef>,
}

impl<T> NodeAnswer<T> {
    /// The covered partitions as splits of this node.
    pub fn covered(&self) -> impl Iterator<Item = SplitOrigin> + '_ {
        self.covers.iter().map(|partition| SplitOrigin {
            node: self.node.clone(),
            partition: partition.clone(),
        })
    }
}

/// Rows a node answered with.
#[derive(Debug, Default)]
pub struct Rows {
    /// The rows.
    pub rows: RowBatch,
    /// A trace: more rows than the limits allowed. A log search: more records matched than
    /// the page holds.
    pub more: bool,
}

/// What a node answers about its rows not yet in a published split. Every answer names the
/// partitions it read ([`NodeAnswer::covers`]).
pub trait NodeQueries: Send + Sync {
    /// Its rows of trace `id`, at most [`MAX_TRACE_SPANS`] and [`MAX_TRACE_LOGS`].
    fn trace(&self, id: [u8; 16]) -> impl Future<Output = Result<NodeAnswer<Rows>, Error>> + Send;

    /// Its page of log records matching `search`, newest first, from the search's cursor on.
    fn logs(
        &self,
        search: &LogSearch,
    ) -> impl Future<Output = Result<NodeAnswer<Rows>, Error>> + Send;

    /// The traces with a span matching `search`'s query and range (its duration filters and
    /// limit are the asker's), newest matching span first.
    fn trace_candidates(
        &self,
        search: &TraceSearch,
    ) -> impl Future<Output = Result<NodeAnswer<Candidates>, Error>> + Send;

    /// What it holds of each of `ids` (at most [`MAX_PARTS_PER_QUESTION`]) in `[start, end)`,
    /// in their order.
    fn trace_parts(
        &self,
        ids: &[[u8; 16]],
        start_unix_nano: u64,
        end_unix_nano: u64,
    ) -> impl Future<Output = Result<NodeAnswer<Vec<SummaryPart>>, Error>> + Send;

    /// Its part of `aggregation`.
    fn aggregate(
        &self,
        aggregation: &Aggregation,
    ) -> impl Future<Output = Result<NodeAnswer<Aggregated>, Error>> + Send;
}

/// This node answering from its own store.
pub struct LocalNode<'a> {
    service: &'a QueryService,
}

impl<'a> LocalNode<'a> {
    /// This node, answering with `service`'s store, permits and timeout.
    pub fn new(service: &'a QueryService) -> Self {
        LocalNode { service }
    }

    fn answer<T>(&self, value: T, covers: Vec<PartitionRef>) -> NodeAnswer<T> {
        NodeAnswer {
            node: self.service.node_id(),
            value,
            covers,
        }
    }
}

impl NodeQueries for LocalNode<'_> {
    async fn trace(&self, id: [u8; 16]) -> Result<NodeAnswer<Rows>, Error> {
        let (rows, read) = self
            .service
            .run_query(move |store, _| {
                Ok(store.trace_in(&id, MAX_TRACE_SPANS, MAX_TRACE_LOGS, &Scope::Unpublished)?)
            })
            .await?;
        let TraceRows {
            spans,
            logs,
            truncated,
        } = rows;
        let rows = Rows {
            rows: RowBatch { logs, spans },
            more: truncated,
        };
        Ok(self.answer(rows, read))
    }

    async fn logs(&self, search: &LogSearch) -> Result<NodeAnswer<Rows>, Error> {
        if let Some(q) = &search.query {
            weft_index::query::compile(q, Signal::Logs)?;
        }
        if search.limit == 0 || search.limit > MAX_LOGS {
            return Err(Error::BadRequest(format!(
                "limit must be from 1 to {MAX_LOGS}"
            )));
        }
        let search = search.clone();
        let (page, listed) = self
            .service
            .run_query(move |store, _| Ok(store.search_logs_in(&search, &Scope::Unpublished)?))
            .await?;
        let rows = Rows {
            rows: RowBatch {
                logs: page.logs,
                spans: Vec::new(),
            },
            more: page.more,
        };
        Ok(self.answer(rows, listed))
    }

    async fn trace_candidates(
        &self,
        search: &TraceSearch,
    ) -> Result<NodeAnswer<Candidates>, Error> {
        if let Some(q) = &search.query {
            weft_index::query::compile(q, Signal::Spans).map_err(Error::span_query)?;
        }
        let search = search.clone();
        let (found, read) = self
            .service
            .run_query(move |store, _| {
                let (scope, listed) = store.unpublished_scope();
                Ok((store.trace_candidates_in(&search, &scope)?.0, listed))
            })
            .await?;
        Ok(self.answer(found, read))
    }

    async fn trace_parts(
        &self,
        ids: &[[u8; 16]],
        start: u64,
        end: u64,
    ) -> Result<NodeAnswer<Vec<SummaryPart>>, Error> {
        if ids.len() > MAX_PARTS_PER_QUESTION {
            return Err(Error::BadRequest(format!(
                "at most {MAX_PARTS_PER_QUESTION} trace IDs per question, not {}",
                ids.len()
            )));
        }
        let ids = ids.to_vec();
        // One listing of the partitions for every trace of the answer: the partitions it
        // names are exactly those each trace was read from.
        let (parts, read) = self
            .service
            .run_query(move |store, deadline| {
                let (scope, listed) = store.unpublished_scope();
                Ok((
                    summary_parts(store, &ids, start, end, &scope, deadline)?.0,
                    listed,
                ))
            })
            .await?;
        Ok(self.answer(parts, read))
    }

    async fn aggregate(&self, aggregation: &Aggregation) -> Result<NodeAnswer<Aggregated>, Error> {
        aggregation.check_bounds()?;
        let aggregation = aggregation.clone();
        // One listing of the partitions for the whole answer, however often it lists them.
        let (value, read) = self
            .service
            .run_query(move |store, _| {
                let (scope, listed) = store.unpublished_scope();
                Ok((aggregation.run(store, &scope)?.0, listed))
            })
            .await?;
        Ok(self.answer(value, read))
    }
}

/// What the partitions `scope` reads hold of each of `ids` in `[start, end)`, and the local
/// partitions read.
pub(crate) fn summary_parts(
    store: &weft_index::Store,
    ids: &[[u8; 16]],
    start: u64,
    end: u64,
    scope: &Scope,
    deadline: &Deadline,
) -> Result<(Vec<SummaryPart>, Vec<PartitionRef>), Error> {
    let mut parts = Vec::with_capacity(ids.len());
    let mut read = HashSet::new();
    for id in ids {
        deadline.check()?;
        let (part, listed) = store.summary_part_in(id, start, end, scope)?;
        parts.push(part);
        read.extend(listed);
    }
    Ok((parts, read.into_iter().collect()))
}
