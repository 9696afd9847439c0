//! Every latency percentile weft reports is within 1 % of the exact one and inside the fastest
//! and slowest span: span statistics and the service map, over spans of known durations spread
//! over two hour partitions (so the answer is merged), and the heatmap's rows fine enough to
//! see a 5 % shift.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde_json::Value;

use crate::common::{TestServer, now_nanos};
use crate::dataset::kv;

const CALLS: u64 = 3_000;
const HOUR: u64 = 3_600_000_000_000;

/// The exact percentile `q` of `sorted`: its `ceil(q * n)`-th smallest (nearest rank).
fn exact(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

fn within_one_percent(what: &str, got: &Value, truth: u64, (min, max): (u64, u64)) {
    let got: u64 = got
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {got}"))
        .parse()
        .unwrap();
    let error = (got as f64 - truth as f64).abs() / truth as f64;
    assert!(
        error <= 0.01,
        "{what}: {got} against an exact {truth} ({:.2} %)",
        error * 100.0
    );
    assert!(
        (min..=max).contains(&got),
        "{what}: {got} outside the spans' {min}..={max}"
    );
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![kv("service.name", service)],
        ..Default::default()
    }
}

/// `CALLS` calls from `front` to `pay`, the called spans' durations lognormal (median 40 ms),
/// half of them in the previous hour; returns the called spans' durations, sorted.
async fn send_calls(server: &TestServer) -> Vec<u64> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let durations = LogNormal::new((40e6f64).ln(), 0.8).unwrap();
    let now = now_nanos();
    let (mut clients, mut servers, mut sent) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..CALLS {
        let duration = (durations.sample(&mut rng) as u64).clamp(1_000, 60_000_000_000);
        sent.push(duration);
        let start = if i % 2 == 0 {
            now - HOUR
        } else {
            now - 60_000_000_000
        } + rng.random_range(0..1_000_000_000);
        let trace_id = [&(i + 1).to_be_bytes()[..], &[0x5e; 8][..]].concat();
        let client_id = (2 * i + 1).to_be_bytes().to_vec();
        clients.push(Span {
            trace_id: trace_id.clone(),
            span_id: client_id.clone(),
            name: "POST /pay".into(),
            kind: 3,
            start_time_unix_nano: start,
            end_time_unix_nano: start + duration + 2_000_000,
            ..Default::default()
        });
        servers.push(Span {
            trace_id,
            span_id: (2 * i + 2).to_be_bytes().to_vec(),
            parent_span_id: client_id,
            name: "POST /pay".into(),
            kind: 2,
            start_time_unix_nano: start + 1_000_000,
            end_time_unix_nano: start + 1_000_000 + duration,
            ..Default::default()
        });
    }
    let mut client = TraceServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    for (service, spans) in [("front", clients), ("pay", servers)] {
        for chunk in spans.chunks(500) {
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource(service)),
                    scope_spans: vec![ScopeSpans {
                        spans: chunk.to_vec(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            client.export(request).await.unwrap();
        }
    }
    sent.sort_unstable();
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_are_within_one_percent_and_inside_the_extremes() {
    let server = TestServer::start().await;
    let sent = send_calls(&server).await;
    let (min, max) = (sent[0], sent[sent.len() - 1]);
    let range = [
        ("start", (now_nanos() - 2 * HOUR).to_string()),
        ("end", (now_nanos() + HOUR).to_string()),
    ];
    let range: Vec<(&str, &str)> = range.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        range.iter().copied().chain(extra.iter().copied()).collect()
    };

    // Span statistics: merged over the two hours.
    let stats_query = with(&[("q", "service:pay"), ("group_by", "service")]);
    let started = std::time::Instant::now();
    let group = loop {
        let (status, body) = server.get("/api/v1/spans/stats", &stats_query).await;
        assert_eq!(status, 200, "{body}");
        if body["groups"][0]["count"] == CALLS {
            break body["groups"][0].clone();
        }
        assert!(started.elapsed() < crate::common::DEADLINE, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for (field, q) in [("p50_ns", 0.5), ("p90_ns", 0.9), ("p99_ns", 0.99)] {
        within_one_percent(field, &group[field], exact(&sent, q), (min, max));
    }
    assert_eq!(group["max_ns"], max.to_string(), "the slowest, exactly");

    // The service map's call from front to pay, from the calls tables of both hours.
    let (status, map) = server.get("/api/v1/service-map", &range).await;
    assert_eq!(status, 200, "{map}");
    let call = map["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["parent"] == "front" && c["child"] == "pay")
        .unwrap_or_else(|| panic!("no call from front to pay: {map}"))
        .clone();
    assert_eq!(call["calls"], CALLS, "{call}");
    within_one_percent(
        "service map p50",
        &call["p50_ns"],
        exact(&sent, 0.5),
        (min, max),
    );
    within_one_percent(
        "service map p99",
        &call["p99_ns"],
        exact(&sent, 0.99),
        (min, max),
    );

    // The heatmap's rows: each at most a sixteenth of a doubling, so a 5 % shift shows.
    let (status, heatmap) = server
        .get("/api/v1/spans/heatmap", &with(&[("q", "service:pay")]))
        .await;
    assert_eq!(status, 200, "{heatmap}");
    let rows = heatmap["latency_buckets"].as_array().unwrap();
    assert!(rows.len() > 16, "{} rows", rows.len());
    for row in rows {
        let low: f64 = row["low_ns"].as_str().unwrap().parse().unwrap();
        let high: f64 = row["high_ns"].as_str().unwrap().parse().unwrap();
        assert!((high - low) / low <= 1.0 / 16.0 + 1e-9, "{row}");
    }
    let counted: u64 = heatmap["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, CALLS);
    server.stop().await;
}
