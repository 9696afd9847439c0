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

    let (start, end) = ((now - 30 * HOUR).to_string(), (now + 3 * HOUR).to_string());
    let query = [
        ("q", "service:spread"),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("limit", "1000"),
    ];
    let started = std::time::Instant::now();
    let found = loop {
        let (status, body) = server.get("/api/v1/logs", &query).await;
        assert_eq!(status, 200, "{body}");
        let found = body["logs"].as_array().unwrap().len();
        if found >= kept {
            break found;
        }
        assert!(
            started.elapsed() < crate::common::DEADLINE,
            "{found} of {kept}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(found, kept);
    assert!(server.metric("weft_index_open_writers").await <= 3.0);
    let logs_dir = server.dir.path().join("index").join("logs");
    assert_eq!(std::fs::read_dir(logs_dir).unwrap().count(), kept);
    server.stop().await;
}

/// Writes an HTTP/1.1 export whose head declares `declared` bytes but sends only a few, then
/// reads the answer: only an answer given before the body is read can arrive.
async fn export_without_finishing_the_body(addr: std::net::SocketAddr, declared: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: weft\r\ncontent-type: application/x-protobuf\r\ncontent-length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0x0a, 0x00]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(crate::common::DEADLINE, stream.read(&mut answer))
        .await
        .expect("an answer before the body was sent")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).to_string()
}

/// Starts a server whose indexer stalls, so the first export's reservation stays held, and
/// sends that export.
async fn server_holding_one_export(
    tweak: impl FnOnce(&mut weft::config::Config),
) -> (TestServer, std::sync::Arc<weft_index::faults::Faults>) {
    use weft_index::faults::{Fault, Faults};
    let faults = Faults::none();
    let server =
        TestServer::start_with_faults(tempfile::tempdir().unwrap(), tweak, Some(faults.clone()))
            .await;
    faults.set(Fault::IndexerStall, true);
    let mut ingest = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    let records = (0..2000)
        .map(|i| record(&format!("held {i} {}", "x".repeat(500)), vec![]))
        .collect();
    ingest
        .export(logs_request("held", records))
        .await
        .expect("the first export is admitted and acknowledged");
    (server, faults)
}

async fn assert_refused_before_reading_and_recovers(
    server: TestServer,
    faults: std::sync::Arc<weft_index::faults::Faults>,
) {
    use tonic_types::StatusExt;
    let answer = export_without_finishing_the_body(server.http, 10_000_000).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after"),
        "{answer}"
    );
    let mut ingest = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    let status = ingest
        .export(logs_request("second", vec![record("second", vec![])]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.get_details_retry_info().is_some());
    assert!(server.metric("weft_requests_refused_total").await >= 2.0);
    // The held export is indexed once the indexer moves: its place is free again.
    faults.set(weft_index::faults::Fault::IndexerStall, false);
    server.wait_for_logs("service:held", 1000).await;
    let started = std::time::Instant::now();
    loop {
        match ingest
            .export(logs_request("second", vec![record("second", vec![])]))
            .await
        {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable);
                assert!(started.elapsed() < crate::common::DEADLINE, "{status:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    server.wait_for_logs("service:second", 1).await;
    server.stop().await;
}

/// Regression: the memory budget was taken after the body had been read, inflated and
/// decoded. Now a request that the budget cannot cover is refused before its body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_refuses_before_reading_the_body() {
    let (server, faults) = server_holding_one_export(|c| c.inflight_bytes = 1 << 20).await;
    assert_refused_before_reading_and_recovers(server, faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exports_are_bounded() {
    let (server, faults) = server_holding_one_export(|c| c.max_concurrent_exports = 1).await;
    assert_refused_before_reading_and_recovers(server, faults).await;
}

/// Regression: live tail had no cap on subscribers and matched every row for each of them on
/// the async runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tails_are_capped() {
    use tonic_types::StatusExt;
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.max_tail_subscribers = 2;
    })
    .await;
    let open = |q: &'static str| {
        server
            .client
            .get(server.url("/api/v1/logs/tail"))
            .query(&[("q", q)])
            .send()
    };
    let first = open("a").await.unwrap();
    let second = open("b").await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open("c").await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let body: serde_json::Value = third.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("max_tail_subscribers"),
        "{body}"
    );
    let mut client = QueryServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let status = client
        .tail(TailRequest { query: "d".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.get_details_retry_info().is_some());
    // A reader that leaves frees its place.
    drop(first);
    let started = std::time::Instant::now();
    loop {
        let again = open("e").await.unwrap();
        if again.status() == 200 {
            break;
        }
        assert_eq!(again.status(), 429);
        assert!(started.elapsed() < crate::common::DEADLINE);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(second);
    server.stop().await;
}

/// A client that trickles its body does not hold its place for ever: past `body_read_timeout`
/// it is refused (retryably) and the place is free for others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_is_cut_off() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.body_read_timeout = std::time::Duration::from_millis(300);
        c.max_concurrent_exports = 1;
    })
    .await;
    let answer = export_without_finishing_the_body(server.http, 1000).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("body_read_timeout"), "{answer}");
    let mut ingest = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    ingest
        .export(logs_request(
            "after",
            vec![record("after a slow one", vec![])],
        ))
        .await
        .expect("the slow request's place was freed");
    server.stop().await;
}
