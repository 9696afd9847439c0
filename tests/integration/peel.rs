//! Layer peeling over HTTP on a data set whose answer is known: twenty hosts of one service,
//! `h7` slow, the hosts on kernel `6.8` failing. Facets, the field list, grouped statistics,
//! the heatmap and the comparison must each point at them; bad parameters are 400s that say
//! what is wrong.
// The answer models list every field (they deny unknown ones); not every field is checked.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde::Deserialize;

use crate::common::{DEADLINE, TestServer, now_nanos};
use crate::dataset::kv;

const HOSTS: u64 = 20;
const PER_HOST: u64 = 30;
const MS: u64 = 1_000_000;
const SLOW_HOST: u64 = 7;

fn kernel(host: u64) -> &'static str {
    if host >= 15 { "6.8" } else { "6.1" }
}

fn resource(host: u64) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", "checkout"),
            kv("host.name", &format!("h{host}")),
            kv("host.kernel", kernel(host)),
        ],
        ..Default::default()
    }
}

fn trace_id(host: u64, i: u64) -> Vec<u8> {
    let mut id = vec![0xAB; 16];
    id[..8].copy_from_slice(&(host * 1000 + i + 1).to_be_bytes());
    id
}

/// The known-answer data set, sent over OTLP/gRPC: one export per host, as each host's SDK
/// would; the first time is returned.
async fn send(server: &TestServer) -> u64 {
    let base = now_nanos() - 20 * 60 * 1_000_000_000;
    let endpoint = format!("http://{}", server.grpc);
    let mut traces = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut logs = LogsServiceClient::connect(endpoint).await.unwrap();
    for host in 0..HOSTS {
        let spans = (0..PER_HOST)
            .map(|i| {
                let start = base + (host * PER_HOST + i) * MS;
                let ms = if host == SLOW_HOST { 900 + i } else { 5 + i };
                let failed = kernel(host) == "6.8" && i % 3 == 0;
                Span {
                    trace_id: trace_id(host, i),
                    span_id: (host * 1000 + i + 1).to_be_bytes().to_vec(),
                    name: if i % 2 == 0 { "GET /cart" } else { "POST /pay" }.into(),
                    kind: 2,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + ms * MS,
                    status: Some(Status {
                        code: if failed { 2 } else { 1 },
                        message: String::new(),
                    }),
                    ..Default::default()
                }
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource(host)),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        traces.export(request).await.unwrap();
        let records = (0..PER_HOST)
            .map(|i| LogRecord {
                time_unix_nano: base + (host * PER_HOST + i) * MS,
                severity_number: if kernel(host) == "6.8" && i % 2 == 0 {
                    17
                } else {
                    9
                },
                attributes: vec![kv("order.id", &format!("o{host}-{i}"))],
                trace_id: trace_id(host, i),
                ..Default::default()
            })
            .collect();
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource(host)),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        logs.export(request).await.unwrap();
    }
    base
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Facets {
    total: u64,
    facets: Vec<Facet>,
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Facet {
    field: String,
    values: Vec<FacetValue>,
    with_field: u64,
    distinct: u64,
    capped: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FacetValue {
    value: String,
    count: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Fields {
    fields: Vec<FieldInfo>,
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FieldInfo {
    field: String,
    distinct: u64,
    with_field: Option<u64>,
    exact: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Stats {
    group_by: Vec<String>,
    total: u64,
    groups: Vec<Group>,
    limited: bool,
    series_bucket_ns: Option<String>,
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Group {
    key: Vec<Option<String>>,
    count: u64,
    rate: f64,
    errors: u64,
    error_ratio: f64,
    p50_ns: Option<String>,
    p90_ns: Option<String>,
    p99_ns: Option<String>,
    max_ns: String,
    exemplars: Vec<Exemplar>,
    #[serde(default)]
    series: Vec<SeriesPoint>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Exemplar {
    band: String,
    trace_id: String,
    duration_ns: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SeriesPoint {
    count: u64,
    errors: u64,
    p99_ns: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Heatmap {
    total: u64,
    start_unix_nano: String,
    bucket_ns: String,
    buckets: usize,
    latency_buckets: Vec<LatencyBucket>,
    cells: Vec<Cell>,
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct LatencyBucket {
    bucket: u16,
    low_ns: String,
    high_ns: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Cell {
    t: u32,
    l: u16,
    count: u64,
    exemplar: Option<String>,
    exemplar_duration_ns: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Comparison {
    selection_total: u64,
    baseline_total: u64,
    baseline: String,
    fields_compared: Vec<String>,
    findings: Vec<Finding>,
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Finding {
    field: String,
    value: String,
    selection_count: u64,
    baseline_count: u64,
    selection_share: f64,
    baseline_share: f64,
    difference: f64,
}

async fn get<T: serde::de::DeserializeOwned>(
    server: &TestServer,
    path: &str,
    query: &[(&str, &str)],
) -> T {
    let (status, body) = server.get(path, query).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_value(body).unwrap()
}

/// Sends the data set and waits until every span and log is searchable.
async fn loaded() -> (TestServer, u64) {
    let server = TestServer::start().await;
    let base = send(&server).await;
    let started = Instant::now();
    loop {
        let spans: Facets = get(&server, "/api/v1/spans/facets", &[("fields", "service")]).await;
        let logs: Facets = get(&server, "/api/v1/logs/facets", &[("fields", "service")]).await;
        if spans.total == HOSTS * PER_HOST && logs.total == HOSTS * PER_HOST {
            return (server, base);
        }
        assert!(started.elapsed() < DEADLINE, "{spans:?} {logs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facets_stats_heatmap_and_comparison_point_at_the_slow_host_and_the_failing_kernel() {
    let (server, base) = loaded().await;

    // Facets of the slow spans: one host.
    let slow: Facets = get(
        &server,
        "/api/v1/spans/facets",
        &[
            ("q", "duration>=500ms"),
            ("fields", "resource.host.name,resource.host.kernel,name"),
        ],
    )
    .await;
    assert_eq!(slow.total, PER_HOST);
    // One node holds everything: nothing is missing.
    assert_eq!((slow.partial, slow.missing_nodes.len()), (false, 0));
    let hosts = &slow.facets[0];
    assert_eq!(hosts.field, "resource.host.name");
    assert_eq!(
        (hosts.distinct, hosts.with_field, hosts.capped),
        (1, PER_HOST, false)
    );
    assert_eq!(hosts.values[0].value, format!("h{SLOW_HOST}"));
    assert_eq!(slow.facets[2].distinct, 2, "both operations are slow on h7");

    // The field list offers the undeclared resource keys.
    let fields: Fields = get(&server, "/api/v1/logs/fields", &[("q", "severity>=error")]).await;
    assert_eq!((fields.partial, fields.missing_nodes.len()), (false, 0));
    let kernel = fields
        .fields
        .iter()
        .find(|f| f.field == "resource.host.kernel")
        .expect("resource.host.kernel is offered");
    assert_eq!(
        (kernel.distinct, kernel.with_field, kernel.exact),
        (1, Some(5 * 15), true)
    );

    // Statistics by host: h7's p99 is the slow one, its exemplars are its own traces.
    let stats: Stats = get(
        &server,
        "/api/v1/spans/stats",
        &[("group_by", "resource.host.name"), ("series", "4")],
    )
    .await;
    assert_eq!(stats.group_by, ["resource.host.name"]);
    assert_eq!((stats.partial, stats.missing_nodes.len()), (false, 0));
    assert_eq!(
        (stats.total, stats.groups.len(), stats.limited),
        (HOSTS * PER_HOST, 20, false)
    );
    assert!(stats.series_bucket_ns.is_some());
    let slowest = stats
        .groups
        .iter()
        .max_by_key(|g| g.p99_ns.as_ref().unwrap().parse::<u64>().unwrap())
        .unwrap();
    assert_eq!(slowest.key, [Some(format!("h{SLOW_HOST}"))]);
    assert_eq!(slowest.max_ns, ((900 + PER_HOST - 1) * MS).to_string());
    let h7_traces: Vec<String> = (0..PER_HOST)
        .map(|i| hex::encode(trace_id(SLOW_HOST, i)))
        .collect();
    assert!(!slowest.exemplars.is_empty());
    assert!(
        slowest
            .exemplars
            .iter()
            .all(|e| h7_traces.contains(&e.trace_id))
    );
    assert_eq!(
        slowest.series.iter().map(|s| s.count).sum::<u64>(),
        PER_HOST
    );
    for g in &stats.groups {
        assert_eq!(g.count, PER_HOST);
        assert!(g.rate > 0.0);
    }

    // By kernel: the errors are all on 6.8.
    let by_kernel: Stats = get(
        &server,
        "/api/v1/spans/stats",
        &[("group_by", "resource.host.kernel")],
    )
    .await;
    for g in &by_kernel.groups {
        let failing = g.key[0].as_deref() == Some("6.8");
        assert_eq!(g.errors > 0, failing, "{g:?}");
        assert_eq!(g.error_ratio > 0.0, failing);
    }

    // The heatmap: the slow band holds h7's spans and its exemplars are h7's traces.
    let heatmap: Heatmap = get(&server, "/api/v1/spans/heatmap", &[("buckets", "12")]).await;
    assert_eq!((heatmap.total, heatmap.buckets), (HOSTS * PER_HOST, 12));
    assert_eq!((heatmap.partial, heatmap.missing_nodes.len()), (false, 0));
    assert_eq!(
        heatmap.cells.iter().map(|c| c.count).sum::<u64>(),
        HOSTS * PER_HOST
    );
    let slow_buckets: Vec<u16> = heatmap
        .latency_buckets
        .iter()
        .filter(|b| b.low_ns.parse::<u64>().unwrap() >= 500 * MS)
        .map(|b| b.bucket)
        .collect();
    let slow_cells: Vec<&Cell> = heatmap
        .cells
        .iter()
        .filter(|c| slow_buckets.contains(&c.l))
        .collect();
    assert_eq!(slow_cells.iter().map(|c| c.count).sum::<u64>(), PER_HOST);
    for cell in slow_cells {
        assert!(h7_traces.contains(cell.exemplar.as_ref().unwrap()));
    }
    let start: u64 = heatmap.start_unix_nano.parse().unwrap();
    let width: u64 = heatmap.bucket_ns.parse().unwrap();
    assert!(start <= base && base < start + width * 12);

    // What is different about the slow spans: h7.
    let compare: Comparison = get(
        &server,
        "/api/v1/spans/compare",
        &[("q", "duration>=500ms")],
    )
    .await;
    assert_eq!(compare.baseline, "rest");
    assert_eq!((compare.partial, compare.missing_nodes.len()), (false, 0));
    assert_eq!(
        (compare.selection_total, compare.baseline_total),
        (PER_HOST, (HOSTS - 1) * PER_HOST)
    );
    let top = &compare.findings[0];
    assert_eq!(
        (top.field.as_str(), top.value.as_str()),
        ("resource.host.name", "h7")
    );
    assert_eq!((top.selection_share, top.baseline_share), (1.0, 0.0));

    // What marks the ERROR logs: kernel 6.8.
    let errors: Comparison =
        get(&server, "/api/v1/logs/compare", &[("q", "severity>=error")]).await;
    let top = &errors.findings[0];
    assert_eq!(
        (top.field.as_str(), top.value.as_str()),
        ("resource.host.kernel", "6.8")
    );
    assert_eq!(top.selection_share, 1.0);
    assert!(!errors.fields_compared.contains(&"severity".to_string()));
    assert!(
        !errors
            .fields_compared
            .contains(&"attr.order.id".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peeling_parameters_are_400s_that_say_what_is_wrong() {
    let server = TestServer::start().await;
    let fields_20: String = (0..21)
        .map(|i| format!("attr.k{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let long_key = format!("attr.{}", "k".repeat(300));
    for (path, query, expected) in [
        (
            "/api/v1/spans/facets",
            vec![("fields", "severity")],
            "cannot aggregate 'severity' for spans",
        ),
        (
            "/api/v1/logs/facets",
            vec![("fields", "name")],
            "cannot aggregate 'name' for logs",
        ),
        (
            "/api/v1/logs/facets",
            vec![("fields", fields_20.as_str())],
            "at most 20",
        ),
        (
            "/api/v1/logs/facets",
            vec![("fields", long_key.as_str())],
            "needs a key of 1 to 256",
        ),
        (
            "/api/v1/logs/facets",
            vec![("limit", "0")],
            "limit must be a number",
        ),
        (
            "/api/v1/spans/stats",
            vec![("group_by", "service,name,kind,status,scope")],
            "at most 4",
        ),
        (
            "/api/v1/spans/stats",
            vec![("series", "many")],
            "series must be a number",
        ),
        (
            "/api/v1/spans/heatmap",
            vec![("buckets", "100000")],
            "buckets must be a number",
        ),
        (
            "/api/v1/spans/heatmap",
            vec![("q", "severity:error")],
            "unknown field 'severity'",
        ),
        (
            "/api/v1/spans/compare",
            vec![],
            "q must select the rows to compare",
        ),
        (
            "/api/v1/logs/compare",
            vec![("q", "error"), ("baseline", "(")],
            "expected",
        ),
        (
            "/api/v1/logs/fields",
            vec![("start", "soon")],
            "start must be RFC 3339",
        ),
    ] {
        let (status, body) = server.get(path, &query).await;
        assert_eq!(status, 400, "{path} {query:?}: {body}");
        assert!(
            body.to_string().contains(expected),
            "{path} {query:?}: {body}"
        );
    }
}
