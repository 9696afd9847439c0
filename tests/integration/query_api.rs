//! The query surface against a realistic data set: every answer checked against what was sent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_index::aggregate::BANDS;

use crate::bad_input::{logs_request, record};
use crate::common::{
    DEADLINE, StorageUnderTest, TestServer, bodies, storage_under_test, use_object_storage,
    wait_until_remote,
};
use crate::dataset::Dataset;

/// A server holding the data set, everything searchable. With `STORAGE_UNDER_TEST` set, every
/// partition is then sealed into object storage and its local copy deleted, so each answer
/// comes from splits fetched back from there.
pub async fn loaded() -> (TestServer, Dataset) {
    let storage = storage_under_test();
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config(&dir);
    let postgres = use_object_storage(&mut config, storage).await;
    let mut server = TestServer::start_with(dir, |c| *c = config).await;
    server.postgres = postgres;
    let data = Dataset::build();
    data.send(&server).await;
    let range = data.range();
    let started = Instant::now();
    loop {
        let (_, body) = server
            .get(
                "/api/v1/logs",
                &[
                    ("limit", "1000"),
                    ("start", &range[0].1),
                    ("end", &range[1].1),
                ],
            )
            .await;
        let spans_ready = server
            .get(
                &format!("/api/v1/traces/{}", hex::encode(&data.rootless_trace)),
                &[],
            )
            .await
            .0
            == 200;
        if body["logs"].as_array().unwrap().len() == data.logs.len() && spans_ready {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "data set not searchable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if storage != StorageUnderTest::Local {
        wait_until_remote(&server, data.partitions()).await;
    }
    (server, data)
}

fn q<'a>(
    data: &'a [(&'static str, String); 2],
    extra: &'a [(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut params: Vec<(&str, &str)> = data.iter().map(|(k, v)| (*k, v.as_str())).collect();
    params.extend_from_slice(extra);
    params
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_search_filters_and_orders() {
    let (server, data) = loaded().await;
    let range = data.range();
    type Expected = Box<dyn Fn(&crate::dataset::SentLog) -> bool>;
    let cases: Vec<(&str, Expected)> = vec![
        ("severity>=ERROR", Box::new(|l| l.severity >= 17)),
        (
            "severity:WARN",
            Box::new(|l| (13..=16).contains(&l.severity)),
        ),
        ("severity<INFO", Box::new(|l| l.severity < 9)),
        (
            "service:pay* event:PaymentDeclined",
            Box::new(|l| l.service == "payments" && l.event == "PaymentDeclined"),
        ),
        (
            "\"card declined\" OR stock",
            Box::new(|l| l.body.contains("card declined") || l.body.contains("stock")),
        ),
        (
            "STOCK -low",
            Box::new(|l| l.body.contains("stock") && !l.body.contains("low")),
        ),
        (
            "(service:checkout OR service:inventory) AND NOT severity:TRACE",
            Box::new(|l| matches!(l.service, "checkout" | "inventory") && l.severity != 1),
        ),
    ];
    for (query, expected) in cases {
        let (status, body) = server
            .get(
                "/api/v1/logs",
                &q(&range, &[("q", query), ("limit", "1000")]),
            )
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        let mut want: Vec<&crate::dataset::SentLog> =
            data.logs.iter().filter(|l| expected(l)).collect();
        want.sort_by_key(|l| std::cmp::Reverse(l.time));
        let got = bodies(&body["logs"]);
        let want_bodies: Vec<String> = want.iter().map(|l| l.body.clone()).collect();
        assert!(
            !want_bodies.is_empty(),
            "{query} matches nothing in the data set"
        );
        assert_eq!(got, want_bodies, "{query}");
    }
    // A trace's logs by ID, and the trace ID found from a log line.
    let cross = hex::encode(&data.cross_hour_trace);
    let (_, body) = server
        .get(
            "/api/v1/logs",
            &q(&range, &[("q", &format!("trace_id:{cross}"))]),
        )
        .await;
    assert_eq!(body["logs"].as_array().unwrap().len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_stable_while_data_arrives() {
    let (server, data) = loaded().await;
    let range = data.range();
    // Records keep arriving while the client pages (stamped now, so newer than the range).
    let grpc = server.grpc;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut client = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(format!("http://{grpc}")).await.unwrap();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client
                    .export(logs_request(
                        "checkout",
                        vec![record(&format!("arriving {n}"), vec![])],
                    ))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut params = vec![
            ("q", "service:checkout"),
            ("limit", "7"),
            ("start", range[0].1.as_str()),
        ];
        if !cursor.is_empty() {
            params.push(("cursor", cursor.as_str()));
        }
        let (status, body) = server.get("/api/v1/logs", &params).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(bodies(&body["logs"]));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
        assert!(seen.len() < 10_000, "paging does not end");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let arrived = writer.await.unwrap();
    assert!(arrived > 0);
    let from_data: Vec<String> = seen
        .iter()
        .filter(|b| !b.starts_with("arriving"))
        .cloned()
        .collect();
    let mut want: Vec<&crate::dataset::SentLog> = data
        .logs
        .iter()
        .filter(|l| l.service == "checkout")
        .collect();
    want.sort_by_key(|l| std::cmp::Reverse(l.time));
    let want: Vec<String> = want.iter().map(|l| l.body.clone()).collect();
    assert_eq!(
        from_data, want,
        "pages repeated, skipped or reordered records"
    );
    let arriving: Vec<&String> = seen.iter().filter(|b| b.starts_with("arriving")).collect();
    let unique: BTreeSet<&String> = arriving.iter().copied().collect();
    assert_eq!(
        unique.len(),
        arriving.len(),
        "an arriving record appeared twice"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_counts_by_band() {
    let (server, data) = loaded().await;
    let range = data.range();
    let (status, body) = server
        .get("/api/v1/logs/histogram", &q(&range, &[("buckets", "24")]))
        .await;
    assert_eq!(status, 200, "{body}");
    let buckets = body["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 24);
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for b in buckets {
        for (band, n) in b["counts"].as_object().unwrap() {
            *totals.entry(band.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    let mut want: BTreeMap<String, u64> = BANDS.iter().map(|b| (b.to_string(), 0)).collect();
    for l in &data.logs {
        let band = BANDS[((l.severity - 1) / 4 + 1) as usize];
        *want.get_mut(band).unwrap() += 1;
    }
    assert_eq!(totals, want);
    // Filtered, and placed in the right bucket: the boundary is the middle of the range.
    let (_, body) = server
        .get(
            "/api/v1/logs/histogram",
            &q(&range, &[("buckets", "2"), ("q", "event:PaymentDeclined")]),
        )
        .await;
    let before = data
        .logs
        .iter()
        .filter(|l| l.event == "PaymentDeclined" && l.time < data.boundary)
        .count();
    assert_eq!(body["buckets"][0]["counts"]["error"], before);
    assert_eq!(body["buckets"][1]["counts"]["error"], 4 - before);
    assert_eq!(body["buckets"][1]["total"], 4 - before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_by_id_cross_hours_and_survive_a_missing_root() {
    let (server, data) = loaded().await;
    let cross = hex::encode(&data.cross_hour_trace);
    let (status, body) = server.get(&format!("/api/v1/traces/{cross}"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["spans"].as_array().unwrap().len(), 2);
    let logs = body["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 3);
    let times: Vec<u64> = logs
        .iter()
        .map(|l| l["time_unix_nano"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "logs are time-ordered"
    );
    assert!(times[0] < data.boundary && times[2] > data.boundary);
    assert_eq!(
        logs[2]["span_id"], "",
        "a log without span sits at the root"
    );
    assert_eq!(body["summary"]["root_name"], "GET /slow");
    assert_eq!(body["summary"]["duration_ns"], "4000000000");
    assert_eq!(
        body["summary"]["services"],
        serde_json::json!(["checkout", "frontend"])
    );

    let rootless = hex::encode(&data.rootless_trace);
    let (status, body) = server.get(&format!("/api/v1/traces/{rootless}"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["summary"]["incomplete"], true);
    assert_eq!(body["summary"]["root_name"], "refund");

    let (status, _) = server
        .get(&format!("/api/v1/traces/{}", "ab".repeat(16)), &[])
        .await;
    assert_eq!(status, 404);
    let (status, body) = server.get("/api/v1/traces/xyz", &[]).await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_search_filters_on_whole_trace_duration() {
    let (server, data) = loaded().await;
    let range = data.range();
    let durations = data.trace_durations();
    let search = |extra: Vec<(&'static str, String)>| {
        let mut params: Vec<(String, String)> = range
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        params.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        params.push(("limit".into(), "100".into()));
        params
    };
    let ids = |body: &Value| -> BTreeSet<String> {
        body["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trace_id"].as_str().unwrap().to_string())
            .collect()
    };
    let get = |params: Vec<(String, String)>| {
        let server = &server;
        async move {
            let p: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            server.get("/api/v1/traces", &p).await
        }
    };

    // Errors in payments: exactly the traces with a failed charge.
    let (status, body) = get(search(vec![
        ("service", "payments".into()),
        ("status", "error".into()),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    let want: BTreeSet<String> = data
        .spans
        .iter()
        .filter(|s| s.error)
        .map(|s| hex::encode(&s.trace_id))
        .collect();
    assert_eq!(ids(&body), want);
    for t in body["traces"].as_array().unwrap() {
        assert_eq!(t["error_count"], 1);
        assert_eq!(t["span_count"], 4);
        assert_eq!(t["log_count"], 4);
        assert_eq!(t["root_name"], "GET /checkout");
    }

    // Whole-trace duration: only roots last 250 ms or more, no single child span does.
    let (_, body) = get(search(vec![
        ("service", "inventory".into()),
        ("min_duration", "250ms".into()),
    ]))
    .await;
    let want: BTreeSet<String> = durations
        .iter()
        .filter(|(id, d)| **d >= 250_000_000 && id.starts_with("01"))
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(ids(&body), want);
    let (_, body) = get(search(vec![
        ("operation", "charge".into()),
        ("max_duration", "150ms".into()),
    ]))
    .await;
    let want: BTreeSet<String> = durations
        .iter()
        .filter(|(id, d)| **d <= 150_000_000 && id.starts_with("01"))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids(&body), want);

    // A trace missing its root is found and marked.
    let (_, body) = get(search(vec![("operation", "restock".into())])).await;
    assert_eq!(body["traces"][0]["incomplete"], true);
    assert_eq!(
        body["traces"][0]["trace_id"],
        hex::encode(&data.rootless_trace)
    );

    // Limits say so.
    let (_, body) = server
        .get(
            "/api/v1/traces",
            &[
                ("start", range[0].1.as_str()),
                ("end", range[1].1.as_str()),
                ("limit", "3"),
            ],
        )
        .await;
    assert_eq!(body["traces"].as_array().unwrap().len(), 3);
    assert_eq!(body["limited"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_and_event_catalogs() {
    let (server, data) = loaded().await;
    let (_, body) = server.get("/api/v1/services", &[]).await;
    let services = body["services"].as_array().unwrap();
    for name in ["frontend", "checkout", "payments", "inventory"] {
        let entry = services
            .iter()
            .find(|s| s["service"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let spans = data.spans.iter().filter(|s| s.service == name).count();
        let logs = data.logs.iter().filter(|l| l.service == name).count();
        assert_eq!(entry["span_count"], spans, "{name}");
        assert_eq!(entry["log_count"], logs, "{name}");
    }
    let (_, body) = server.get("/api/v1/events", &[]).await;
    let events = body["events"].as_array().unwrap();
    let declined = events
        .iter()
        .find(|e| e["event"] == "PaymentDeclined")
        .unwrap();
    assert_eq!(declined["count"], 4);
    assert_eq!(declined["services"], serde_json::json!(["payments"]));
    assert_eq!(declined["severities"], serde_json::json!(["error"]));
    let heartbeat = events.iter().find(|e| e["event"] == "Heartbeat").unwrap();
    assert_eq!(heartbeat["count"], 6);
    assert_eq!(heartbeat["severities"].as_array().unwrap().len(), 6);
    let counts: Vec<u64> = events
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "most frequent first"
    );
    let (_, body) = server
        .get("/api/v1/events", &[("service", "inventory")])
        .await;
    let names: BTreeSet<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["StockChecked", "StockLow"]));
    server.stop().await;
}
