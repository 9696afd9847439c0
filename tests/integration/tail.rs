//! Live tail: new matching records streamed as they are acknowledged, and a reader that falls
//! behind told what it missed while ingest goes on. (Kept apart from `query_api`, whose tests
//! run again against each object store: a tail reads no storage.)

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bad_input::{logs_request, record};
use crate::common::{DEADLINE, TestServer};

/// `GET /api/v1/logs/tail?q=`: the answer, its events to come.
async fn open_tail(server: &TestServer, q: &str) -> reqwest::Response {
    server
        .client
        .get(server.url("/api/v1/logs/tail"))
        .query(&[("q", q)])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_streams_new_matching_records() {
    let server = TestServer::start().await;
    let response = open_tail(&server, "service:tailing severity>=WARN").await;
    assert_eq!(response.status(), 200);
    let mut stream = response;
    let mut buffer = String::new();
    let mut events: Vec<(String, Value)> = Vec::new();
    let started = Instant::now();
    let mut sent = false;
    while events.iter().filter(|(e, _)| e == "log").count() < 2 {
        assert!(started.elapsed() < DEADLINE, "tail delivered {events:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await;
        if let Ok(Ok(Some(bytes))) = chunk {
            buffer.push_str(&String::from_utf8_lossy(&bytes));
        }
        events.extend(take_events(&mut buffer, true));
        if !sent && events.iter().any(|(e, _)| e == "ready") {
            let mut info = record("not severe enough", vec![]);
            info.severity_number = 9;
            let mut warn = record("disk nearly full", vec![]);
            warn.severity_number = 13;
            let mut error = record("disk full", vec![]);
            error.severity_number = 17;
            server.export_logs("tailing", vec![info, warn]).await;
            server
                .export_logs("other", vec![record("other service", vec![])])
                .await;
            server.export_logs("tailing", vec![error]).await;
            sent = true;
        }
    }
    let logs: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e == "log")
        .map(|(_, v)| v["body"].as_str().unwrap())
        .collect();
    assert_eq!(logs, vec!["disk nearly full", "disk full"]);
    assert!(events.iter().all(|(e, _)| e != "missed"));
    server.stop().await;
}

/// Takes every complete Server-Sent Event out of `buffer`, in one pass, as (name, data).
/// `log` events' data is parsed only when `parse_logs`: a reader counting tens of thousands of
/// records in a debug build would otherwise be the slow part of a test.
fn take_events(buffer: &mut String, parse_logs: bool) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut consumed = 0;
    while let Some(end) = buffer[consumed..].find("\n\n") {
        let raw = &buffer[consumed..consumed + end];
        consumed += end + 2;
        let mut name = String::from("message");
        let mut data = String::new();
        for line in raw.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
        if !data.is_empty() {
            let value = if name == "log" && !parse_logs {
                Value::Null
            } else {
                serde_json::from_str(&data).unwrap()
            };
            events.push((name, value));
        }
    }
    buffer.drain(..consumed);
    events
}

/// Reads SSE events from a response until `done` says enough.
async fn read_events(
    response: &mut reqwest::Response,
    buffer: &mut String,
    mut done: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let started = Instant::now();
    while !done(&events) {
        assert!(
            started.elapsed() < DEADLINE,
            "tail delivered {} events",
            events.len()
        );
        if let Ok(Ok(Some(bytes))) =
            tokio::time::timeout(Duration::from_secs(5), response.chunk()).await
        {
            buffer.push_str(&String::from_utf8_lossy(&bytes));
        }
        events.extend(take_events(buffer, false));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tail_reader_is_told_what_it_missed_and_ingest_goes_on() {
    let server = TestServer::start().await;
    let mut response = open_tail(&server, "service:flood").await;
    let mut buffer = String::new();
    read_events(&mut response, &mut buffer, |e| {
        e.iter().any(|(n, _)| n == "ready")
    })
    .await;
    // The reader stops reading while far more than its buffer arrives; ingest must not wait.
    let mut client = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    // Far more than the 256-batch feed plus what socket buffers hold for a reader that is not reading.
    let (batches, per_batch) = (800, 50);
    let body = "x".repeat(400);
    for b in 0..batches {
        let records = (0..per_batch)
            .map(|i| record(&format!("{body} {b} {i}"), vec![]))
            .collect();
        client.export(logs_request("flood", records)).await.unwrap();
    }
    let sent = (batches * per_batch) as u64;
    let mut received = 0u64;
    let mut missed = 0u64;
    let events = read_events(&mut response, &mut buffer, |events| {
        received = events.iter().filter(|(n, _)| n == "log").count() as u64;
        missed = events
            .iter()
            .filter(|(n, _)| n == "missed")
            .map(|(_, v)| v["missed"].as_u64().unwrap())
            .sum();
        received + missed >= sent
    })
    .await;
    assert!(
        missed > 0,
        "the reader fell behind but was not told ({received} received)"
    );
    assert_eq!(
        received + missed,
        sent,
        "every record is either delivered or counted as missed"
    );
    assert!(events.iter().all(|(n, _)| n == "log" || n == "missed"));
    server.stop().await;
}

/// A pattern is a tail filter too: only the records whose body fits the template arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_keeps_the_records_of_a_pattern() {
    let server = TestServer::start().await;
    let mut stream = open_tail(
        &server,
        "service:tailing pattern:\"order <*> shipped to <*>\"",
    )
    .await;
    assert_eq!(stream.status(), 200);
    let mut buffer = String::new();
    read_events(&mut stream, &mut buffer, |events| {
        events.iter().any(|(e, _)| e == "ready")
    })
    .await;
    let bodies = [
        "order 17 shipped to 10.0.0.1",
        "order 17 cancelled by 10.0.0.1",
        "order 18 shipped to 10.0.0.2 today",
        "order 19 shipped to 10.0.0.3",
    ];
    let records = bodies.iter().map(|b| record(b, vec![])).collect();
    server.export_logs("tailing", records).await;
    let mut logs = Vec::new();
    let started = Instant::now();
    while logs.len() < 2 {
        assert!(started.elapsed() < DEADLINE, "tail delivered {logs:?}");
        if let Ok(Ok(Some(bytes))) =
            tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await
        {
            buffer.push_str(&String::from_utf8_lossy(&bytes));
        }
        logs.extend(
            take_events(&mut buffer, true)
                .into_iter()
                .filter(|(e, _)| e == "log")
                .map(|(_, v)| v["body"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(
        logs,
        [
            "order 17 shipped to 10.0.0.1",
            "order 19 shipped to 10.0.0.3"
        ]
    );
    server.stop().await;
}
