//! Log search, a trace, trace search and Jaeger's whole traces, over this node or, on a
//! search node, over the whole cluster: each live ingest node gives its part of rows not yet
//! published (`super::node`), the published splits the rest, and the parts are merged in
//! the order and with the cursors of a single node. Each function returns the ingest nodes
//! that did not answer, whose rows not yet published are then missing from the answer.
//! `authorization` is the caller's, passed on to the nodes asked.

use std::time::Instant;

use weft_index::store::Scope;
use weft_index::{
    LogCursor, LogPage, LogRow, LogSearch, MAX_CANDIDATE_TRACES, SummaryPart, TraceRows,
    TraceSearch, TraceSearchResult,
};

use super::node::{MAX_PARTS_PER_QUESTION, MAX_TRACE_LOGS, MAX_TRACE_SPANS, summary_parts};
use crate::api::{ApiError, ApiState};
use crate::fanout::FanOut;

/// A page of `search`. On a search node, each live ingest node gives its page of records not
/// yet published, the splits give theirs, and the newest `limit` of them all make the page:
/// the cursor is a position in one order shared by every node, so the next page continues
/// each source where this one stopped, with no gap and no repeat.
pub async fn log_page(
    state: &ApiState,
    search: LogSearch,
    authorization: Option<&str>,
) -> Result<(LogPage, Vec<String>), ApiError> {
    let Some(fanout) = state.fanout.clone() else {
        let page = state
            .run_query(move |store, _| Ok(store.search_logs(&search)?))
            .await?;
        return Ok((page, Vec::new()));
    };
    let gathered = fanout.logs(&search, authorization).await;
    let answered = Scope::Except(gathered.covered());
    let limit = search.limit;
    let (local, _) = state
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
    Ok((page, gathered.missing))
}

/// The rows of trace `id`. On a search node, the live ingest nodes give their rows not yet
/// published and the splits the rest.
pub async fn trace_rows(
    state: &ApiState,
    id: [u8; 16],
    authorization: Option<&str>,
) -> Result<(TraceRows, Vec<String>), ApiError> {
    let Some(fanout) = state.fanout.clone() else {
        let rows = state
            .run_query(move |store, _| Ok(store.trace(&id, MAX_TRACE_SPANS, MAX_TRACE_LOGS)?))
            .await?;
        return Ok((rows, Vec::new()));
    };
    let gathered = fanout.trace(id, authorization).await;
    let answered = Scope::Except(gathered.covered());
    let (mut rows, _) = state
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
    Ok((rows, gathered.missing))
}

/// The traces `search` finds. On a search node, the candidates are every live ingest node's
/// (from its rows not yet published) and the splits', newest matching span first; each
/// candidate's summary, and so its whole-trace duration, sums what every node holds of it.
pub async fn find_traces(
    state: &ApiState,
    search: TraceSearch,
    authorization: Option<&str>,
) -> Result<(TraceSearchResult, Vec<String>), ApiError> {
    let Some(fanout) = state.fanout.clone() else {
        let found = state
            .run_query(move |store, _| Ok(store.search_traces(&search)?))
            .await?;
        return Ok((found, Vec::new()));
    };
    let gathered = fanout.trace_candidates(&search, authorization).await;
    let mut missing = gathered.missing.clone();
    let answered = Scope::Except(gathered.covered());
    let local_search = search.clone();
    let (local, _) = state
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
    let deadline = Instant::now() + state.query_timeout;
    'chunks: while !rest.is_empty() {
        if Instant::now() >= deadline {
            return Err(ApiError::Timeout(state.query_timeout));
        }
        let wanted = if filtered {
            MAX_PARTS_PER_QUESTION
        } else {
            (search.limit + 1).saturating_sub(found.traces.len())
        };
        let (chunk, tail) = rest.split_at(wanted.clamp(1, MAX_PARTS_PER_QUESTION).min(rest.len()));
        rest = tail;
        let ids: Vec<[u8; 16]> = chunk.iter().map(|c| c.trace_id).collect();
        let parts =
            cluster_summary_parts(state, &fanout, &ids, near, authorization, &mut missing).await?;
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
    missing.sort();
    missing.dedup();
    Ok((found, missing))
}

/// What the whole cluster holds of each of `ids` in `range`: every live ingest node's part
/// and the splits' (those the nodes do not stand for); nodes that did not answer are added to
/// `missing`.
async fn cluster_summary_parts(
    state: &ApiState,
    fanout: &FanOut,
    ids: &[[u8; 16]],
    (start, end): (u64, u64),
    authorization: Option<&str>,
    missing: &mut Vec<String>,
) -> Result<Vec<SummaryPart>, ApiError> {
    let gathered = fanout.trace_parts(ids, (start, end), authorization).await;
    missing.extend(gathered.missing.iter().cloned());
    let answered = Scope::Except(gathered.covered());
    let local_ids = ids.to_vec();
    let (mut parts, _) = state
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
    state: &ApiState,
    search: TraceSearch,
    authorization: Option<&str>,
) -> Result<(Vec<([u8; 16], TraceRows)>, Vec<String>), ApiError> {
    if state.fanout.is_none() {
        let found = state
            .run_query(move |store, deadline| {
                let found = store.search_traces(&search)?;
                let mut out = Vec::with_capacity(found.traces.len());
                for summary in found.traces {
                    // Hundreds of lookups: stop once nobody waits for the answer.
                    deadline.check()?;
                    let rows = store.trace(&summary.trace_id, MAX_TRACE_SPANS, MAX_TRACE_LOGS)?;
                    out.push((summary.trace_id, rows));
                }
                Ok(out)
            })
            .await?;
        return Ok((found, Vec::new()));
    }
    let (found, mut missing) = find_traces(state, search, authorization).await?;
    let deadline = Instant::now() + state.query_timeout;
    let mut out = Vec::with_capacity(found.traces.len());
    for summary in found.traces {
        // Hundreds of lookups, each asking every node: stop once nobody waits.
        if Instant::now() >= deadline {
            return Err(ApiError::Timeout(state.query_timeout));
        }
        let (rows, gone) = trace_rows(state, summary.trace_id, authorization).await?;
        missing.extend(gone);
        out.push((summary.trace_id, rows));
    }
    missing.sort();
    missing.dedup();
    Ok((out, missing))
}
