//! `GET /api/v1/traces/{trace_id}` (every span and log of a trace, and a summary) and
//! `GET /api/v1/traces` (trace search).

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};
use weft_index::query::{CmpOp, Expr, parse};
use weft_index::store::Scope;
use weft_index::{LogRow, RowBatch, SpanRow, TraceRows, TraceSearch, TraceSummary};

use super::params::{limit, parse_duration_ns, time_range};
use super::{ApiError, ApiState};
use crate::fanout::InternalRows;

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
    let found = state
        .run_query(move |store, _| Ok(store.search_traces(&search)?))
        .await?;
    Ok(Json(json!({
        "traces": found.traces.iter().map(TraceSummary::to_json).collect::<Vec<_>>(),
        "limited": found.limited,
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}
