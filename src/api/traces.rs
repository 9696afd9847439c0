//! `GET /api/v1/traces/{trace_id}`: every span and log of a trace, and a summary.

use std::collections::BTreeSet;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use weft_index::{LogRow, SpanRow};

use super::{ApiError, ApiState};

/// Most spans and logs one trace answer carries.
const MAX_SPANS: usize = 10_000;
const MAX_LOGS: usize = 50_000;

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

pub(crate) async fn get_trace(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let id = parse_trace_id(&trace_id)?;
    let rows = state
        .run_query(move |store| Ok(store.trace(&id, MAX_SPANS, MAX_LOGS)?))
        .await?;
    if rows.spans.is_empty() && rows.logs.is_empty() {
        return Err(ApiError::NotFound(format!(
            "trace {} not found",
            hex::encode(id)
        )));
    }
    let summary = summary(&hex::encode(id), &rows.spans, &rows.logs);
    Ok(Json(json!({
        "trace_id": hex::encode(id),
        "spans": rows.spans.iter().map(SpanRow::to_json).collect::<Vec<_>>(),
        "logs": rows.logs.iter().map(LogRow::to_json).collect::<Vec<_>>(),
        "summary": summary,
        "truncated": rows.truncated,
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}

/// The trace summary of DESIGN.md. The root is the earliest span without a parent; a trace
/// without one is `incomplete` and its earliest span stands in.
pub(crate) fn summary(trace_id: &str, spans: &[SpanRow], logs: &[LogRow]) -> Value {
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .min_by_key(|s| s.start_time_unix_nano);
    let stand_in = root.or_else(|| spans.iter().min_by_key(|s| s.start_time_unix_nano));
    let times = spans
        .iter()
        .flat_map(|s| [s.start_time_unix_nano, s.end_time_unix_nano])
        .chain(if spans.is_empty() {
            logs.iter().map(|l| l.time_unix_nano).collect::<Vec<_>>()
        } else {
            Vec::new()
        });
    let (start, end) = times.fold((u64::MAX, 0u64), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let start = if start == u64::MAX { 0 } else { start };
    let services: BTreeSet<&str> = spans
        .iter()
        .map(|s| s.service.as_str())
        .chain(logs.iter().map(|l| l.service.as_str()))
        .collect();
    json!({
        "trace_id": trace_id,
        "root_service": stand_in.map(|s| s.service.as_str()),
        "root_name": stand_in.map(|s| s.name.as_str()),
        "start_time_unix_nano": start.to_string(),
        "duration_ns": end.saturating_sub(start).to_string(),
        "span_count": spans.len(),
        "error_count": spans.iter().filter(|s| s.is_error()).count(),
        "log_count": logs.len(),
        "services": services,
        "incomplete": root.is_none(),
    })
}
