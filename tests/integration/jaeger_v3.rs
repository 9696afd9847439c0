//! Jaeger API v3 and `/api/dependencies` against weft, decoded by typed models of Jaeger's JSON
//! (unknown fields refused), with the requests written exactly as the Jaeger UI 2.20 builds them
//! (`URLSearchParams` form encoding: `+` for spaces, `%3A` in times, RFC 3339 with milliseconds).
// The models list every field Jaeger's JSON may have, so that an unknown one fails to decode;
// not every field is then looked at.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::dataset::Dataset;
use crate::query_api::loaded;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Services {
    services: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Operations {
    operations: Vec<Operation>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Operation {
    name: String,
    span_kind: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Summaries {
    summaries: Option<Vec<Summary>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Summary {
    trace_id: String,
    root_service_name: Option<String>,
    root_operation_name: Option<String>,
    min_start_time_unix_nano: Option<String>,
    max_end_time_unix_nano: Option<String>,
    span_count: Option<u32>,
    error_span_count: Option<u32>,
    orphan_span_count: Option<u32>,
    services: Option<Vec<ServiceSummary>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceSummary {
    name: String,
    span_count: Option<u32>,
    error_span_count: Option<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    error: ErrorDetails,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ErrorDetails {
    grpc_code: Option<i32>,
    http_code: Option<u16>,
    message: Option<String>,
    http_status: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TracesEnvelope {
    result: TracesData,
}

// OTLP JSON (opentelemetry-proto's trace.proto in proto3 JSON form).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TracesData {
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResourceSpans {
    resource: Option<Resource>,
    scope_spans: Vec<ScopeSpans>,
    schema_url: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Resource {
    attributes: Vec<KeyValue>,
    dropped_attributes_count: Option<u32>,
    entity_refs: Option<Vec<Value>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScopeSpans {
    scope: Option<Scope>,
    spans: Vec<OtlpSpan>,
    schema_url: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Scope {
    name: Option<String>,
    version: Option<String>,
    attributes: Option<Vec<KeyValue>>,
    dropped_attributes_count: Option<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OtlpSpan {
    trace_id: String,
    span_id: String,
    trace_state: Option<String>,
    parent_span_id: Option<String>,
    flags: Option<u32>,
    name: String,
    kind: Option<i32>,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Option<Vec<KeyValue>>,
    dropped_attributes_count: Option<u32>,
    events: Option<Vec<OtlpEvent>>,
    dropped_events_count: Option<u32>,
    links: Option<Vec<Value>>,
    dropped_links_count: Option<u32>,
    status: Option<OtlpStatus>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OtlpEvent {
    time_unix_nano: String,
    name: String,
    attributes: Option<Vec<KeyValue>>,
    dropped_attributes_count: Option<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct OtlpStatus {
    message: Option<String>,
    code: Option<i32>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct KeyValue {
    key: String,
    value: AnyValue,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AnyValue {
    string_value: Option<String>,
    bool_value: Option<bool>,
    /// int64: a decimal string in proto3 JSON.
    int_value: Option<String>,
    double_value: Option<f64>,
    array_value: Option<Value>,
    kvlist_value: Option<Value>,
    bytes_value: Option<String>,
}

/// Jaeger's `/api/dependencies` envelope.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct DependenciesEnvelope {
    data: Option<Vec<DependencyLink>>,
    total: i64,
    limit: i64,
    offset: i64,
    errors: Option<Vec<Value>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DependencyLink {
    parent: String,
    child: String,
    call_count: u64,
}

/// A time as the UI's `new Date(µs / 1000).toISOString()` writes it, form-encoded.
fn ui_time(ns: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}%3A{:02}%3A{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn is_decimal(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Calls between services in what was sent: spans whose parent is in another service.
fn expected_calls(data: &Dataset) -> BTreeMap<(String, String), u64> {
    let service_of: HashMap<(&[u8], &[u8]), &str> = data
        .spans
        .iter()
        .map(|s| ((s.trace_id.as_slice(), s.span_id.as_slice()), s.service))
        .collect();
    let mut calls = BTreeMap::new();
    for span in &data.spans {
        if let Some(parent) = service_of.get(&(span.trace_id.as_slice(), span.parent.as_slice()))
            && *parent != span.service
        {
            *calls
                .entry((parent.to_string(), span.service.to_string()))
                .or_default() += 1;
        }
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jaeger_ui_requests_answered_in_jaegers_v3_model() {
    let (server, data) = loaded().await;
    // A raw query string, sent as the UI sends it.
    let get = |path_and_query: String| {
        let server = &server;
        async move {
            let response = server
                .client
                .get(server.url(&path_and_query))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    // Search page: services, then operations of the chosen service.
    let (status, text) = get("/api/v3/services".into()).await;
    assert_eq!(status, 200, "{text}");
    let services: Services = serde_json::from_str(&text).unwrap();
    let sent: BTreeSet<String> = data.spans.iter().map(|s| s.service.to_string()).collect();
    assert_eq!(services.services.into_iter().collect::<BTreeSet<_>>(), sent);

    let (status, text) = get("/api/v3/operations?service=frontend".into()).await;
    assert_eq!(status, 200, "{text}");
    let operations: Operations = serde_json::from_str(&text).unwrap();
    let got: BTreeSet<(String, String)> = operations
        .operations
        .into_iter()
        .map(|o| (o.name, o.span_kind))
        .collect();
    let kind_name = |kind: i32| {
        [
            "internal", "internal", "server", "client", "producer", "consumer",
        ][kind as usize]
            .to_string()
    };
    let want: BTreeSet<(String, String)> = data
        .spans
        .iter()
        .filter(|s| s.service == "frontend")
        .map(|s| (s.name.to_string(), kind_name(s.kind)))
        .collect();
    assert_eq!(got, want);
    let (_, text) = get("/api/v3/operations?service=payments&spanKind=server".into()).await;
    let none: Operations = serde_json::from_str(&text).unwrap();
    assert!(none.operations.is_empty(), "payments has client spans only");

    // Find Traces: failed payments over the data set's range, 20 at most, as the UI writes it.
    let window = format!(
        "query.startTimeMin={}&query.startTimeMax={}",
        ui_time(data.start),
        ui_time(data.end)
    );
    let (status, text) = get(format!(
        "/api/v3/trace-summaries?query.serviceName=payments&{window}&query.searchDepth=20&query.attributes=%7B%22error%22%3A%22true%22%7D"
    ))
    .await;
    assert_eq!(status, 200, "{text}");
    let found: Summaries = serde_json::from_str(&text).unwrap();
    let summaries = found.summaries.unwrap();
    let failed: BTreeSet<String> = data
        .spans
        .iter()
        .filter(|s| s.error)
        .map(|s| hex::encode(&s.trace_id))
        .collect();
    assert_eq!(
        summaries
            .iter()
            .map(|s| s.trace_id.clone())
            .collect::<BTreeSet<_>>(),
        failed
    );
    for summary in &summaries {
        assert!(is_hex(&summary.trace_id, 32));
        let spans: Vec<_> = data
            .spans
            .iter()
            .filter(|s| hex::encode(&s.trace_id) == summary.trace_id)
            .collect();
        let start = spans.iter().map(|s| s.start).min().unwrap();
        let end = spans.iter().map(|s| s.end).max().unwrap();
        let min = summary.min_start_time_unix_nano.as_deref().unwrap();
        let max = summary.max_end_time_unix_nano.as_deref().unwrap();
        assert!(is_decimal(min) && is_decimal(max));
        assert_eq!(
            (min.parse::<u64>().unwrap(), max.parse::<u64>().unwrap()),
            (start, end)
        );
        assert_eq!(summary.span_count, Some(spans.len() as u32));
        assert_eq!(summary.error_span_count, Some(1));
        assert_eq!(summary.orphan_span_count, Some(0));
        assert_eq!(summary.root_service_name.as_deref(), Some("frontend"));
        assert_eq!(
            summary.root_operation_name.as_deref(),
            Some("GET /checkout")
        );
        let by_service: BTreeMap<String, (u32, u32)> = summary
            .services
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    (s.span_count.unwrap(), s.error_span_count.unwrap()),
                )
            })
            .collect();
        assert_eq!(by_service["payments"], (1, 1));
        assert_eq!(by_service["frontend"], (1, 0));
    }

    // An operation with a space and a slash, a duration as typed ("100 ms"), no service.
    let (status, text) = get(format!(
        "/api/v3/trace-summaries?query.operationName=GET+%2Fcheckout&{window}&query.searchDepth=20&query.durationMin=150+ms"
    ))
    .await;
    assert_eq!(status, 200, "{text}");
    let found: Summaries = serde_json::from_str(&text).unwrap();
    let want: BTreeSet<String> = data
        .spans
        .iter()
        .filter(|s| s.name == "GET /checkout" && s.end - s.start >= 150_000_000)
        .map(|s| hex::encode(&s.trace_id))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        found
            .summaries
            .unwrap()
            .into_iter()
            .map(|s| s.trace_id)
            .collect::<BTreeSet<_>>(),
        want
    );

    // The trace whose root never came: an orphan, and the earliest span stands in as root.
    let rootless = hex::encode(&data.rootless_trace);
    let (_, text) = get(format!(
        "/api/v3/trace-summaries?query.serviceName=inventory&query.operationName=restock&{window}&query.searchDepth=20"
    ))
    .await;
    let found: Summaries = serde_json::from_str(&text).unwrap();
    let summaries = found.summaries.unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].trace_id, rootless);
    assert_eq!(summaries[0].orphan_span_count, Some(1));
    assert_eq!(summaries[0].root_service_name.as_deref(), Some("payments"));

    // Nothing found is an empty list, not an error.
    let (status, text) = get(format!(
        "/api/v3/trace-summaries?query.serviceName=nobody&{window}&query.searchDepth=20"
    ))
    .await;
    assert_eq!(status, 200, "{text}");
    let found: Summaries = serde_json::from_str(&text).unwrap();
    assert!(found.summaries.unwrap().is_empty());

    // A trace in OTLP JSON, with weft's logs as events of their spans.
    let failed_trace = failed.iter().next().unwrap().clone();
    let (status, text) = get(format!("/api/v3/traces/{failed_trace}")).await;
    assert_eq!(status, 200, "{text}");
    let envelope: TracesEnvelope = serde_json::from_str(&text).unwrap();
    let mut seen_services = BTreeSet::new();
    let mut span_count = 0;
    for resource_spans in &envelope.result.resource_spans {
        let attributes = &resource_spans.resource.as_ref().unwrap().attributes;
        let service = attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.string_value.clone())
            .expect("every resource names its service");
        seen_services.insert(service.clone());
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                span_count += 1;
                assert_eq!(span.trace_id, failed_trace);
                assert!(is_hex(&span.span_id, 16));
                assert!(is_decimal(&span.start_time_unix_nano));
                assert!(is_decimal(&span.end_time_unix_nano));
                if span.name == "charge" {
                    assert_eq!(span.kind, Some(3));
                    assert_eq!(span.status.as_ref().unwrap().code, Some(2));
                    let events = span.events.as_ref().unwrap();
                    let declined = events
                        .iter()
                        .find(|e| e.name == "PaymentDeclined")
                        .expect("the span's log is among its events");
                    assert!(is_decimal(&declined.time_unix_nano));
                    assert!(declined.attributes.as_ref().unwrap().iter().any(|kv| {
                        kv.key == "message"
                            && kv
                                .value
                                .string_value
                                .as_deref()
                                .is_some_and(|m| m.contains("card declined"))
                    }));
                }
            }
        }
    }
    assert_eq!(span_count, 4);
    assert_eq!(seen_services.len(), 4);

    // Find traces (OTLP), and the errors of both forms.
    let (status, text) = get(format!(
        "/api/v3/traces?query.serviceName=payments&{window}&query.attributes=%7B%22error%22%3A%22true%22%7D"
    ))
    .await;
    assert_eq!(status, 200, "{text}");
    let envelope: TracesEnvelope = serde_json::from_str(&text).unwrap();
    let traces: BTreeSet<String> = envelope
        .result
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.trace_id.clone())
        .collect();
    assert_eq!(traces, failed);
    for (path, status) in [
        (format!("/api/v3/traces/{}", "cd".repeat(16)), 404),
        ("/api/v3/traces/xyz".to_string(), 400),
        (
            format!("/api/v3/traces?query.serviceName=nobody&{window}"),
            404,
        ),
        (
            "/api/v3/trace-summaries?query.serviceName=payments".to_string(),
            400,
        ),
        (
            format!("/api/v3/trace-summaries?{window}&query.durationMin=soon"),
            400,
        ),
        ("/api/v3/operations".to_string(), 400),
    ] {
        let (got, text) = get(path.clone()).await;
        assert_eq!(got, status, "{path}: {text}");
        let error: ErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(error.error.http_code, Some(status));
        assert!(!error.error.message.unwrap().is_empty());
        let _ = (error.error.grpc_code, error.error.http_status);
    }

    // System Architecture: a week back from now, in milliseconds, as the UI asks.
    let now_ms = crate::common::now_nanos() / 1_000_000;
    let (status, text) = get(format!(
        "/api/dependencies?endTs={now_ms}&lookback=604800000"
    ))
    .await;
    assert_eq!(status, 200, "{text}");
    let envelope: DependenciesEnvelope = serde_json::from_str(&text).unwrap();
    assert!(envelope.errors.is_none());
    let _ = (envelope.total, envelope.limit, envelope.offset);
    let got: BTreeMap<(String, String), u64> = envelope
        .data
        .unwrap()
        .into_iter()
        .map(|l| ((l.parent, l.child), l.call_count))
        .collect();
    let want = expected_calls(&data);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got, want);
    // A window before the data holds no calls; a bad number is Jaeger's 400.
    let before_ms = data.start / 1_000_000 - 1;
    let (_, text) = get(format!(
        "/api/dependencies?endTs={before_ms}&lookback=3600000"
    ))
    .await;
    let envelope: DependenciesEnvelope = serde_json::from_str(&text).unwrap();
    assert!(envelope.data.unwrap().is_empty());
    let (status, text) = get("/api/dependencies?endTs=yesterday".into()).await;
    assert_eq!(status, 400, "{text}");
    let envelope: DependenciesEnvelope = serde_json::from_str(&text).unwrap();
    assert!(envelope.data.is_none() && envelope.errors.is_some());
    server.stop().await;
}
