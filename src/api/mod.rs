//! weft's HTTP query API: `/api/v1/...`, the Jaeger-compatible `/api/...`, health and metrics.

mod catalog;
mod error;
mod jaeger;

/// Page sizes: the default when a request names none, and the most it may ask for.
pub(crate) mod limits {
    pub(crate) const DEFAULT_LOGS: usize = 100;
    pub(crate) const MAX_LOGS: usize = 1000;
    pub(crate) const DEFAULT_TRACES: usize = 20;
    pub(crate) const MAX_TRACES: usize = 500;
}
pub(crate) mod logs;
pub(crate) mod params;
mod severity;
pub(crate) mod tail;
pub(crate) mod traces;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{Semaphore, watch};
use weft_index::Store;

pub use error::ApiError;

use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, now_unix_nano};

/// What query handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The index.
    pub store: Arc<Store>,
    /// weft's counters.
    pub metrics: Arc<Metrics>,
    /// False while starting and once shutting down.
    pub ready: Arc<AtomicBool>,
    /// Bounds concurrent queries, each of which occupies a blocking thread.
    pub query_permits: Arc<Semaphore>,
    /// Longest a query may run.
    pub query_timeout: Duration,
    /// The ingest pipeline, for live tail.
    pub pipeline: Arc<Pipeline>,
    /// Turns true when weft stops, ending long-lived answers such as tails.
    pub shutdown: watch::Receiver<bool>,
    /// Runtime severity rules.
    pub severity: Arc<crate::severity::SeverityControl>,
    /// Admin tokens (name → secret) allowed to change rules.
    pub admin_tokens: Arc<std::collections::BTreeMap<String, String>>,
}

/// Routes of the query API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/logs", get(logs::search))
        .route("/api/v1/logs/histogram", get(catalog::histogram))
        .route("/api/v1/logs/tail", get(tail::tail))
        .route("/api/v1/traces", get(traces::search))
        .route("/api/v1/traces/{trace_id}", get(traces::get_trace))
        .route("/api/v1/services", get(catalog::services))
        .route("/api/v1/events", get(catalog::events))
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
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

impl ApiState {
    /// Runs a query on the blocking pool, bounded in concurrency and time.
    pub(crate) async fn run_query<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = tokio::time::timeout(self.query_timeout, self.query_permits.acquire())
            .await
            .map_err(|_| ApiError::Busy("too many queries are running; retry shortly".into()))?
            .map_err(|_| ApiError::Busy("weft is shutting down".into()))?;
        let store = self.store.clone();
        let task = tokio::task::spawn_blocking(move || query(&store));
        match tokio::time::timeout(self.query_timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => Err(ApiError::Internal(format!(
                "query task failed: {join_error}"
            ))),
            Err(_) => Err(ApiError::Timeout(self.query_timeout)),
        }
    }
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
    let reasons = state.pipeline.health().all_reasons(now_unix_nano());
    if reasons.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let mut body = String::from("not ready\n");
    for (condition, reason) in reasons {
        body.push_str(&format!("{}: {reason}\n", condition.name()));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let now = now_unix_nano();
    let mut text = state.metrics.render(now);
    text.push_str(
        &state
            .metrics
            .render_conditions(state.pipeline.health(), now),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
