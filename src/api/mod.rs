//! weft's HTTP API, a thin adapter over the query service (`crate::query`): each handler parses
//! its parameters into the service's typed request, calls it, and renders its typed answer.
//! `/api/v1/...` is weft's own; `/api/...` Jaeger's query API v1 (and `/api/dependencies`),
//! `/api/v3/...` Jaeger's v3; `/api/v1/internal/...` what a search node asks this node; and
//! health, readiness and metrics.
//!
//! Files: `logs` (log search, histogram, patterns), `traces` (a trace, trace search), `tail` (live tail),
//! `catalog` (services, events), `service_map`, `peel` (facets, fields, span statistics,
//! heatmap, comparison), `severity` (rules), `cluster` (the nodes sharing the metastore),
//! `jaeger` (v1 and dependencies), `jaeger_v3`, `internal` (the node API), `error` (the one
//! place a query error becomes an HTTP status).

mod catalog;
mod cluster;
mod error;
mod internal;
mod jaeger;
mod jaeger_v3;
mod logs;
mod peel;
mod service_map;
mod severity;
mod tail;
mod traces;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::ApiError;

use crate::clock::now_unix_nano;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::query::QueryService;

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Every question weft answers.
    pub query: Arc<QueryService>,
    /// weft's counters.
    pub metrics: Arc<Metrics>,
    /// False while starting and once shutting down.
    pub ready: Arc<AtomicBool>,
    /// The ingest pipeline, for health and readiness.
    pub pipeline: Arc<Pipeline>,
    /// Runtime severity rules.
    pub severity: Arc<crate::severity::SeverityControl>,
    /// With object storage: whether uploads fail (shown by `/readyz`).
    pub storage_status: Option<Arc<crate::storage::publisher::StorageStatus>>,
    /// With a PostgreSQL metastore: this node among the others on it.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Refusals of the auth layer (rendered at `/metrics`; the severity routes count theirs).
    pub auth_refused: Arc<crate::auth::RefusalCounters>,
    /// Turns true when weft stops, ending long polls.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The caller's `Authorization` header, passed on to other nodes by a search node.
pub(crate) fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Routes of the query API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/logs", get(logs::search))
        .route("/api/v1/internal/logs", post(internal::logs))
        .route("/api/v1/logs/histogram", get(logs::histogram))
        .route("/api/v1/logs/patterns", get(logs::patterns))
        .route(
            "/api/v1/internal/trace-candidates",
            post(internal::trace_candidates),
        )
        .route("/api/v1/internal/trace-parts", post(internal::trace_parts))
        .route("/api/v1/internal/aggregate", post(internal::aggregate))
        .route("/api/v1/logs/tail", get(tail::tail))
        .route("/api/v1/internal/tail", get(tail::internal_tail))
        .route("/api/v1/{signal}/{question}", get(peel::peel))
        .route("/api/v1/traces", get(traces::search))
        .route("/api/v1/traces/{trace_id}", get(traces::get_trace))
        .route("/api/v1/internal/trace/{trace_id}", post(internal::trace))
        .route("/api/v1/services", get(catalog::services))
        .route("/api/v1/events", get(catalog::events))
        .route("/api/v1/service-map", get(service_map::service_map))
        .route("/api/v1/cluster", get(cluster::cluster))
        .route(
            "/api/v1/severity/rules",
            get(severity::list).post(severity::create),
        )
        .route(
            "/api/v1/severity/rules/{id}",
            axum::routing::delete(severity::delete),
        )
        .route("/api/v1/severity/audit", get(severity::audit))
        .route("/api/v1/severity/effective", get(severity::effective))
        .route("/api/services", get(jaeger::services))
        .route(
            "/api/services/{service}/operations",
            get(jaeger::service_operations),
        )
        .route("/api/operations", get(jaeger::operations))
        .route("/api/traces", get(jaeger::search))
        .route("/api/traces/{trace_id}", get(jaeger::get_trace))
        .route("/api/dependencies", get(jaeger::dependencies))
        .route("/api/v3/services", get(jaeger_v3::services))
        .route("/api/v3/operations", get(jaeger_v3::operations))
        .route("/api/v3/traces", get(jaeger_v3::find_traces))
        .route("/api/v3/traces/{trace_id}", get(jaeger_v3::get_trace))
        .route("/api/v3/trace-summaries", get(jaeger_v3::trace_summaries))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Liveness: 503 once a thread weft cannot do without has died, so an orchestrator restarts it.
async fn healthz(State(state): State<ApiState>) -> Response {
    match state.pipeline.health().fatal() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

/// Readiness: 503 while starting, stopping, or while any condition refuses new data; the body
/// names each condition and why (`disk_low: 52428800 bytes free ...`).
async fn readyz(State(state): State<ApiState>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or stopping\n",
        )
            .into_response();
    }
    let now = now_unix_nano();
    let reasons = state.pipeline.health().all_reasons(now);
    // Object storage being away does not stop ingest (the local disk holds everything until
    // it is back), so it is reported without failing readiness.
    let storage_line = state
        .storage_status
        .as_ref()
        .map(|status| match status.failing() {
            None => "storage: ok\n".to_string(),
            Some((reason, since)) => format!(
                "storage: failing for {}s, data stays local until it succeeds: {reason}\n",
                now.saturating_sub(since) / 1_000_000_000
            ),
        });
    if reasons.is_empty() {
        let body = format!("ready\n{}", storage_line.unwrap_or_default());
        return (StatusCode::OK, body).into_response();
    }
    let mut body = String::from("not ready\n");
    for (condition, reason) in reasons {
        body.push_str(&format!("{}: {reason}\n", condition.name()));
    }
    body.push_str(&storage_line.unwrap_or_default());
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let now = now_unix_nano();
    let mut text = state.metrics.render(now);
    text.push_str(&state.pipeline.health().render_metrics(now));
    text.push_str(&state.auth_refused.render_metrics());
    text.push_str(&crate::metrics::render_clock_offsets(
        &state.query.local_clock_offsets(),
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
