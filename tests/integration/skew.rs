//! Clock skew in one trace, with known offsets: a service 3 s ahead and one 200 ms behind,
//! a call back from the skewed service into one whose clock is right, and a slow network that
//! is not skew. weft's trace answer keeps the recorded times and says how far to move each
//! span and log; Jaeger's answers carry the moved times and a warning naming the service.
//! Across many traces, the running estimate per service (the catalog, the service map and
//! `/metrics`) finds the same offsets.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::Value;

use crate::common::{TestServer, now_nanos};
use crate::dataset::{kv, resource_spans};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
const TRACE: [u8; 16] = [0x5c; 16];

fn span(id: u8, parent: u8, name: &str, start: u64, end: u64) -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        name: name.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

/// The trace, as each service's clock recorded it; returns its true start.
async fn send(server: &TestServer) -> u64 {
    let t = now_nanos() - 60 * S;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            // The root's clock is right: the reference.
            resource_spans(
                "checkout",
                vec![span(1, 0, "POST /checkout", t, t + 1_000 * MS)],
            ),
            // payments' clock is 3 s ahead: really +100..+800 ms.
            resource_spans(
                "payments",
                vec![span(
                    2,
                    1,
                    "charge",
                    t + 3 * S + 100 * MS,
                    t + 3 * S + 800 * MS,
                )],
            ),
            // payments calls the ledger, whose clock is right: +200..+300 ms.
            resource_spans(
                "ledger",
                vec![span(3, 2, "append", t + 200 * MS, t + 300 * MS)],
            ),
            // stock's clock is 200 ms behind: really +850..+900 ms, recorded 200 ms early,
            // and reached over a slow network it still fits: not skew.
            resource_spans(
                "stock",
                vec![span(4, 1, "reserve", t + 650 * MS, t + 700 * MS)],
            ),
            // inventory's clock is 200 ms behind: really +20..+60 ms, so recorded before its
            // caller began.
            resource_spans(
                "inventory",
                vec![span(5, 1, "check", t - 180 * MS, t - 140 * MS)],
            ),
        ],
    };
    TraceServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap()
        .export(request)
        .await
        .unwrap();
    // payments logs from inside its span, by its own clock.
    let log = LogRecord {
        time_unix_nano: t + 3 * S + 500 * MS,
        trace_id: TRACE.to_vec(),
        span_id: vec![2; 8],
        severity_number: 9,
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "payments")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![log],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    LogsServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap()
        .export(request)
        .await
        .unwrap();
    t
}

fn ns(value: &Value) -> i128 {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_services_are_found_and_their_spans_and_logs_moved() {
    let server = TestServer::start().await;
    let t = send(&server).await;
    let id = hex::encode(TRACE);
    let trace = server.wait_for_trace(&id, 5, 1).await;

    // payments: 3 s ahead, less how far off centre its call was (the midpoint rule).
    let skew: Vec<(String, i128)> = trace["clock_skew"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["service"].as_str().unwrap().to_string(),
                ns(&k["offset_ns"]),
            )
        })
        .collect();
    let offset = |service: &str| skew.iter().find(|(s, _)| s == service).map(|(_, o)| *o);
    let payments = offset("payments").expect("payments is skewed");
    assert!(
        (2 * S as i128..=3 * S as i128).contains(&payments),
        "{skew:?}"
    );
    let inventory = offset("inventory").expect("inventory is skewed");
    assert!(inventory < 0, "inventory is behind: {skew:?}");
    assert_eq!(
        offset("ledger"),
        None,
        "the ledger's clock is right: {skew:?}"
    );
    assert_eq!(
        offset("stock"),
        None,
        "a slow network is not skew: {skew:?}"
    );
    assert_eq!(skew.len(), 2, "{skew:?}");

    // Recorded times kept; each span says how far to move it, and every one then sits inside
    // its parent.
    let spans = trace["spans"].as_array().unwrap();
    let placed = |name: &str| -> (i128, i128) {
        let s = spans.iter().find(|s| s["name"] == name).unwrap();
        let adjust = ns(&s["clock_adjustment_ns"]);
        (
            ns(&s["start_time_unix_nano"]) + adjust,
            ns(&s["end_time_unix_nano"]) + adjust,
        )
    };
    let charge = spans.iter().find(|s| s["name"] == "charge").unwrap();
    assert_eq!(
        ns(&charge["start_time_unix_nano"]),
        (t + 3 * S + 100 * MS) as i128
    );
    assert_eq!(ns(&charge["clock_adjustment_ns"]), -payments);
    let root = placed("POST /checkout");
    for (child, parent) in [
        ("charge", root),
        ("check", root),
        ("append", placed("charge")),
    ] {
        let c = placed(child);
        assert!(
            parent.0 <= c.0 && c.1 <= parent.1,
            "{child} {c:?} outside {parent:?}"
        );
    }
    let append = spans.iter().find(|s| s["name"] == "append").unwrap();
    assert_eq!(append["clock_adjustment_ns"], "0");

    // payments' log, moved with it, falls inside its span.
    let log = &trace["logs"][0];
    assert_eq!(ns(&log["clock_adjustment_ns"]), -payments);
    let at = ns(&log["time_unix_nano"]) + ns(&log["clock_adjustment_ns"]);
    let charge = placed("charge");
    assert!(
        charge.0 <= at && at <= charge.1,
        "the log at {at} outside {charge:?}"
    );

    // Jaeger v1: moved times, and a warning naming the service.
    let (status, jaeger) = server.get(&format!("/api/traces/{id}"), &[]).await;
    assert_eq!(status, 200, "{jaeger}");
    let jaeger_trace = &jaeger["data"][0];
    let warnings = jaeger_trace["warnings"].to_string();
    assert!(
        warnings.contains("payments") && warnings.contains("ahead"),
        "{warnings}"
    );
    let moved = jaeger_trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == "charge")
        .unwrap();
    let start_us = moved["startTime"].as_i64().unwrap() as i128;
    assert_eq!(start_us, (charge.0) / 1000);
    server.stop().await;
}

/// 100 traces: checkout calls payments (3 s ahead), then stock (200 ms behind), each from a
/// client span over a network as slow both ways (a different latency per trace, a little
/// slower back than out); payments calls the ledger, whose clock is right. At the end the
/// handler itself calls `legacy` without a client span: not centred, so no estimate.
fn calls_between_skewed_services(t: u64) -> ExportTraceServiceRequest {
    const CLIENT: i32 = 3;
    const SERVER: i32 = 2;
    let mut by_service: Vec<(&str, Vec<Span>)> =
        ["checkout", "payments", "stock", "ledger", "legacy"]
            .iter()
            .map(|s| (*s, Vec::new()))
            .collect();
    for i in 0..100u64 {
        let trace_id = [[i as u8; 8], [0xc1; 8]].concat();
        let start = t + i * 10 * MS;
        let (out, back) = ((i % 13 + 1) * MS, (i % 13 + 1 + i % 3) * MS);
        let span = |id: u8, parent: u8, kind: i32, name: &str, (from, to): (u64, u64)| Span {
            trace_id: trace_id.clone(),
            kind,
            ..span(id, parent, name, from, to)
        };
        // The server span of a call from `client`, by a clock `ahead` of the caller's.
        let served = |(from, to): (u64, u64), ahead: i64| {
            (
                (from + out).saturating_add_signed(ahead),
                (to - back).saturating_add_signed(ahead),
            )
        };
        let root = (start, start + 500 * MS);
        let to_payments = (start + 5 * MS, start + 295 * MS);
        let to_stock = (start + 300 * MS, start + 440 * MS);
        let checkout = &mut by_service[0].1;
        checkout.push(span(1, 0, SERVER, "POST /checkout", root));
        checkout.push(span(5, 1, CLIENT, "POST /charge", to_payments));
        checkout.push(span(7, 1, CLIENT, "POST /reserve", to_stock));
        let charge = served(to_payments, 3 * S as i64);
        let to_ledger = (charge.0 + 10 * MS, charge.1 - 10 * MS);
        by_service[1].1.push(span(2, 5, SERVER, "charge", charge));
        by_service[1]
            .1
            .push(span(6, 2, CLIENT, "POST /append", to_ledger));
        let reserve = served(to_stock, -200 * MS as i64);
        by_service[2].1.push(span(3, 7, SERVER, "reserve", reserve));
        let append = served(to_ledger, -3 * S as i64);
        by_service[3].1.push(span(4, 6, SERVER, "append", append));
        let audit = (start + 450 * MS, start + 499 * MS);
        by_service[4].1.push(span(8, 1, SERVER, "audit", audit));
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| resource_spans(service, spans))
            .collect(),
    }
}

/// The `clock_offset_ns` of each service in an answer's `services` array.
fn offsets(answer: &Value) -> Vec<(String, Option<i128>)> {
    answer["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let offset = s["clock_offset_ns"].as_str().map(|o| o.parse().unwrap());
            (s["service"].as_str().unwrap().to_string(), offset)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_services_clock_offset_is_estimated_from_the_calls_indexed() {
    let server = TestServer::start().await;
    let t = now_nanos() - 600 * S;
    TraceServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap()
        .export(calls_between_skewed_services(t))
        .await
        .unwrap();
    let expected = [
        ("checkout", 0),
        ("payments", 3 * S as i128),
        ("stock", -200 * MS as i128),
        ("ledger", 0),
    ];
    let within = |found: &[(String, Option<i128>)]| {
        expected.iter().all(|(service, want)| {
            found.iter().any(|(s, o)| {
                s == service && o.is_some_and(|o| (o - want).abs() <= 50 * MS as i128)
            })
        })
    };
    // Searchable at once; the catalog polls only for the indexer to have seen the calls.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let catalog = loop {
        let (status, catalog) = server.get("/api/v1/services", &[]).await;
        assert_eq!(status, 200, "{catalog}");
        if within(&offsets(&catalog)) {
            break catalog;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "offsets not found: {catalog}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for service in catalog["services"].as_array().unwrap() {
        let pairs = service["clock_offset_pairs"].as_u64().unwrap();
        if service["service"] == "legacy" {
            assert_eq!(service["clock_offset_ns"], Value::Null, "{service}");
            assert_eq!(pairs, 0, "{service}");
        } else {
            assert!(pairs >= 100, "{service}");
        }
    }

    // The service map carries the same estimates.
    let (status, map) = server.get("/api/v1/service-map", &[]).await;
    assert_eq!(status, 200, "{map}");
    assert!(within(&offsets(&map)), "{map}");

    // And /metrics, in seconds.
    let payments = server
        .metric("weft_clock_offset_seconds{service=\"payments\"}")
        .await;
    assert!((payments - 3.0).abs() <= 0.05, "{payments}");
    let stock = server
        .metric("weft_clock_offset_seconds{service=\"stock\"}")
        .await;
    assert!((stock + 0.2).abs() <= 0.05, "{stock}");
    server.stop().await;
}
