//! A trace by ID, trace search, and whole traces (Jaeger's searches answer with every row of
//! each trace found): over this node's store, or on a search node over the published splits
//! plus every live ingest node's part, merged as one node would answer. Each answer names the
//! ingest nodes that did not answer, whose rows not yet published are then missing.

use std::time::Instant;

use weft_index::store::Scope;
use weft_index::{MAX_CANDIDATE_TRACES, SummaryPart, TraceRows, TraceSearch, TraceSearchResult};

use super::fanout::FanOut;
use super::node::{MAX_PARTS_PER_QUESTION, summary_parts};
use super::requests::limits::{MAX_TRACE_LOGS, MAX_TRACE_SPANS};
use super::skew::{TraceSkew, trace_skew};
use super::{Answer, Error, QueryService};

/// A trace's rows, and the clock skew of its services.
#[derive(Debug, Default)]
pub struct Trace {
    pub rows: TraceRows,
    pub skew: TraceSkew,
}

impl From<TraceRows> for Trace {
    fn from(rows: TraceRows) -> Self {
        Trace {
            skew: trace_skew(&rows.spans),
            rows,
        }
    }
}

/// "trace … not found", and which ingest nodes did not answer: the trace may be among their
/// rows not yet published.
pub fn not_found_message(id: [u8; 16], missing: &[String]) -> String {
    let mut message = format!("trace {} not found", hex::encode(id));
    if !missing.is_empty() {
        message.push_str(&format!(
            "; ingest nodes {} did not answer, and their records not yet published were not searched",
            missing.join(", ")
        ));
    }
    message
}

impl QueryService {
    /// Trace `id`: its rows from wherever they are (see [`QueryService::trace_rows`]) and the
    /// clock skew of its services.
    pub async fn trace(
        &self,
        id: [u8; 16],
        authorization: Option<&str>,
    ) -> Result<Answer<Trace>, Error> {
        Ok(self.trace_rows(id, authorization).await?.map(Trace::from))
    }

    /// The rows of trace `id`. On a search node, the live ingest nodes give their rows not yet
    /// published and the splits the rest.
    pub async fn trace_rows(
        &self,
        id: [u8; 16],
        authorization: Option<&str>,
    ) -> Result<Answer<TraceRows>, Error> {
        let Some(fanout) = self.fanout().cloned() else {
            let rows = self
                .run_query(move |store, _| Ok(store.trace(&id, MAX_TRACE_SPANS, MAX_TRACE_LOGS)?))
                .await?;
            return Ok(Answer::whole(rows));
        };
        let gathered = fanout.trace(id, authorization).await;
        let answered = Scope::Except(gathered.covered());
        let (mut rows, _) = self
            .run_query(move |store, _| {
                Ok(store.trace_in(&id, MAX_TRACE_SPANS, MAX_TRACE_LOGS, &answered)?)
            })
            .await?;
        for answer in gathered.answers {
            rows.spans.extend(answer.value.rows.spans);
            rows.logs.extend(answer.value.rows.logs);
            rows.truncated |= answer.value.more;
        }
        rows.settle(MAX_TRACE_SPANS, MAX_TRACE_LOGS);
        Ok(Answer::missing(rows, gathered.missing))
    }

    /// The traces `search` finds. On a search node, the candidates are every live ingest node's
    /// (from its rows not yet published) and the splits', newest matching span first; each
    /// candidate's summary, and so its whole-trace duration, sums what every node holds of it.
    pub async fn find_traces(
        &self,
        search: TraceSearch,
        authorization: Option<&str>,
    ) -> Result<Answer<TraceSearchResult>, Error> {
        let Some(fanout) = self.fanout().cloned() else {
            let found = self
                .run_query(move |store, _| Ok(store.search_traces(&search)?))
                .await?;
            return Ok(Answer::whole(found));
        };
        let gathered = fanout.trace_candidates(&search, authorization).await;
        let mut missing = gathered.missing.clone();
        let answered = Scope::Except(gathered.covered());
        let local_search = search.clone();
        let (local, _) = self
            .run_query(move |store, _| Ok(store.trace_candidates_in(&local_search, &answered)?))
            .await?;
        let mut all = local;
        for answer in gathered.answers {
            all.capped |= answer.value.capped;
            all.traces.extend(answer.value.traces);
        }
        // In the order one node makes: a trace matched on several nodes comes once, at its newest.
        all.sort();
        let mut capped = all.capped;
        let mut candidates = all.traces;
        if candidates.len() > MAX_CANDIDATE_TRACES {
            candidates.truncate(MAX_CANDIDATE_TRACES);
            capped = true;
        }

        let near = search.near_range();
        let mut found = TraceSearchResult::default();
        let mut rest = candidates.as_slice();
        // Without duration filters, every summary fits: enough of them to fill the page and tell
        // whether there is more. With them, most may not: as many as one question carries.
        let filtered = search.min_duration_ns.is_some() || search.max_duration_ns.is_some();
        let deadline = Instant::now() + self.timeout();
        'chunks: while !rest.is_empty() {
            if Instant::now() >= deadline {
                return Err(Error::Timeout(self.timeout()));
            }
            let wanted = if filtered {
                MAX_PARTS_PER_QUESTION
            } else {
                (search.limit + 1).saturating_sub(found.traces.len())
            };
            let (chunk, tail) =
                rest.split_at(wanted.clamp(1, MAX_PARTS_PER_QUESTION).min(rest.len()));
            rest = tail;
            let ids: Vec<[u8; 16]> = chunk.iter().map(|c| c.trace_id).collect();
            let parts = self
                .cluster_summary_parts(&fanout, &ids, near, authorization, &mut missing)
                .await?;
            for (id, part) in ids.into_iter().zip(parts) {
                let summary = part.summary(id);
                if !search.fits(summary.duration_ns) {
                    continue;
                }
                if found.traces.len() == search.limit {
                    found.limited = true;
                    break 'chunks;
                }
                found.traces.push(summary);
            }
        }
        found.limited |= capped;
        Ok(Answer::missing(found, missing))
    }

    /// What the whole cluster holds of each of `ids` in `range`: every live ingest node's part
    /// and the splits' (those the nodes do not stand for); nodes that did not answer are added to
    /// `missing`.
    async fn cluster_summary_parts(
        &self,
        fanout: &FanOut,
        ids: &[[u8; 16]],
        (start, end): (u64, u64),
        authorization: Option<&str>,
        missing: &mut Vec<String>,
    ) -> Result<Vec<SummaryPart>, Error> {
        let gathered = fanout.trace_parts(ids, (start, end), authorization).await;
        missing.extend(gathered.missing.iter().cloned());
        let answered = Scope::Except(gathered.covered());
        let local_ids = ids.to_vec();
        let (mut parts, _) = self
            .run_query(move |store, deadline| {
                summary_parts(store, &local_ids, start, end, &answered, deadline)
            })
            .await?;
        for answer in gathered.answers {
            for (part, theirs) in parts.iter_mut().zip(answer.value) {
                part.merge(theirs);
            }
        }
        Ok(parts)
    }

    /// The traces `search` finds, each with every row of it (from every node on a search node,
    /// as its own lookup gathers them), within the query timeout. For Jaeger's searches, whose
    /// answers carry whole traces; and the ingest nodes that did not answer.
    pub async fn whole_traces(
        &self,
        search: TraceSearch,
        authorization: Option<&str>,
    ) -> Result<Answer<Vec<([u8; 16], Trace)>>, Error> {
        if self.fanout().is_none() {
            let found = self
                .run_query(move |store, deadline| {
                    let found = store.search_traces(&search)?;
                    let mut out = Vec::with_capacity(found.traces.len());
                    for summary in found.traces {
                        // Hundreds of lookups: stop once nobody waits for the answer.
                        deadline.check()?;
                        let rows =
                            store.trace(&summary.trace_id, MAX_TRACE_SPANS, MAX_TRACE_LOGS)?;
                        out.push((summary.trace_id, Trace::from(rows)));
                    }
                    Ok(out)
                })
                .await?;
            return Ok(Answer::whole(found));
        }
        let Answer {
            value: found,
            missing_nodes: mut missing,
        } = self.find_traces(search, authorization).await?;
        let deadline = Instant::now() + self.timeout();
        let mut out = Vec::with_capacity(found.traces.len());
        for summary in found.traces {
            // Hundreds of lookups, each asking every node: stop once nobody waits.
            if Instant::now() >= deadline {
                return Err(Error::Timeout(self.timeout()));
            }
            let rows = self.trace_rows(summary.trace_id, authorization).await?;
            missing.extend(rows.missing_nodes);
            out.push((summary.trace_id, Trace::from(rows.value)));
        }
        Ok(Answer::missing(out, missing))
    }
}
