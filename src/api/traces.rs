//! `GET /api/v1/traces/{trace_id}` (every span and log of a trace, and a summary) and
//! `GET /api/v1/traces` (trace search), answered by `crate::query::service` (over the whole
//! cluster on a search node); and the parsing of trace IDs and trace searches that the
//! gRPC and Jaeger front ends share.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use weft_index::query::{CmpOp, Expr, parse};
use weft_index::{TraceSearch, TraceSummary};

use super::params::{limit, parse_duration_ns, time_range};
use super::{ApiError, ApiState};
use crate::query::answers::{
    Completeness, LogRecord, Span, TraceAnswer, TraceSummaryView, TracesAnswer,
};
use crate::query::service::{find_traces, trace_rows};

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
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let id = parse_trace_id(&trace_id)?;
    let (rows, missing) = trace_rows(&state, id, authorization(&headers).as_deref()).await?;
    if rows.spans.is_empty() && rows.logs.is_empty() {
        return Err(ApiError::NotFound(not_found_message(id, &missing)));
    }
    let summary = TraceSummary::from_rows(id, &rows.spans, &rows.logs);
    let answer = TraceAnswer {
        trace_id: hex::encode(id),
        spans: rows.spans.iter().map(Span::from).collect(),
        logs: rows.logs.iter().map(LogRecord::from).collect(),
        summary: TraceSummaryView::from(&summary),
        truncated: rows.truncated,
        completeness: Completeness::of(missing),
        took_ms: started.elapsed().as_millis() as u64,
    };
    Ok(Json(answer).into_response())
}

/// "trace … not found", and which ingest nodes did not answer: the trace may be among their
/// rows not yet published.
pub(crate) fn not_found_message(id: [u8; 16], missing: &[String]) -> String {
    let mut message = format!("trace {} not found", hex::encode(id));
    if !missing.is_empty() {
        message.push_str(&format!(
            "; ingest nodes {} did not answer, and their records not yet published were not searched",
            missing.join(", ")
        ));
    }
    message
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
) -> Result<Response, ApiError> {
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
    let (found, missing) = find_traces(&state, search, authorization(&headers).as_deref()).await?;
    let answer = TracesAnswer {
        traces: found.traces.iter().map(TraceSummaryView::from).collect(),
        limited: found.limited,
        completeness: Completeness::of(missing),
        took_ms: started.elapsed().as_millis() as u64,
    };
    Ok(Json(answer).into_response())
}
