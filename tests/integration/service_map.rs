//! `GET /api/v1/service-map`: the calls between services of the multi-service data set, with
//! counts, errors, rates, latency and exemplar traces checked against what was sent.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::dataset::{Dataset, SentSpan};
use crate::query_api::loaded;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ServiceMap {
    start_unix_nano: String,
    end_unix_nano: String,
    services: Vec<MapService>,
    calls: Vec<MapCall>,
    partial: bool,
    missing_nodes: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct MapService {
    service: String,
    span_count: u64,
    log_count: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct MapCall {
    parent: String,
    child: String,
    calls: u64,
    errors: u64,
    error_ratio: f64,
    rate_per_second: f64,
    p50_ns: String,
    p99_ns: String,
    exemplars: Vec<Exemplar>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Exemplar {
    trace_id: String,
    duration_ns: u64,
    error: bool,
}

/// The called spans of each pair of services, from what was sent.
fn called_spans(data: &Dataset) -> BTreeMap<(String, String), Vec<&SentSpan>> {
    let service_of: HashMap<(&[u8], &[u8]), &str> = data
        .spans
        .iter()
        .map(|s| ((s.trace_id.as_slice(), s.span_id.as_slice()), s.service))
        .collect();
    let mut calls: BTreeMap<(String, String), Vec<&SentSpan>> = BTreeMap::new();
    for span in &data.spans {
        if let Some(parent) = service_of.get(&(span.trace_id.as_slice(), span.parent.as_slice()))
            && *parent != span.service
        {
            calls
                .entry((parent.to_string(), span.service.to_string()))
                .or_default()
                .push(span);
        }
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_map_shows_every_call_with_its_rate_errors_latency_and_traces() {
    let (server, data) = loaded().await;
    let (start, end) = (data.start.to_string(), data.end.to_string());
    let response = server
        .client
        .get(server.url("/api/v1/service-map"))
        .query(&[("start", &start), ("end", &end)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let map: ServiceMap = response.json().await.unwrap();
    assert_eq!((map.start_unix_nano, map.end_unix_nano), (start, end));
    assert_eq!((map.partial, map.missing_nodes.len()), (false, 0));
    let services: Vec<&str> = map.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["checkout", "frontend", "inventory", "payments"]);
    for service in &map.services {
        let spans = data
            .spans
            .iter()
            .filter(|s| s.service == service.service)
            .count();
        let logs = data
            .logs
            .iter()
            .filter(|l| l.service == service.service)
            .count();
        assert_eq!(
            (service.span_count, service.log_count),
            (spans as u64, logs as u64)
        );
    }

    let want = called_spans(&data);
    let got: Vec<(String, String)> = map
        .calls
        .iter()
        .map(|c| (c.parent.clone(), c.child.clone()))
        .collect();
    assert_eq!(got, want.keys().cloned().collect::<Vec<_>>());
    // The range is two whole hours: exactly the five-minute buckets it touches.
    let covered_seconds = 2.0 * 3600.0;
    for call in &map.calls {
        let spans = &want[&(call.parent.clone(), call.child.clone())];
        let errors = spans.iter().filter(|s| s.error).count() as u64;
        assert_eq!(
            (call.calls, call.errors),
            (spans.len() as u64, errors),
            "{call:?}"
        );
        assert!((call.error_ratio - errors as f64 / spans.len() as f64).abs() < 1e-9);
        assert!((call.rate_per_second - spans.len() as f64 / covered_seconds).abs() < 1e-9);
        // Percentiles come from log-scaled buckets: at or above the true value, within 19 %.
        let mut durations: Vec<u64> = spans.iter().map(|s| s.end - s.start).collect();
        durations.sort_unstable();
        let rank = |q: f64| durations[((q * durations.len() as f64).ceil() as usize).max(1) - 1];
        for (q, reported) in [(0.5, &call.p50_ns), (0.99, &call.p99_ns)] {
            let reported: f64 = reported.parse().unwrap();
            let truth = rank(q) as f64;
            assert!(
                reported >= truth && reported <= truth * 1.19 + 1.0,
                "{}->{} p{q}: {reported} against {truth}",
                call.parent,
                call.child
            );
        }
        // Exemplars: traces that have this call, failed ones first, then the slowest.
        assert!(!call.exemplars.is_empty() && call.exemplars.len() <= 10);
        for exemplar in &call.exemplars {
            let span = spans
                .iter()
                .find(|s| hex::encode(&s.trace_id) == exemplar.trace_id)
                .expect("an exemplar is a trace with this call");
            assert_eq!(
                (exemplar.duration_ns, exemplar.error),
                (span.end - span.start, span.error)
            );
        }
        let failed_first = call.exemplars.iter().take(errors as usize);
        assert!(failed_first.into_iter().all(|e| e.error), "{call:?}");
    }

    // A range without data: services and calls are empty; a bad range is a 400.
    let response = server
        .client
        .get(server.url("/api/v1/service-map"))
        .query(&[("start", "1000"), ("end", "2000")])
        .send()
        .await
        .unwrap();
    let empty: ServiceMap = response.json().await.unwrap();
    assert!(empty.services.is_empty() && empty.calls.is_empty());
    let (status, body) = server
        .get("/api/v1/service-map", &[("start", "soon")])
        .await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}
