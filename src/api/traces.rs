//! `GET /api/v1/traces/{trace_id}` (every span and log of a trace, and a summary) and
//! `GET /api/v1/traces` (trace search).

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use weft_index::TraceSummary;

use super::{ApiError, ApiState, authorization};
use crate::query::answers::{
    Adjusted, Completeness, LogRecord, ServiceSkew, Span, TraceAnswer, TraceSummaryView,
    TracesAnswer,
};
use crate::query::requests::{
    SpanFilters, TraceSearchParams, duration_ns, errors_only, trace_id, trace_search,
};
use crate::query::traces::{Trace, not_found_message};

pub(crate) async fn get_trace(
    State(state): State<ApiState>,
    Path(text): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let id = trace_id(&text)?;
    let found = state
        .query
        .trace(id, authorization(&headers).as_deref())
        .await?;
    let Trace { rows, skew } = found.value;
    if rows.spans.is_empty() && rows.logs.is_empty() {
        return Err(ApiError::not_found(not_found_message(
            id,
            &found.missing_nodes,
        )));
    }
    let summary = TraceSummary::from_rows(id, &rows.spans, &rows.logs);
    let answer = TraceAnswer {
        trace_id: hex::encode(id),
        spans: rows
            .spans
            .iter()
            .map(|s| Adjusted {
                clock_adjustment_ns: skew.adjustment(&s.service).to_string(),
                row: Span::from(s),
            })
            .collect(),
        logs: rows
            .logs
            .iter()
            .map(|l| Adjusted {
                clock_adjustment_ns: skew.adjustment(&l.service).to_string(),
                row: LogRecord::from(l),
            })
            .collect(),
        summary: TraceSummaryView::from(&summary),
        truncated: rows.truncated,
        clock_skew: skew
            .services()
            .map(|(service, offset)| ServiceSkew {
                service: service.to_string(),
                offset_ns: offset.to_string(),
            })
            .collect(),
        completeness: Completeness::of(found.missing_nodes),
        took_ms: started.elapsed().as_millis() as u64,
    };
    Ok(Json(answer).into_response())
}

pub(crate) async fn search(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let get = |k: &str| params.get(k).map(String::as_str);
    let search = trace_search(TraceSearchParams {
        filters: SpanFilters {
            service: get("service"),
            operation: get("operation"),
            errors_only: errors_only(get("status"))?,
            q: get("q"),
            ..SpanFilters::default()
        },
        start: get("start"),
        end: get("end"),
        min_duration_ns: get("min_duration")
            .map(|d| duration_ns("min_duration", d))
            .transpose()?,
        max_duration_ns: get("max_duration")
            .map(|d| duration_ns("max_duration", d))
            .transpose()?,
        limit: get("limit"),
    })?;
    let found = state
        .query
        .find_traces(search, authorization(&headers).as_deref())
        .await?;
    let answer = TracesAnswer {
        traces: found
            .value
            .traces
            .iter()
            .map(TraceSummaryView::from)
            .collect(),
        limited: found.value.limited,
        completeness: Completeness::of(found.missing_nodes),
        took_ms: started.elapsed().as_millis() as u64,
    };
    Ok(Json(answer).into_response())
}
