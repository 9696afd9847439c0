//! Calls between services, for weft's service map (services as nodes, calls as edges with
//! rate, error ratio, latency and exemplar traces) and Jaeger's dependency graph. Both read the
//! calls tables the indexer keeps per span partition (`weft_index::calls`), never stored
//! spans, so a week answers as fast as an hour.

use std::collections::BTreeMap;

use serde::Serialize;
use weft_index::calls::{CALL_BUCKET_NANOS, ServiceCall};

use super::aggregation::Aggregation;
use super::{Answer, Error, QueryService};

/// Jaeger's default look-back for dependencies: a day.
pub const DEFAULT_LOOKBACK_NANOS: u64 = 24 * 3_600 * 1_000_000_000;

/// A service on the map.
#[derive(Debug, Serialize)]
pub struct MapService {
    service: String,
    span_count: u64,
    log_count: u64,
    /// The service's estimated clock offset (`weft_index::clock`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_offset_ns: Option<String>,
}

/// A trace showing a call.
#[derive(Debug, Serialize)]
pub struct MapExemplar {
    trace_id: String,
    duration_ns: u64,
    error: bool,
}

/// Calls from one service to another over the range.
#[derive(Debug, Serialize)]
pub struct MapCall {
    parent: String,
    child: String,
    calls: u64,
    errors: u64,
    error_ratio: f64,
    /// Calls per second over the one-minute buckets the range touches.
    rate_per_second: f64,
    /// Latency of the called spans, from a log-linear histogram (within 1 %, inside the
    /// fastest and slowest call).
    p50_ns: String,
    p99_ns: String,
    /// Traces that show the call: failed ones first, then the slowest.
    exemplars: Vec<MapExemplar>,
}

/// `GET /api/v1/service-map`.
#[derive(Debug, Serialize)]
pub struct ServiceMap {
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

impl QueryService {
    /// Calls between services whose called span started in `[start, end)`, summed over the
    /// cluster on a search node.
    pub async fn calls(
        &self,
        (start, end): (u64, u64),
        authorization: Option<&str>,
    ) -> Result<Answer<Vec<ServiceCall>>, Error> {
        let aggregation = Aggregation::Calls {
            start_unix_nano: start,
            end_unix_nano: end,
        };
        Ok(self
            .aggregate(aggregation, authorization)
            .await?
            .map(|found| found.calls))
    }

    /// Jaeger's dependencies: the calls whose called span started in `[start, end)`, each as
    /// (calling service, called service, calls); with `service`, those it makes or takes.
    pub async fn dependencies(
        &self,
        (start, end): (u64, u64),
        service: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Answer<Vec<(String, String, u64)>>, Error> {
        let calls = self.calls((start, end), authorization).await?;
        Ok(calls.map(|calls| {
            calls
                .into_iter()
                .filter(|c| service.is_none_or(|s| c.parent == s || c.child == s))
                .map(|c| (c.parent, c.child, c.stats.calls))
                .collect()
        }))
    }
}

impl QueryService {
    /// Every service with spans or logs in `[start, end)`, and the calls between them.
    pub async fn service_map(
        &self,
        (start, end): (u64, u64),
        authorization: Option<&str>,
    ) -> Result<ServiceMap, Error> {
        let catalog = self.services((start, end), authorization).await?;
        let mut missing = catalog.missing_nodes;
        let catalog = catalog.value;
        let calls = self.calls((start, end), authorization).await?;
        missing.extend(calls.missing_nodes);
        missing.sort();
        missing.dedup();
        let calls = calls.value;
        // Calls are counted per minute; the rate is over the minutes the range touches.
        let first_minute = start / CALL_BUCKET_NANOS;
        let last_minute = (end - 1) / CALL_BUCKET_NANOS;
        let covered_seconds =
            ((last_minute - first_minute + 1) * (CALL_BUCKET_NANOS / 1_000_000_000)) as f64;
        let clock = catalog.clock;
        let mut services: BTreeMap<String, MapService> = catalog
            .stats
            .into_iter()
            .map(|(service, stats)| {
                (
                    service.clone(),
                    MapService {
                        clock_offset_ns: clock.get(&service).map(|o| o.offset_ns.to_string()),
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
                    clock_offset_ns: clock.get(name).map(|o| o.offset_ns.to_string()),
                });
            }
        }
        Ok(ServiceMap {
            start_unix_nano: start.to_string(),
            end_unix_nano: end.to_string(),
            services: services.into_values().collect(),
            calls: calls
                .into_iter()
                .map(|c| map_call(c, covered_seconds))
                .collect(),
            partial: !missing.is_empty(),
            missing_nodes: missing,
        })
    }
}
