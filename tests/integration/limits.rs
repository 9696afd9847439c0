//! Every dimension a client controls is bounded: a request over a bound gets a clear refusal
//! that names the bound, and weft keeps serving everyone else.

use weft::grpc::proto::query_service_client::QueryServiceClient;
use weft::grpc::proto::{SearchLogsRequest, TailRequest};

use crate::bad_input::{logs_request, record};
use crate::common::TestServer;

/// Regression: one GET with 10,000 nested parentheses overflowed a runtime thread's stack and
/// aborted weft. Over HTTP, gRPC and the tail, it is now a 400 / INVALID_ARGUMENT that says
/// which limit it broke, and weft goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_queries_are_refused_everywhere() {
    let server = TestServer::start().await;
    let nested = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
    let deep_but_short = format!("{}a{}", "(".repeat(1_000), ")".repeat(1_000));
    for q in [&nested, &deep_but_short] {
        for path in ["/api/v1/logs", "/api/v1/logs/histogram", "/api/v1/traces"] {
            let (status, body) = server.get(path, &[("q", q)]).await;
            assert_eq!(status, 400, "{path}: {body}");
            let error = body["error"].as_str().unwrap();
            assert!(
                error.contains("limit"),
                "{path}: the answer names the limit: {error}"
            );
        }
        let response = server
            .client
            .get(server.url("/api/v1/logs/tail"))
            .query(&[("q", q)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
    }
    let (_, body) = server.get("/api/v1/logs", &[("q", &deep_but_short)]).await;
    assert!(
        body["error"].as_str().unwrap().contains("deeper than 32"),
        "{body}"
    );

    let mut client = QueryServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    for q in [&nested, &deep_but_short] {
        let status = client
            .search_logs(SearchLogsRequest {
                query: q.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let status = client
            .tail(TailRequest { query: q.clone() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }

    // Still alive and serving.
    let mut ingest = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    ingest
        .export(logs_request("survivor", vec![record("still here", vec![])]))
        .await
        .unwrap();
    server.wait_for_logs("service:survivor", 1).await;
    server.stop().await;
}

/// Regression: one OTLP/HTTP JSON request of 300 records stamped an hour apart made 300 hour
/// partitions, 704 threads and 1.96 GB RSS. Records outside [now - retention, now + skew] are
/// rejected one by one with the reason, and the partitions that remain are written with at
/// most `max_open_partitions` writers open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spread_over_hours_stay_within_the_window_and_the_writer_cap() {
    const HOUR: u64 = 3_600_000_000_000;
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.retention = std::time::Duration::from_secs(24 * 3600);
        c.max_open_partitions = 3;
    })
    .await;
    let now = crate::common::now_nanos();
    let records: Vec<serde_json::Value> = (0..300u64)
        .map(|h| {
            serde_json::json!({
                // Half-hour offsets keep every record clear of the window's edges.
                "timeUnixNano": (now + 3 * HOUR / 2 - h * HOUR).to_string(),
                "body": {"stringValue": format!("spread h{h}")},
            })
        })
        .collect();
    let body = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "spread"}}]},
        "scopeLogs": [{"logRecords": records}],
    }]});
    let response = server
        .client
        .post(server.url("/v1/logs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    // Half an hour ahead (h = 1) back to 23.5 hours old (h = 25) are kept; the rest are
    // rejected.
    let kept = 25;
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"],
        (300 - kept).to_string(),
        "{answer}"
    );
    let message = answer["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("ahead of weft's clock"), "{message}");

    let (status, found) = server
        .get(
            "/api/v1/logs",
            &[
                ("q", "service:spread"),
                ("start", &(now - 30 * HOUR).to_string()),
                ("end", &(now + 3 * HOUR).to_string()),
                ("limit", "1000"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    let mut found = found["logs"].as_array().unwrap().len();
    while found < kept {
        assert!(
            started.elapsed() < crate::common::DEADLINE,
            "{found} of {kept}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let (_, body) = server
            .get(
                "/api/v1/logs",
                &[
                    ("q", "service:spread"),
                    ("start", &(now - 30 * HOUR).to_string()),
                    ("end", &(now + 3 * HOUR).to_string()),
                    ("limit", "1000"),
                ],
            )
            .await;
        found = body["logs"].as_array().unwrap().len();
    }
    assert_eq!(found, kept);
    assert!(server.metric("weft_index_open_writers").await <= 3.0);
    let logs_dir = server.dir.path().join("index").join("logs");
    assert_eq!(std::fs::read_dir(logs_dir).unwrap().count(), kept);
    server.stop().await;
}
