//! Calls between services: Jaeger's `GET /api/dependencies` (the UI's System Architecture page)
//! and weft's `GET /api/v1/service-map` (services as nodes, calls as edges with rate, error
//! ratio, latency and exemplar traces). Both read the calls tables the indexer keeps per span
//! partition (`weft_index::calls`), never stored spans, so a week answers as fast as an hour.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Serialize;
use weft_index::calls::{CALL_BUCKET_NANOS, ServiceCall};

use super::jaeger::JaegerError;
use super::params::time_range;
use super::traces::authorization;
use super::{ApiError, ApiState};
use crate::pipeline::now_unix_nano;

/// Jaeger's default look-back for dependencies: a day.
const DEFAULT_LOOKBACK_MS: u64 = 24 * 3_600 * 1_000;

/// One edge of Jaeger's dependency graph.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DependencyLink {
    parent: String,
    child: String,
    call_count: u64,
}

/// Jaeger's envelope around the links.
#[derive(Debug, Serialize)]
pub(crate) struct DependenciesResponse {
    data: Vec<DependencyLink>,
    total: usize,
    limit: usize,
    offset: usize,
    errors: Option<()>,
}

fn millis(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, JaegerError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => text.parse::<u64>().map(Some).map_err(|_| {
            JaegerError::bad_request(format!(
                "{name} must be milliseconds (an integer), not '{text}'"
            ))
        }),
    }
}

/// `GET /api/dependencies?endTs=<ms since the epoch>&lookback=<ms>[&service=]`: calls whose
/// called span started in `(endTs - lookback, endTs]`; with `service`, those it makes or takes.
pub(crate) async fn jaeger_dependencies(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<DependenciesResponse>, JaegerError> {
    let end_ms = millis(&params, "endTs")?.unwrap_or_else(|| now_unix_nano() / 1_000_000);
    let lookback_ms = millis(&params, "lookback")?.unwrap_or(DEFAULT_LOOKBACK_MS);
    let end = end_ms.saturating_mul(1_000_000).saturating_add(1);
    let start = end.saturating_sub(lookback_ms.saturating_mul(1_000_000));
    let (calls, _) = crate::aggregation::calls(&state, start, end, authorization(&headers)).await?;
    let service = params.get("service").filter(|s| !s.is_empty());
    let data: Vec<DependencyLink> = calls
        .into_iter()
        .filter(|c| service.is_none_or(|s| c.parent == *s || c.child == *s))
        .map(|c| DependencyLink {
            parent: c.parent,
            child: c.child,
            call_count: c.stats.calls,
        })
        .collect();
    // Jaeger leaves `total` at 0 in this answer.
    Ok(Json(DependenciesResponse {
        total: 0,
        data,
        limit: 0,
        offset: 0,
        errors: None,
    }))
}

/// A service on the map.
#[derive(Debug, Serialize)]
pub(crate) struct MapService {
    service: String,
    span_count: u64,
    log_count: u64,
}

/// A trace showing a call.
#[derive(Debug, Serialize)]
pub(crate) struct MapExemplar {
    trace_id: String,
    duration_ns: u64,
    error: bool,
}

/// Calls from one service to another over the range.
#[derive(Debug, Serialize)]
pub(crate) struct MapCall {
    parent: String,
    child: String,
    calls: u64,
    errors: u64,
    error_ratio: f64,
    /// Calls per second over the five-minute buckets the range touches.
    rate_per_second: f64,
    /// Latency of the called spans, from a log-scaled histogram (within 19 %).
    p50_ns: String,
    p99_ns: String,
    /// Traces that show the call: failed ones first, then the slowest.
    exemplars: Vec<MapExemplar>,
}

/// `GET /api/v1/service-map`.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceMap {
    start_unix_nano: String,
    end_unix_nano: String,
    services: Vec<MapService>,
    calls: Vec<MapCall>,
    /// On a search node: ingest nodes that did not answer, whose newest calls and rows are
    /// not counted.
    partial: bool,
    missing_nodes: Vec<String>,
}

fn map_call(call: ServiceCall, covered_seconds: f64) -> MapCall {
    let stats = call.stats;
    let quantile = |q| stats.latency.quantile(q).unwrap_or(0).to_string();
    MapCall {
        p50_ns: quantile(0.5),
        p99_ns: quantile(0.99),
        error_ratio: if stats.calls == 0 {
            0.0
        } else {
            stats.errors as f64 / stats.calls as f64
        },
        rate_per_second: stats.calls as f64 / covered_seconds.max(1.0),
        parent: call.parent,
        child: call.child,
        calls: stats.calls,
        errors: stats.errors,
        exemplars: stats
            .exemplars
            .into_iter()
            .map(|e| MapExemplar {
                trace_id: hex::encode(e.trace_id),
                duration_ns: e.duration_ns,
                error: e.error,
            })
            .collect(),
    }
}

/// `GET /api/v1/service-map?start=&end=` (default: the last hour): every service with spans or
/// logs in the range, and the calls between them.
pub(crate) async fn service_map(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<ServiceMap>, ApiError> {
    let (start, end) = time_range(
        params.get("start").map(String::as_str),
        params.get("end").map(String::as_str),
    )?;
    let (catalog, mut missing) =
        crate::aggregation::services(&state, start, end, authorization(&headers)).await?;
    let (calls, calls_missing) =
        crate::aggregation::calls(&state, start, end, authorization(&headers)).await?;
    missing.extend(calls_missing);
    missing.sort();
    missing.dedup();
    // Calls are counted per minute; the rate is over the minutes the range touches.
    let first_minute = start / CALL_BUCKET_NANOS;
    let last_minute = (end - 1) / CALL_BUCKET_NANOS;
    let covered_seconds =
        ((last_minute - first_minute + 1) * (CALL_BUCKET_NANOS / 1_000_000_000)) as f64;
    let mut services: BTreeMap<String, MapService> = catalog
        .into_iter()
        .map(|(service, stats)| {
            (
                service.clone(),
                MapService {
                    service,
                    span_count: stats.spans,
                    log_count: stats.logs,
                },
            )
        })
        .collect();
    // A call's services are on the map even when the catalog's range edges left them out.
    for call in &calls {
        for name in [&call.parent, &call.child] {
            services.entry(name.clone()).or_insert_with(|| MapService {
                service: name.clone(),
                span_count: 0,
                log_count: 0,
            });
        }
    }
    Ok(Json(ServiceMap {
        start_unix_nano: start.to_string(),
        end_unix_nano: end.to_string(),
        services: services.into_values().collect(),
        calls: calls
            .into_iter()
            .map(|c| map_call(c, covered_seconds))
            .collect(),
        partial: !missing.is_empty(),
        missing_nodes: missing,
    }))
}
