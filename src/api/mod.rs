//! weft's HTTP query API: `/api/v1/...`, the Jaeger-compatible `/api/...` (query API v1 and
//! `/api/dependencies`) and `/api/v3/...`, health and metrics.
//!
//! Files: `logs`, `traces`, `tail`, `catalog` (histogram, services, events), `dependencies`
//! (Jaeger's dependencies, weft's service map), `peel` (facets, span statistics, heatmap,
//! comparison), `severity` (rules), `cluster` (the nodes sharing the metastore), `jaeger` (v1),
//! `jaeger_v3`, `params` (time ranges, limits), `error` (status codes and bodies),
//! `internal` (what a search node asks this node: `crate::query::node`).

mod catalog;
mod cluster;
mod dependencies;
mod error;
mod internal;
mod jaeger;
mod jaeger_v3;

/// Page sizes: the default when a request names none, and the most it may ask for.
pub(crate) mod limits {
    pub(crate) const DEFAULT_LOGS: usize = 100;
    pub(crate) const MAX_LOGS: usize = 1000;
    pub(crate) const DEFAULT_TRACES: usize = 20;
    pub(crate) const MAX_TRACES: usize = 500;
}
pub(crate) mod logs;
pub mod params;
mod peel;
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
use axum::routing::{get, post};
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
    /// With object storage: whether uploads fail (shown by `/readyz`).
    pub storage_status: Option<Arc<crate::storage::publisher::StorageStatus>>,
    /// With a PostgreSQL metastore: this node among the others on it.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// On a search node: asks the ingest nodes for their rows not yet published.
    pub fanout: Option<Arc<crate::fanout::FanOut>>,
    /// Faults a test injects (a query that stalls); `None` in production.
    pub faults: Option<Arc<weft_index::faults::Faults>>,
}

/// Routes of the query API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/logs", get(logs::search))
        .route("/api/v1/internal/logs", post(internal::logs))
        .route("/api/v1/logs/histogram", get(catalog::histogram))
        .route(
            "/api/v1/internal/trace-candidates",
            post(internal::trace_candidates),
        )
        .route("/api/v1/internal/trace-parts", post(internal::trace_parts))
        .route("/api/v1/internal/aggregate", post(internal::aggregate))
        .route("/api/v1/logs/tail", get(tail::tail))
        .route("/api/v1/internal/tail", get(tail::internal_tail))
        .route("/api/v1/logs/facets", get(peel::log_facets))
        .route("/api/v1/logs/fields", get(peel::log_fields))
        .route("/api/v1/logs/compare", get(peel::log_compare))
        .route("/api/v1/spans/facets", get(peel::span_facets))
        .route("/api/v1/spans/fields", get(peel::span_fields))
        .route("/api/v1/spans/stats", get(peel::span_stats))
        .route("/api/v1/spans/heatmap", get(peel::span_heatmap))
        .route("/api/v1/spans/compare", get(peel::span_compare))
        .route("/api/v1/traces", get(traces::search))
        .route("/api/v1/traces/{trace_id}", get(traces::get_trace))
        .route("/api/v1/internal/trace/{trace_id}", post(internal::trace))
        .route("/api/v1/services", get(catalog::services))
        .route("/api/v1/events", get(catalog::events))
        .route("/api/v1/service-map", get(dependencies::service_map))
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
        .route("/api/dependencies", get(dependencies::jaeger_dependencies))
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

impl ApiState {
    /// Runs a query on the blocking pool, bounded in concurrency and time.
    pub(crate) async fn run_query<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Store, &Deadline) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        let faults = self.faults.clone();
        run_gated(&self.query_permits, self.query_timeout, move |deadline| {
            if let Some(faults) = faults {
                faults.stall_query();
            }
            query(&store, deadline)
        })
        .await
    }
}

/// When a query's answer is no longer wanted; long loops check it between steps.
pub struct Deadline(std::time::Instant, Duration);

impl Deadline {
    /// An error once the deadline has passed.
    pub fn check(&self) -> Result<(), ApiError> {
        if std::time::Instant::now() >= self.0 {
            return Err(ApiError::Timeout(self.1));
        }
        Ok(())
    }
}

/// Runs `work` on the blocking pool under a permit from `permits`, answering within `timeout`.
/// The permit moves into the blocking task: a query that outlives its answer keeps holding its
/// place, so slow queries cannot pile up beyond the limit.
pub(crate) async fn run_gated<T: Send + 'static>(
    permits: &Arc<Semaphore>,
    timeout: Duration,
    work: impl FnOnce(&Deadline) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let deadline = Deadline(std::time::Instant::now() + timeout, timeout);
    let permit = tokio::time::timeout(timeout, permits.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::Busy("too many queries are running; retry shortly".into()))?
        .map_err(|_| ApiError::Busy("weft is shutting down".into()))?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work(&deadline)
    });
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) => Err(ApiError::Internal(format!(
            "query task failed: {join_error}"
        ))),
        Err(_) => Err(ApiError::Timeout(timeout)),
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
    text.push_str(
        &state
            .metrics
            .render_conditions(state.pipeline.health(), now),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a timed-out query gave its permit back while its blocking task ran on, so
    /// the limit did not limit slow queries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timed_out_query_keeps_its_permit_until_it_ends() {
        let permits = Arc::new(Semaphore::new(1));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slow = run_gated(&permits, Duration::from_millis(50), move |_| {
            let _ = wait.recv();
            Ok(1)
        })
        .await;
        assert!(matches!(slow, Err(ApiError::Timeout(_))), "{slow:?}");
        // The slow query still runs and still holds the only permit.
        let refused = run_gated(&permits, Duration::from_millis(50), |_| Ok(2)).await;
        assert!(matches!(refused, Err(ApiError::Busy(_))), "{refused:?}");
        release.send(()).unwrap();
        let started = std::time::Instant::now();
        loop {
            match run_gated(&permits, Duration::from_millis(50), |_| Ok(3)).await {
                Ok(3) => break,
                other => assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the permit never came back: {other:?}"
                ),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_work_sees_its_deadline() {
        let permits = Arc::new(Semaphore::new(1));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let answer = run_gated(&permits, Duration::from_millis(30), move |deadline| {
            let mut steps = 0u64;
            let result = loop {
                if let Err(e) = deadline.check() {
                    break e;
                }
                steps += 1;
                std::thread::sleep(Duration::from_millis(1));
            };
            let _ = done_tx.send(steps);
            Err::<(), _>(result)
        })
        .await;
        assert!(matches!(answer, Err(ApiError::Timeout(_))));
        let steps = done_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(steps > 0);
    }
}
