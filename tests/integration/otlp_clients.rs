//! The real `opentelemetry-otlp` exporters, on each transport, and every field found again.

use std::collections::HashMap;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, Key, KeyValue};
use opentelemetry_otlp::{
    Compression, LogExporter, Protocol, SpanExporter, WithExportConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::json;

use crate::common::TestServer;

#[derive(Clone, Copy, Debug)]
enum Transport {
    GrpcGzip,
    HttpProtobuf,
    HttpJson,
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new("host.name", "a1"),
        ])
        .build()
}

fn providers(transport: Transport, server: &TestServer) -> (SdkLoggerProvider, SdkTracerProvider) {
    let (logs, spans) = match transport {
        Transport::GrpcGzip => (
            LogExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://{}", server.grpc))
                .with_compression(Compression::Gzip)
                .build()
                .unwrap(),
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://{}", server.grpc))
                .with_compression(Compression::Gzip)
                .build()
                .unwrap(),
        ),
        Transport::HttpProtobuf | Transport::HttpJson => {
            let protocol = match transport {
                Transport::HttpJson => Protocol::HttpJson,
                _ => Protocol::HttpBinary,
            };
            (
                LogExporter::builder()
                    .with_http()
                    .with_protocol(protocol)
                    .with_endpoint(server.url("/v1/logs"))
                    .build()
                    .unwrap(),
                SpanExporter::builder()
                    .with_http()
                    .with_protocol(protocol)
                    .with_endpoint(server.url("/v1/traces"))
                    .build()
                    .unwrap(),
            )
        }
    };
    (
        SdkLoggerProvider::builder()
            .with_resource(resource())
            .with_simple_exporter(logs)
            .build(),
        SdkTracerProvider::builder()
            .with_resource(resource())
            .with_simple_exporter(spans)
            .build(),
    )
}

struct Sent {
    trace_id: String,
    root_span_id: String,
    child_span_id: String,
}

/// Emits a two-span trace with one log under the child span, the way an instrumented service
/// would. Runs on a blocking thread: the SDK's simple processors block on each export.
fn emit(
    logger_provider: SdkLoggerProvider,
    tracer_provider: SdkTracerProvider,
    marker: &str,
) -> Sent {
    let scope = InstrumentationScope::builder("payments")
        .with_version("1.2.0")
        .build();
    let tracer = tracer_provider.tracer_with_scope(scope.clone());
    let logger = logger_provider.logger_with_scope(scope);

    let root = tracer
        .span_builder("POST /pay")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.route", "/pay"),
            KeyValue::new("http.status_code", 402i64),
        ])
        .start(&tracer);
    let root_span_id = root.span_context().span_id().to_string();
    let cx = Context::current_with_span(root);
    let mut child = tracer
        .span_builder("charge card")
        .with_kind(SpanKind::Client)
        .start_with_context(&tracer, &cx);
    let trace_id = child.span_context().trace_id();
    let child_span_id = child.span_context().span_id();

    let mut record = logger.create_log_record();
    record.set_event_name("PaymentDeclined");
    record.set_severity_number(Severity::Error);
    record.set_severity_text("ERROR");
    record.set_timestamp(std::time::SystemTime::now());
    record.set_body(AnyValue::from(format!(
        "card declined for order 8812 {marker}"
    )));
    record.add_attribute("order.id", "8812");
    record.add_attribute("retry", true);
    record.add_attribute("amount.cents", 1999i64);
    record.add_attribute("ratio", 0.25f64);
    record.add_attribute("raw", AnyValue::Bytes(Box::new(vec![1, 2, 255])));
    record.add_attribute(
        "tags",
        AnyValue::ListAny(Box::new(vec![AnyValue::from("a"), AnyValue::from(1i64)])),
    );
    record.add_attribute(
        "card",
        AnyValue::Map(Box::new(HashMap::from([(
            Key::new("brand"),
            AnyValue::from("visa"),
        )]))),
    );
    record.set_trace_context(trace_id, child_span_id, None);
    logger.emit(record);

    child.add_event(
        "exception",
        vec![KeyValue::new("exception.message", "card declined")],
    );
    child.set_status(Status::error("card declined"));
    child.end();
    cx.span().end();

    logger_provider.shutdown().unwrap();
    tracer_provider.shutdown().unwrap();
    Sent {
        trace_id: trace_id.to_string(),
        root_span_id,
        child_span_id: child_span_id.to_string(),
    }
}

async fn round_trip(transport: Transport) {
    let server = TestServer::start().await;
    let (logger_provider, tracer_provider) = providers(transport, &server);
    let marker = format!("{transport:?}").to_lowercase();
    let marker_for_thread = marker.clone();
    let sent = tokio::task::spawn_blocking(move || {
        emit(logger_provider, tracer_provider, &marker_for_thread)
    })
    .await
    .unwrap();

    let trace = server.wait_for_trace(&sent.trace_id, 2, 1).await;
    let log = &trace["logs"][0];
    assert_eq!(log["trace_id"], sent.trace_id.as_str());
    assert_eq!(log["span_id"], sent.child_span_id.as_str());
    assert_eq!(log["service"], "checkout");
    assert_eq!(log["event"], "PaymentDeclined");
    assert_eq!(log["severity_number"], 17);
    assert_eq!(log["severity_text"], "ERROR");
    assert_eq!(
        log["body"],
        format!("card declined for order 8812 {marker}").as_str()
    );
    assert_eq!(
        log["attributes"],
        json!({
            "order.id": "8812", "retry": true, "amount.cents": 1999, "ratio": 0.25,
            "raw": "AQL/", "tags": ["a", 1], "card": {"brand": "visa"}
        })
    );
    assert_eq!(log["resource"]["service.name"], "checkout");
    assert_eq!(log["resource"]["host.name"], "a1");
    assert_eq!(log["scope"]["name"], "payments");
    assert_eq!(log["scope"]["version"], "1.2.0");

    let spans = trace["spans"].as_array().unwrap();
    let root = spans
        .iter()
        .find(|s| s["span_id"] == sent.root_span_id.as_str())
        .expect("root span stored");
    let child = spans
        .iter()
        .find(|s| s["span_id"] == sent.child_span_id.as_str())
        .expect("child span stored");
    assert_eq!(root["name"], "POST /pay");
    assert_eq!(root["kind"], "server");
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(root["attributes"]["http.route"], "/pay");
    assert_eq!(root["attributes"]["http.status_code"], 402);
    assert_eq!(root["scope"]["name"], "payments");
    assert_eq!(child["parent_span_id"], sent.root_span_id.as_str());
    assert_eq!(child["kind"], "client");
    assert_eq!(child["status"]["code"], "error");
    assert_eq!(child["status"]["message"], "card declined");
    assert_eq!(child["events"][0]["name"], "exception");
    assert_eq!(
        child["events"][0]["attributes"]["exception.message"],
        "card declined"
    );
    let start: u64 = child["start_time_unix_nano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u64 = child["end_time_unix_nano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let duration: u64 = child["duration_ns"].as_str().unwrap().parse().unwrap();
    assert_eq!(end - start, duration);

    let summary = &trace["summary"];
    assert_eq!(summary["root_name"], "POST /pay");
    assert_eq!(summary["root_service"], "checkout");
    assert_eq!(summary["span_count"], 2);
    assert_eq!(summary["error_count"], 1);
    assert_eq!(summary["log_count"], 1);
    assert_eq!(summary["incomplete"], false);

    // The same record through search, by text and by each kind of filter.
    for q in [
        format!("declined {marker}"),
        format!("{marker} service:checkout severity>=ERROR event:PaymentDeclined"),
        format!("trace_id:{} span_id:{}", sent.trace_id, sent.child_span_id),
        "attr.order.id:8812 attr.amount.cents:1999 attr.retry:true resource.host.name:a1".into(),
        "scope:payments attr.card.brand:visa".into(),
    ] {
        let logs = server.wait_for_logs(&q, 1).await;
        assert_eq!(logs.len(), 1, "{q}");
        assert_eq!(logs[0]["span_id"], sent.child_span_id.as_str(), "{q}");
    }
    let (_, body) = server.get("/api/v1/logs", &[("q", "severity<ERROR")]).await;
    assert_eq!(body["logs"].as_array().unwrap().len(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_gzip_keeps_every_field() {
    round_trip(Transport::GrpcGzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_keeps_every_field() {
    round_trip(Transport::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_keeps_every_field() {
    round_trip(Transport::HttpJson).await;
}
