//! `GET /api/v1/traces/{trace_id}` (every span and log of a trace, and a summary) and
//! `GET /api/v1/traces` (trace search); on a search node both over the whole cluster, whose
//! ingest nodes answer `/api/v1/internal/trace/{id}`, `/api/v1/internal/trace-candidates`
//! and `/api/v1/internal/trace-parts`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_index::query::{CmpOp, Expr, parse};
use weft_index::store::{PartitionRef, Scope};

use weft_index::{
    LogRow, MAX_CANDIDATE_TRACES, RowBatch, SpanRow, SummaryPart, TraceCandidate, TraceRows,
    TraceSearch, TraceSearchResult, TraceSummary,
};

use super::params::{limit, parse_duration_ns, time_range};
use super::{ApiError, ApiState};
use crate::fanout::{InternalAnswer, InternalRows};

/// Most spans and logs one trace answer carries.
pub(crate) const MAX_SPANS: usize = 10_000;
pub(crate) const MAX_LOGS: usize = 50_000;

/// Parses a 32-hex-character trace ID.
pub(crate) fn parse_trace_id(text: &str) -> Result<[u8; 16], ApiError> {
    let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 16);
    bytes
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .filter(|b| b.iter().any(|x| *x != 0))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "trace ID must be 32 hex characters and not all zero, not '{text}'"
            ))
        })
}

/// `GET /api/v1/internal/trace/{trace_id}`: this node's rows of a trace not yet in a
/// published split, and the partitions read, for a search node (`crate::fanout`).
pub(crate) async fn internal_trace(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
) -> Result<Json<InternalRows>, ApiError> {
    let id = parse_trace_id(&trace_id)?;
    let (rows, read) = state
        .run_query(move |store, _| {
            Ok(store.trace_in(&id, MAX_SPANS, MAX_LOGS, &Scope::Unpublished)?)
        })
        .await?;
    let node = state.cluster.as_ref().map(|c| c.me().id.clone());
    let batch = RowBatch {
        logs: rows.logs,
        spans: rows.spans,
    };
    Ok(Json(InternalRows::new(node, batch, rows.truncated, &read)))
}

/// The rows of trace `id`, and the ingest nodes that did not answer. On a search node, the
/// live ingest nodes give their rows not yet published and the splits the rest;
/// `authorization` (the caller's) is passed on to them.
pub(crate) async fn trace_rows(
    state: &ApiState,
    id: [u8; 16],
    authorization: Option<String>,
) -> Result<(TraceRows, Vec<String>), ApiError> {
    let Some(fanout) = state.fanout.clone() else {
        let rows = state
            .run_query(move |store, _| Ok(store.trace(&id, MAX_SPANS, MAX_LOGS)?))
            .await?;
        return Ok((rows, Vec::new()));
    };
    let gathered = fanout.trace(&id, authorization.as_deref()).await;
    let answered = Scope::Except(gathered.covered());
    let (mut rows, _) = state
        .run_query(move |store, _| Ok(store.trace_in(&id, MAX_SPANS, MAX_LOGS, &answered)?))
        .await?;
    for answer in gathered.answers {
        rows.spans.extend(answer.rows.spans);
        rows.logs.extend(answer.rows.logs);
        rows.truncated |= answer.more;
    }
    rows.settle(MAX_SPANS, MAX_LOGS);
    Ok((rows, gathered.missing))
}

/// What a search node asks each ingest node for a trace search's candidate traces
/// (`POST /api/v1/internal/trace-candidates`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CandidateQuestion {
    query: Option<Expr>,
    start_unix_nano: u64,
    end_unix_nano: u64,
}

/// A node's candidate traces: (trace ID in hex, start of its newest matching span there).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct CandidateList {
    traces: Vec<(String, u64)>,
    /// More matched than a search examines.
    capped: bool,
}

/// What a search node asks each ingest node for the summaries of some candidate traces
/// (`POST /api/v1/internal/trace-parts`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PartsQuestion {
    trace_ids: Vec<String>,
    start_unix_nano: u64,
    end_unix_nano: u64,
}

/// A node's parts of those traces: their spans (a `RowBatch`, protobuf, base64), and their
/// log records counted per service, in the order of the question's trace IDs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PartsList {
    spans: String,
    logs_by_service: Vec<BTreeMap<String, u64>>,
}

/// Most candidate traces one [`PartsQuestion`] names.
const MAX_PARTS_PER_QUESTION: usize = 100;

/// `POST /api/v1/internal/trace-candidates`: this node's candidate traces of a search among
/// its rows not yet in a published split, and the partitions read.
pub(crate) async fn internal_trace_candidates(
    State(state): State<ApiState>,
    Json(question): Json<CandidateQuestion>,
) -> Result<Json<InternalAnswer<CandidateList>>, ApiError> {
    if let Some(q) = &question.query {
        weft_index::query::compile(q, weft_index::Signal::Spans).map_err(ApiError::span_query)?;
    }
    let search = TraceSearch {
        query: question.query,
        start_unix_nano: question.start_unix_nano,
        end_unix_nano: question.end_unix_nano,
        min_duration_ns: None,
        max_duration_ns: None,
        limit: 0,
    };
    let (found, read) = state
        .run_query(move |store, _| {
            let (scope, listed) = store.unpublished_scope();
            Ok((store.trace_candidates_in(&search, &scope)?.0, listed))
        })
        .await?;
    let list = CandidateList {
        traces: found
            .traces
            .iter()
            .map(|c| (hex::encode(c.trace_id), c.newest_match_unix_nano))
            .collect(),
        capped: found.capped,
    };
    let node = state.cluster.as_ref().map(|c| c.me().id.clone());
    Ok(Json(InternalAnswer::new(node, list, &read)))
}

/// `POST /api/v1/internal/trace-parts`: what this node's rows not yet in a published split
/// hold of some traces, and the partitions read.
pub(crate) async fn internal_trace_parts(
    State(state): State<ApiState>,
    Json(question): Json<PartsQuestion>,
) -> Result<Json<InternalAnswer<PartsList>>, ApiError> {
    if question.trace_ids.len() > MAX_PARTS_PER_QUESTION {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_PARTS_PER_QUESTION} trace IDs per question, not {}",
            question.trace_ids.len()
        )));
    }
    let ids = question
        .trace_ids
        .iter()
        .map(|id| parse_trace_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    let (start, end) = (question.start_unix_nano, question.end_unix_nano);
    // One listing of the partitions for every trace of the answer: the partitions it names
    // are exactly those each trace was read from.
    let (parts, read) = state
        .run_query(move |store, deadline| {
            let (scope, listed) = store.unpublished_scope();
            Ok((
                summary_parts(store, &ids, start, end, &scope, deadline)?.0,
                listed,
            ))
        })
        .await?;
    let mut spans = Vec::new();
    let mut logs_by_service = Vec::with_capacity(parts.len());
    for part in parts {
        spans.extend(part.spans);
        logs_by_service.push(part.logs_by_service);
    }
    let batch = RowBatch {
        logs: Vec::new(),
        spans,
    };
    let list = PartsList {
        spans: base64::engine::general_purpose::STANDARD.encode(batch.encode_to_vec()),
        logs_by_service,
    };
    let node = state.cluster.as_ref().map(|c| c.me().id.clone());
    Ok(Json(InternalAnswer::new(node, list, &read)))
}

/// What the partitions `scope` reads hold of each of `ids` in `[start, end)`, and the local
/// partitions read.
fn summary_parts(
    store: &weft_index::Store,
    ids: &[[u8; 16]],
    start: u64,
    end: u64,
    scope: &Scope,
    deadline: &super::Deadline,
) -> Result<(Vec<SummaryPart>, Vec<PartitionRef>), ApiError> {
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

/// The traces `search` finds, and the ingest nodes that did not answer. On a search node,
/// the candidates are every live ingest node's (from its rows not yet published) and the
/// splits', newest matching span first; each candidate's summary, and so its whole-trace
/// duration, sums what every node holds of it. `authorization` (the caller's) is passed on.
pub(crate) async fn find_traces(
    state: &ApiState,
    search: TraceSearch,
    authorization: Option<String>,
) -> Result<(TraceSearchResult, Vec<String>), ApiError> {
    let Some(fanout) = state.fanout.clone() else {
        let found = state
            .run_query(move |store, _| Ok(store.search_traces(&search)?))
            .await?;
        return Ok((found, Vec::new()));
    };
    let authorization = authorization.as_deref();
    let question = CandidateQuestion {
        query: search.query.clone(),
        start_unix_nano: search.start_unix_nano,
        end_unix_nano: search.end_unix_nano,
    };
    let gathered = fanout
        .post::<_, CandidateList>(
            "/api/v1/internal/trace-candidates",
            &question,
            authorization,
        )
        .await;
    let mut missing = gathered.missing.clone();
    let answered = Scope::Except(gathered.covered());
    let local_search = search.clone();
    let (local, _) = state
        .run_query(move |store, _| Ok(store.trace_candidates_in(&local_search, &answered)?))
        .await?;
    let mut capped = local.capped;
    let mut candidates = local.traces;
    for answer in gathered.answers {
        capped |= answer.value.capped;
        for (id, newest) in answer.value.traces {
            // A node that names a trace badly is at fault, not the caller: the trace is
            // left out and said so in the log.
            let Ok(trace_id) = parse_trace_id(&id) else {
                tracing::warn!(%id, "an ingest node named a candidate trace badly");
                continue;
            };
            candidates.push(TraceCandidate {
                trace_id,
                newest_match_unix_nano: newest,
            });
        }
    }
    // Newest matching span first; a trace matched on several nodes comes once, at its newest.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.newest_match_unix_nano));
    let mut seen = HashSet::new();
    candidates.retain(|c| seen.insert(c.trace_id));
    if candidates.len() > MAX_CANDIDATE_TRACES {
        candidates.truncate(MAX_CANDIDATE_TRACES);
        capped = true;
    }

    let (near_start, near_end) = search.near_range();
    let mut found = TraceSearchResult::default();
    let mut rest = candidates.as_slice();
    // Without duration filters, every summary fits: enough of them to fill the page and tell
    // whether there is more. With them, most may not: as many as one question carries.
    let filtered = search.min_duration_ns.is_some() || search.max_duration_ns.is_some();
    let deadline = std::time::Instant::now() + state.query_timeout;
    'chunks: while !rest.is_empty() {
        if std::time::Instant::now() >= deadline {
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
        let parts = cluster_summary_parts(
            state,
            &fanout,
            ids.clone(),
            (near_start, near_end),
            authorization,
            &mut missing,
        )
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
    missing.sort();
    missing.dedup();
    Ok((found, missing))
}

/// What the whole cluster holds of each of `ids` in `range`: every live ingest node's part
/// and the splits' (those the nodes do not stand for); nodes that did not answer are added to
/// `missing`.
async fn cluster_summary_parts(
    state: &ApiState,
    fanout: &crate::fanout::FanOut,
    ids: Vec<[u8; 16]>,
    (start, end): (u64, u64),
    authorization: Option<&str>,
    missing: &mut Vec<String>,
) -> Result<Vec<SummaryPart>, ApiError> {
    let question = PartsQuestion {
        trace_ids: ids.iter().map(hex::encode).collect(),
        start_unix_nano: start,
        end_unix_nano: end,
    };
    let gathered = fanout
        .post::<_, PartsList>("/api/v1/internal/trace-parts", &question, authorization)
        .await;
    missing.extend(gathered.missing.iter().cloned());
    let answered = Scope::Except(gathered.covered());
    let local_ids = ids.clone();
    let (mut parts, _) = state
        .run_query(move |store, deadline| {
            summary_parts(store, &local_ids, start, end, &answered, deadline)
        })
        .await?;
    let position: HashMap<[u8; 16], usize> =
        ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for answer in gathered.answers {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&answer.value.spans)
            .map_err(|e| ApiError::Internal(format!("another node's spans are not base64: {e}")))?;
        let batch = RowBatch::decode(bytes.as_slice())
            .map_err(|e| ApiError::Internal(format!("another node's spans do not decode: {e}")))?;
        for span in batch.spans {
            let at = <[u8; 16]>::try_from(span.trace_id.as_slice())
                .ok()
                .and_then(|id| position.get(&id));
            if let Some(&i) = at {
                parts[i].spans.push(span);
            }
        }
        for (part, logs) in parts.iter_mut().zip(answer.value.logs_by_service) {
            part.merge(SummaryPart {
                spans: Vec::new(),
                logs_by_service: logs,
            });
        }
    }
    Ok(parts)
}

/// On a search node, the traces `search` finds, each with every row of it from every node
/// (as its own lookup gathers them), within the query timeout. For Jaeger's searches, whose
/// answers carry whole traces.
pub(crate) async fn whole_traces(
    state: &ApiState,
    search: TraceSearch,
    authorization: Option<String>,
) -> Result<Vec<([u8; 16], TraceRows)>, ApiError> {
    let (found, _) = find_traces(state, search, authorization.clone()).await?;
    let deadline = Instant::now() + state.query_timeout;
    let mut out = Vec::with_capacity(found.traces.len());
    for summary in found.traces {
        // Hundreds of lookups, each asking every node: stop once nobody waits.
        if Instant::now() >= deadline {
            return Err(ApiError::Timeout(state.query_timeout));
        }
        let (rows, _) = trace_rows(state, summary.trace_id, authorization.clone()).await?;
        out.push((summary.trace_id, rows));
    }
    Ok(out)
}

/// The caller's `Authorization` header, to pass on to other nodes.
pub(crate) fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) async fn get_trace(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let id = parse_trace_id(&trace_id)?;
    let (rows, missing) = trace_rows(&state, id, authorization(&headers)).await?;
    if rows.spans.is_empty() && rows.logs.is_empty() {
        return Err(ApiError::NotFound(format!(
            "trace {} not found",
            hex::encode(id)
        )));
    }
    let summary = TraceSummary::from_rows(id, &rows.spans, &rows.logs);
    Ok(Json(json!({
        "trace_id": hex::encode(id),
        "spans": rows.spans.iter().map(SpanRow::to_json).collect::<Vec<_>>(),
        "logs": rows.logs.iter().map(LogRow::to_json).collect::<Vec<_>>(),
        "summary": summary.to_json(),
        "truncated": rows.truncated,
        // Ingest nodes that did not answer: their rows not yet published are not here.
        "partial": !missing.is_empty(),
        "missing_nodes": missing,
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}

/// Builds the span query of a trace search from its parameters.
fn span_query(
    service: Option<&str>,
    operation: Option<&str>,
    q: Option<&str>,
    error_only: bool,
) -> Result<Option<Expr>, ApiError> {
    let mut parts = Vec::new();
    if let Some(s) = service.filter(|s| !s.is_empty()) {
        parts.push(Expr::filter("service", CmpOp::Eq, s));
    }
    if let Some(o) = operation.filter(|o| !o.is_empty()) {
        parts.push(Expr::filter("name", CmpOp::Eq, o));
    }
    if error_only {
        parts.push(Expr::filter("status", CmpOp::Eq, "error"));
    }
    if let Some(expr) = parse(q.unwrap_or("")).map_err(ApiError::span_query)? {
        parts.push(expr);
    }
    Ok(match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Expr::And(parts)),
    })
}

/// A trace search's parameters, as the HTTP and gRPC front ends receive them.
pub(crate) struct TraceParams<'a> {
    pub(crate) service: Option<&'a str>,
    pub(crate) operation: Option<&'a str>,
    pub(crate) q: Option<&'a str>,
    pub(crate) error_only: bool,
    pub(crate) start: Option<&'a str>,
    pub(crate) end: Option<&'a str>,
    pub(crate) min_duration_ns: Option<u64>,
    pub(crate) max_duration_ns: Option<u64>,
    pub(crate) limit: Option<&'a str>,
}

/// A validated trace search with the API's defaults and limits.
pub(crate) fn trace_search(p: TraceParams<'_>) -> Result<TraceSearch, ApiError> {
    let query = span_query(p.service, p.operation, p.q, p.error_only)?;
    // Validate the span query now, so a mistake is a 400 rather than an empty answer.
    if let Some(q) = &query {
        weft_index::query::compile(q, weft_index::Signal::Spans).map_err(ApiError::span_query)?;
    }
    let (start, end) = time_range(p.start, p.end)?;
    Ok(TraceSearch {
        query,
        start_unix_nano: start,
        end_unix_nano: end,
        min_duration_ns: p.min_duration_ns,
        max_duration_ns: p.max_duration_ns,
        limit: limit(
            p.limit,
            super::limits::DEFAULT_TRACES,
            super::limits::MAX_TRACES,
        )?,
    })
}

pub(crate) async fn search(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let get = |k: &str| params.get(k).map(String::as_str);
    let error_only = match get("status") {
        None | Some("") | Some("any") => false,
        Some("error") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "status must be 'error' or 'any', not '{other}'"
            )));
        }
    };
    let search = trace_search(TraceParams {
        service: get("service"),
        operation: get("operation"),
        q: get("q"),
        error_only,
        start: get("start"),
        end: get("end"),
        min_duration_ns: get("min_duration")
            .map(|d| parse_duration_ns("min_duration", d))
            .transpose()?,
        max_duration_ns: get("max_duration")
            .map(|d| parse_duration_ns("max_duration", d))
            .transpose()?,
        limit: get("limit"),
    })?;
    let (found, missing) = find_traces(&state, search, authorization(&headers)).await?;
    Ok(Json(json!({
        "traces": found.traces.iter().map(TraceSummary::to_json).collect::<Vec<_>>(),
        "limited": found.limited,
        // Ingest nodes that did not answer: traces of their rows not yet published may be
        // missing or summarized without those rows.
        "partial": !missing.is_empty(),
        "missing_nodes": missing,
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}
