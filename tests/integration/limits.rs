//! Every dimension a client controls is bounded: a request over a bound gets a clear refusal
//! that names the bound, and weft keeps serving everyone else.

use weft::grpc::proto::query_service_client::QueryServiceClient;
use weft::grpc::proto::{SearchLogsRequest, TailRequest};

use crate::bad_input::{logs_request, record};
use crate::common::TestServer;

/// `weft.v1.QueryService/SearchLogs` of `q`.
async fn search_logs_over_grpc(
    server: &TestServer,
    q: &str,
) -> Result<tonic::Response<weft::grpc::proto::SearchLogsResponse>, tonic::Status> {
    QueryServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap()
        .search_logs(SearchLogsRequest {
            query: q.to_string(),
            ..Default::default()
        })
        .await
}

/// Asks `q` of every query path (three HTTP searches, the tail, gRPC's search and tail) and
/// checks each refuses it as bad input whose message contains `names`.
async fn refused_everywhere(server: &TestServer, q: &str, names: &str) {
    for path in ["/api/v1/logs", "/api/v1/logs/histogram", "/api/v1/traces"] {
        let (status, body) = server.get(path, &[("q", q)]).await;
        assert_eq!(status, 400, "{path}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(names), "{path}: {error}");
    }
    let response = server
        .client
        .get(server.url("/api/v1/logs/tail"))
        .query(&[("q", q)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains(names),
        "tail: {body}"
    );

    let searched = search_logs_over_grpc(server, q).await.unwrap_err();
    let tailed = QueryServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap()
        .tail(TailRequest {
            query: q.to_string(),
        })
        .await
        .unwrap_err();
    for status in [searched, tailed] {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(names), "{status:?}");
    }
}

/// weft still takes data after a hostile query.
async fn still_serving(server: &TestServer) {
    let mut ingest = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    ingest
        .export(logs_request("survivor", vec![record("still here", vec![])]))
        .await
        .unwrap();
    server.wait_for_logs("service:survivor", 1).await;
}

/// A query over 8192 characters is refused for its length on every path, before it is
/// parsed; one of exactly 8192 is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_longer_than_the_limit_are_refused_everywhere() {
    let server = TestServer::start().await;
    let too_long = "a ".repeat(4096) + "b";
    assert_eq!(too_long.chars().count(), 8193);
    refused_everywhere(&server, &too_long, "the limit is 8192").await;
    let at_limit = "a ".repeat(4096);
    assert_eq!(at_limit.chars().count(), 8192);
    let (status, body) = server.get("/api/v1/logs", &[("q", &at_limit)]).await;
    assert_eq!(status, 200, "{body}");
    still_serving(&server).await;
    server.stop().await;
}

/// Regression: one GET with 10,000 nested parentheses overflowed a runtime thread's stack and
/// aborted weft. Nesting is bounded on its own (here by queries short enough to pass the
/// length limit): over 32 levels is a 400 / INVALID_ARGUMENT that says so on every path, 32
/// levels are answered, and weft goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_queries_are_refused_everywhere() {
    let server = TestServer::start().await;
    let nested = |levels: usize| format!("{}a{}", "(".repeat(levels), ")".repeat(levels));
    let deepest_short = nested(4095);
    assert!(deepest_short.chars().count() <= weft_index::query::MAX_QUERY_CHARS);
    for q in [deepest_short, nested(33), format!("{}a", "NOT ".repeat(33))] {
        refused_everywhere(&server, &q, "deeper than 32").await;
    }
    let (status, body) = server.get("/api/v1/logs", &[("q", &nested(32))]).await;
    assert_eq!(status, 200, "32 levels are answered: {body}");
    still_serving(&server).await;
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
    // The peak is counted as each writer opens, so a batch that went over the cap midway
    // (and closed writers before it returned) shows it; 3 also says the cap was reached.
    assert_eq!(server.metric("weft_index_open_writers_peak").await, 3.0);
    assert!(server.metric("weft_index_open_writers").await <= 3.0);
    let logs_dir = server.dir.path().join("index").join("logs");
    assert_eq!(std::fs::read_dir(logs_dir).unwrap().count(), kept);
    server.stop().await;
}

/// Writes an HTTP/1.1 export whose head declares `declared` bytes but sends only a few, then
/// reads the answer: only an answer given before the body is read can arrive.
async fn export_without_finishing_the_body(addr: std::net::SocketAddr, declared: usize) -> String {
    export_without_finishing_the_body_for(addr, declared, crate::common::DEADLINE)
        .await
        .expect("an answer before the body was sent")
}

/// [`export_without_finishing_the_body`], waiting at most `wait` for an answer: `None` when
/// weft is still reading the body then.
async fn export_without_finishing_the_body_for(
    addr: std::net::SocketAddr,
    declared: usize,
    wait: std::time::Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: weft\r\ncontent-type: application/x-protobuf\r\ncontent-length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0x0a, 0x00]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, stream.read(&mut answer))
        .await
        .ok()?
        .unwrap();
    Some(String::from_utf8_lossy(&answer[..n]).to_string())
}

/// A body declared larger than `max_body_bytes` is refused from the request's head: the answer
/// arrives while the client has sent two bytes of it, so weft read nothing more. (The
/// refusal of a body that turns out too large once read is in `bad_input`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_too_large_is_refused_before_it_is_read() {
    const LIMIT: usize = 1 << 20;
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.max_body_bytes = LIMIT;
    })
    .await;
    let answer = export_without_finishing_the_body(server.http, LIMIT + 1).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("request body of 1048577 bytes") && answer.contains("max_body_bytes"),
        "the answer names the declared size and the bound: {answer}"
    );
    // At the bound itself the head is accepted and weft waits for the body.
    let answer = export_without_finishing_the_body_for(
        server.http,
        LIMIT,
        std::time::Duration::from_millis(500),
    )
    .await;
    assert_eq!(answer, None, "a body of exactly the limit is read");
    server.stop().await;
}

/// Starts a server whose indexer stalls, so the first export's reservation stays held, and
/// sends that export.
async fn server_holding_one_export(
    tweak: impl FnOnce(&mut weft::config::Config),
) -> (TestServer, std::sync::Arc<weft_index::faults::Faults>) {
    use weft_index::faults::Fault;
    let (server, faults) = TestServer::faulty(tweak).await;
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

/// One more query than weft runs at once, while queries stall: those running are answered 503
/// with `Retry-After` at `query_timeout`, the one over the limit 503 for being one too many,
/// and their places stay taken until the work really ends (a query timed out does not free
/// its place while it still runs). Over gRPC, the same refusal is `UNAVAILABLE` with
/// `RetryInfo`. Once queries move again, weft answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_past_the_limit_or_the_timeout_are_refused_retryably() {
    use tonic_types::StatusExt;
    use weft::query::MAX_CONCURRENT_QUERIES;
    use weft_index::faults::Fault;
    let (server, faults) =
        TestServer::faulty(|c| c.query_timeout = std::time::Duration::from_secs(1)).await;
    faults.set(Fault::QueryStall, true);
    let asked = (0..=MAX_CONCURRENT_QUERIES).map(|i| {
        let request = server
            .client
            .get(server.url("/api/v1/logs"))
            .query(&[("q", format!("word{i}"))]);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: serde_json::Value = response.json().await.unwrap();
            (
                status,
                retry_after,
                body["error"].as_str().unwrap_or("").to_string(),
            )
        }
    });
    let answers = futures_util::future::join_all(asked).await;
    for (status, retry_after, error) in &answers {
        assert_eq!(*status, 503, "{error}");
        assert!(retry_after, "503 without Retry-After: {error}");
    }
    let timed_out = answers
        .iter()
        .filter(|(_, _, e)| e.contains("did not finish within 1s"))
        .count();
    let too_many = answers
        .iter()
        .filter(|(_, _, e)| e.contains("too many queries"))
        .count();
    assert_eq!(
        (timed_out, too_many),
        (MAX_CONCURRENT_QUERIES, 1),
        "{answers:#?}"
    );

    // The stalled queries still hold every place: a new one is one too many, on both APIs.
    let (status, body) = server.get("/api/v1/logs", &[("q", "later")]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("too many queries"),
        "{body}"
    );
    let refused = search_logs_over_grpc(&server, "later").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.get_details_retry_info().is_some(), "{refused:?}");

    faults.set(Fault::QueryStall, false);
    let started = std::time::Instant::now();
    loop {
        let (status, body) = server.get("/api/v1/logs", &[("q", "later")]).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(started.elapsed() < crate::common::DEADLINE, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.stop().await;
}
