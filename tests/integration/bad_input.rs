//! Bad input gets a clear error and loses nothing else.

use std::io::Write;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use tonic::codec::CompressionEncoding;
use tonic_types::StatusExt;

use crate::common::{DEADLINE, TestServer, now_nanos};

fn string_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

pub fn record(body: &str, trace_id: Vec<u8>) -> LogRecord {
    LogRecord {
        time_unix_nano: now_nanos(),
        severity_number: 9,
        body: string_value(body),
        trace_id,
        ..Default::default()
    }
}

pub fn logs_request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: string_value(service),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    gzipped: bool,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = server
        .client
        .post(server.url(path))
        .header("content-type", content_type);
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    request.body(body).send().await.unwrap()
}

async fn grpc_client(server: &TestServer) -> LogsServiceClient<tonic::transport::Channel> {
    LogsServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX)
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_message_in_the_request_format() {
    let server = TestServer::start().await;

    let response = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        false,
        vec![0xff; 8],
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let status = tonic_types::Status::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
    assert!(status.message.contains("protobuf"), "{}", status.message);

    let response = post(
        &server,
        "/v1/traces",
        "application/json",
        false,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 3);
    assert!(
        body["message"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    let response = post(&server, "/v1/logs", "text/plain", false, b"hello".to_vec()).await;
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("application/x-protobuf")
    );

    let response = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        true,
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(response.status(), 400);

    let mut client = grpc_client(&server).await;
    // An empty request is valid OTLP and stores nothing.
    let response = client.export(ExportLogsServiceRequest::default()).await;
    assert!(response.is_ok(), "{response:?}");

    // Nothing was stored by any of this.
    assert_eq!(
        server
            .metric("weft_records_received_total{signal=\"logs\"}")
            .await,
        0.0
    );
    server.stop().await;
}

/// An encoding weft cannot undo is a 415 that names it, in the request's format, and nothing
/// of the body is stored: weft never guesses at bytes it cannot read.
#[tokio::test]
async fn an_unknown_content_encoding_is_refused_with_its_name() {
    let server = TestServer::start().await;
    let body = logs_request("encoded", vec![record("never stored", vec![])]).encode_to_vec();
    for encoding in ["br", "zstd", "deflate"] {
        let response = server
            .client
            .post(server.url("/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", encoding)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{encoding}");
        let status = tonic_types::Status::decode(response.bytes().await.unwrap()).unwrap();
        assert_eq!(
            status.code,
            tonic::Code::InvalidArgument as i32,
            "{encoding}"
        );
        assert!(
            status.message.contains(&format!("'{encoding}'")),
            "the answer names the encoding: {}",
            status.message
        );
    }
    let response = server
        .client
        .post(server.url("/v1/logs"))
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["message"].as_str().unwrap().contains("'br'"),
        "{answer}"
    );
    // The same body without the encoding is taken: only the encoding was refused.
    let response = post(&server, "/v1/logs", "application/x-protobuf", false, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        server
            .metric("weft_records_received_total{signal=\"logs\"}")
            .await,
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_length_ids_are_rejected_alone_and_reported() {
    let server = TestServer::start().await;
    let mut client = grpc_client(&server).await;
    let request = logs_request(
        "ids",
        vec![
            record("first good", vec![7; 16]),
            record("bad trace", vec![7; 15]),
            record("second good", vec![0; 16]),
        ],
    );
    let response = client.export(request).await.unwrap().into_inner();
    let partial = response.partial_success.expect("partial success reported");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("15 bytes"),
        "{}",
        partial.error_message
    );

    // Same over HTTP JSON, with a bad span ID.
    let body = serde_json::json!({"resourceLogs": [{"resource": {"attributes": [
    {"key": "service.name", "value": {"stringValue": "ids"}}]},
    "scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "third good"}, "timeUnixNano": now_nanos().to_string()},
        {"body": {"stringValue": "bad span"}, "traceId": "07070707070707070707070707070707", "spanId": "0102"}
    ]}]}]});
    let response = post(
        &server,
        "/v1/logs",
        "application/json",
        false,
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["partialSuccess"]["rejectedLogRecords"], "1");
    assert!(
        body["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("span_id")
    );

    let logs = server.wait_for_logs("service:ids", 3).await;
    let mut bodies: Vec<&str> = logs.iter().map(|l| l["body"].as_str().unwrap()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, vec!["first good", "second good", "third good"]);
    // The all-zero trace ID means "no trace".
    let second = logs.iter().find(|l| l["body"] == "second good").unwrap();
    assert_eq!(second["trace_id"], "");
    assert_eq!(
        server
            .metric("weft_records_rejected_total{signal=\"logs\"}")
            .await,
        2.0
    );
    assert_eq!(
        server
            .metric("weft_records_received_total{signal=\"logs\"}")
            .await,
        3.0
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_on_both_transports() {
    const LIMIT: usize = 1 << 20;
    let server =
        TestServer::start_with(tempfile::tempdir().unwrap(), |c| c.max_body_bytes = LIMIT).await;
    let mut client = grpc_client(&server).await;
    client
        .export(logs_request("size", vec![record("before", vec![])]))
        .await
        .unwrap();

    // A small gzip body that inflates past the limit.
    let big = logs_request("size", vec![record(&"a".repeat(2 * LIMIT), vec![])]).encode_to_vec();
    let compressed = gzip(&big);
    assert!(compressed.len() < LIMIT / 10);
    let response = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        true,
        compressed,
    )
    .await;
    assert_eq!(response.status(), 413);
    let status = tonic_types::Status::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, tonic::Code::ResourceExhausted as i32);
    assert!(status.message.contains("limit"), "{}", status.message);

    // The same uncompressed.
    let response = post(&server, "/v1/logs", "application/x-protobuf", false, big).await;
    assert_eq!(response.status(), 413);

    // gRPC, compressed and not.
    let oversized = logs_request("size", vec![record(&"a".repeat(2 * LIMIT), vec![])]);
    let mut gzip_client = grpc_client(&server)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let status = gzip_client.export(oversized.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let status = client.export(oversized).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    // Everything acknowledged before is intact, and weft still takes data.
    client
        .export(logs_request("size", vec![record("after", vec![])]))
        .await
        .unwrap();
    let logs = server.wait_for_logs("service:size", 2).await;
    assert_eq!(logs.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_answers_503_and_unavailable_with_retry_hints() {
    // A budget of one unit: a request in flight leaves no room for another.
    let server =
        TestServer::start_with(tempfile::tempdir().unwrap(), |c| c.inflight_bytes = 1).await;
    let started = Instant::now();
    let mut acked: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut saw_http_503 = false;
    let mut saw_grpc_unavailable = false;
    let mut round = 0;
    while !(saw_http_503 && saw_grpc_unavailable) {
        assert!(started.elapsed() < DEADLINE, "weft never refused a request");
        round += 1;
        let mut tasks = Vec::new();
        for i in 0..16 {
            let body = format!("burst{round}x{i}");
            let request = logs_request("burst", vec![record(&body, vec![])]);
            let http_url = server.url("/v1/logs");
            let grpc_url = format!("http://{}", server.grpc);
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    let response = reqwest::Client::new()
                        .post(http_url)
                        .header("content-type", "application/x-protobuf")
                        .body(request.encode_to_vec())
                        .send()
                        .await
                        .unwrap();
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    (
                        body,
                        status == 200,
                        status == 503 && retry_after.as_deref() == Some("1"),
                        false,
                    )
                } else {
                    let mut client = LogsServiceClient::connect(grpc_url).await.unwrap();
                    match client.export(request).await {
                        Ok(_) => (body, true, false, false),
                        Err(status) => {
                            let hinted = status.code() == tonic::Code::Unavailable
                                && status
                                    .get_details_retry_info()
                                    .is_some_and(|r| r.retry_delay.is_some());
                            (body, false, false, hinted)
                        }
                    }
                }
            }));
        }
        for task in tasks {
            let (body, ok, http_refused, grpc_refused) = task.await.unwrap();
            if ok {
                acked.push(body);
            } else {
                assert!(
                    http_refused || grpc_refused,
                    "{body} failed without a retry hint"
                );
                saw_http_503 |= http_refused;
                saw_grpc_unavailable |= grpc_refused;
                refused.push(body);
            }
        }
    }
    // Everything acknowledged is stored; nothing refused is.
    let logs = server.wait_for_logs("service:burst", acked.len()).await;
    let stored: std::collections::HashSet<&str> =
        logs.iter().map(|l| l["body"].as_str().unwrap()).collect();
    assert_eq!(stored.len(), acked.len());
    for body in &acked {
        assert!(
            stored.contains(body.as_str()),
            "{body} acked but not stored"
        );
    }
    for body in &refused {
        assert!(!stored.contains(body.as_str()), "{body} refused but stored");
    }
    assert!(server.metric("weft_requests_refused_total").await >= 2.0);
    server.stop().await;
}

/// The questions a search node asks an ingest node are bounded and checked like any other
/// request: a range whose start is past its end, too many trace IDs, a bad trace ID.
#[tokio::test]
async fn internal_questions_with_odd_ranges_or_too_many_ids_are_answered_not_panicked_on() {
    let server = TestServer::start().await;
    // A partition to list (an empty store lists nothing, whatever the range).
    grpc_client(&server)
        .await
        .export(logs_request("odd", vec![record("one record", vec![])]))
        .await
        .unwrap();
    server.wait_for_logs("service:odd", 1).await;
    let hour = 3_600_000_000_000u64;
    let ask = |path: &'static str, body: serde_json::Value| {
        let server = &server;
        async move {
            let response = server
                .client
                .post(server.url(path))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    // Start hours after end: nothing is in such a range.
    for kind in ["services", "events"] {
        let (status, body) = ask(
            "/api/v1/internal/aggregate",
            serde_json::json!({"kind": kind, "start_unix_nano": 10 * hour, "end_unix_nano": hour}),
        )
        .await;
        assert_eq!(status, 200, "{kind}: {body}");
    }
    let (status, body) = ask(
        "/api/v1/internal/trace-candidates",
        serde_json::json!({"query": null, "start_unix_nano": 10 * hour, "end_unix_nano": hour}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = (0..101).map(|i| format!("{:032x}", i + 1)).collect();
    let (status, body) = ask(
        "/api/v1/internal/trace-parts",
        serde_json::json!({"trace_ids": ids, "start_unix_nano": 0, "end_unix_nano": hour}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 100 trace IDs"), "{body}");
    let (status, body) = ask(
        "/api/v1/internal/trace-parts",
        serde_json::json!({"trace_ids": ["xyz"], "start_unix_nano": 0, "end_unix_nano": hour}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("32 hex characters"), "{body}");
    // Another node's question is bounded as a user's is.
    let (status, body) = ask(
        "/api/v1/internal/aggregate",
        serde_json::json!({"kind": "heatmap", "q": "", "start_unix_nano": 0,
            "end_unix_nano": hour, "buckets": 1_000_000}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("buckets must be at most 500"), "{body}");
    let (status, body) = ask(
        "/api/v1/internal/aggregate",
        serde_json::json!({"kind": "value_counts", "signal": "logs", "q": "",
            "start_unix_nano": 0, "end_unix_nano": hour, "fields": [{"Attr": "k".repeat(300)}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("needs a key of 1 to 256 characters"),
        "{body}"
    );
    let logs = |limit: u64, cursor: &str| {
        serde_json::json!({"query": null, "start_unix_nano": 0, "end_unix_nano": u64::MAX,
            "limit": limit, "cursor": cursor})
    };
    let (status, body) = ask("/api/v1/internal/logs", logs(0, "")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("limit must be from 1"), "{body}");
    let (status, body) = ask("/api/v1/internal/logs", logs(10, "not-a-cursor")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cursor"), "{body}");
    let (status, body) = ask("/api/v1/internal/logs", logs(10, "")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"covers\""), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_400_with_position() {
    let server = TestServer::start().await;
    for (path, params, position) in [
        ("/api/v1/logs", vec![("q", "service:a AND (b")], Some(16)),
        ("/api/v1/logs", vec![("q", "colour:red")], Some(0)),
        ("/api/v1/logs", vec![("q", "severity>=LOUD")], Some(0)),
        ("/api/v1/logs", vec![("cursor", "nonsense")], None),
        ("/api/v1/logs", vec![("limit", "0")], None),
        ("/api/v1/logs", vec![("start", "yesterday")], None),
        ("/api/v1/logs/histogram", vec![("q", "\"open")], Some(0)),
        ("/api/v1/logs/tail", vec![("q", "colour:red")], Some(0)),
        ("/api/v1/traces", vec![("min_duration", "fast")], None),
        ("/api/v1/traces", vec![("q", "severity:ERROR")], Some(0)),
        ("/api/v1/traces", vec![("status", "bad")], None),
    ] {
        let (status, body) = server.get(path, &params).await;
        assert_eq!(status, 400, "{path} {params:?}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        assert_eq!(
            body["position"].as_u64().map(|p| p as usize),
            position,
            "{path} {params:?}: {body}"
        );
        // A query error comes with the syntax of the signal searched, fields included.
        if position.is_some() {
            let help = body["help"].as_str().unwrap_or_default();
            let field = if path == "/api/v1/traces" {
                "parent_span_id"
            } else {
                "severity"
            };
            assert!(
                help.starts_with("syntax:") && help.contains(field),
                "{path}: {body}"
            );
        }
    }
    server.stop().await;
}
