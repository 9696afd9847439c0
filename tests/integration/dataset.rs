//! A realistic multi-service data set, sent over OTLP/gRPC, with the facts tests check against
//! computed from what was sent.

use std::collections::{BTreeMap, BTreeSet};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use crate::bad_input::logs_request;
use crate::common::{TestServer, now_nanos};

pub const HOUR: u64 = 3_600_000_000_000;
const MS: u64 = 1_000_000;

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

#[derive(Clone, Debug)]
pub struct SentLog {
    pub service: &'static str,
    pub time: u64,
    pub severity: i32,
    pub event: &'static str,
    pub body: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct SentSpan {
    pub service: &'static str,
    pub name: &'static str,
    pub kind: i32,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent: Vec<u8>,
    pub start: u64,
    pub end: u64,
    pub error: bool,
}

/// What was sent, and the time range that covers it.
pub struct Dataset {
    pub logs: Vec<SentLog>,
    pub spans: Vec<SentSpan>,
    pub start: u64,
    pub end: u64,
    /// An hour boundary some traces cross.
    pub boundary: u64,
    pub cross_hour_trace: Vec<u8>,
    pub rootless_trace: Vec<u8>,
}

fn id(prefix: u8, n: usize, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    bytes[0] = prefix;
    bytes[len - 2] = (n >> 8) as u8;
    bytes[len - 1] = n as u8;
    bytes
}

impl Dataset {
    /// 20 request traces over four services, a trace across an hour boundary, a trace whose
    /// root never arrived, and logs at every severity, some without a trace.
    pub fn build() -> Dataset {
        let now = now_nanos();
        let boundary = now - now % HOUR - HOUR;
        let mut logs = Vec::new();
        let mut spans = Vec::new();
        let mut log = |service, time, severity, event, body: String, trace: &[u8], span: &[u8]| {
            logs.push(SentLog {
                service,
                time,
                severity,
                event,
                body,
                trace_id: trace.to_vec(),
                span_id: span.to_vec(),
            })
        };
        for i in 0..20usize {
            let trace = id(1, i, 16);
            let start = boundary - 20 * 60_000 * MS + i as u64 * 2 * 60_000 * MS;
            let total = (100 + 10 * i as u64) * MS;
            let error = i % 5 == 0;
            let ids: Vec<Vec<u8>> = (0..4).map(|s| id(2 + s as u8, i, 8)).collect();
            let layout = [
                ("frontend", "GET /checkout", 2, 0u64, total, Vec::new()),
                ("checkout", "POST /order", 2, MS, 40 * MS, ids[0].clone()),
                ("payments", "charge", 3, 2 * MS, 20 * MS, ids[1].clone()),
                ("inventory", "reserve", 3, 3 * MS, 10 * MS, ids[1].clone()),
            ];
            for (s, (service, name, kind, offset, duration, parent)) in
                layout.into_iter().enumerate()
            {
                spans.push(SentSpan {
                    service,
                    name,
                    kind,
                    trace_id: trace.clone(),
                    span_id: ids[s].clone(),
                    parent,
                    start: start + offset,
                    end: start + offset + duration,
                    error: error && service == "payments",
                });
            }
            log(
                "frontend",
                start + 1,
                9,
                "RequestReceived",
                format!("request {i} received for checkout"),
                &trace,
                &ids[0],
            );
            log(
                "checkout",
                start + MS + 1,
                5,
                "CartLoaded",
                format!("cart loaded with {} items", i % 4 + 1),
                &trace,
                &ids[1],
            );
            if error {
                log(
                    "payments",
                    start + 2 * MS + 5,
                    17,
                    "PaymentDeclined",
                    format!("card declined for order {i}"),
                    &trace,
                    &ids[2],
                );
            } else {
                log(
                    "payments",
                    start + 2 * MS + 5,
                    9,
                    "PaymentAuthorized",
                    format!("payment authorized for order {i}"),
                    &trace,
                    &ids[2],
                );
            }
            if i % 3 == 0 {
                log(
                    "inventory",
                    start + 3 * MS + 2,
                    13,
                    "StockLow",
                    format!("stock low while reserving order {i}"),
                    &trace,
                    &ids[3],
                );
            } else {
                log(
                    "inventory",
                    start + 3 * MS + 2,
                    1,
                    "StockChecked",
                    format!("stock checked for order {i}"),
                    &trace,
                    &ids[3],
                );
            }
            if i == 7 {
                log(
                    "checkout",
                    start + MS + 9,
                    21,
                    "OrderCorrupt",
                    "order state corrupt".into(),
                    &trace,
                    &ids[1],
                );
            }
        }
        // A trace that crosses the hour boundary: spans and logs on both sides.
        let cross = id(9, 1, 16);
        let (root, child) = (id(9, 2, 8), id(9, 3, 8));
        spans.push(SentSpan {
            service: "frontend",
            name: "GET /slow",
            kind: 2,
            trace_id: cross.clone(),
            span_id: root.clone(),
            parent: vec![],
            start: boundary - 1_000 * MS,
            end: boundary + 3_000 * MS,
            error: false,
        });
        spans.push(SentSpan {
            service: "checkout",
            name: "POST /slow",
            kind: 2,
            trace_id: cross.clone(),
            span_id: child.clone(),
            parent: root.clone(),
            start: boundary + 1_000 * MS,
            end: boundary + 2_000 * MS,
            error: false,
        });
        log(
            "frontend",
            boundary - 500 * MS,
            9,
            "SlowStart",
            "slow request started".into(),
            &cross,
            &root,
        );
        log(
            "checkout",
            boundary + 1_500 * MS,
            13,
            "SlowStep",
            "slow step after the hour".into(),
            &cross,
            &child,
        );
        log(
            "frontend",
            boundary + 2_500 * MS,
            9,
            "",
            "trace level log without span".into(),
            &cross,
            &[],
        );
        // A trace whose root span never arrived.
        let rootless = id(8, 1, 16);
        spans.push(SentSpan {
            service: "payments",
            name: "refund",
            kind: 3,
            trace_id: rootless.clone(),
            span_id: id(8, 2, 8),
            parent: id(8, 99, 8),
            start: boundary + 60_000 * MS,
            end: boundary + 60_050 * MS,
            error: false,
        });
        spans.push(SentSpan {
            service: "inventory",
            name: "restock",
            kind: 1,
            trace_id: rootless.clone(),
            span_id: id(8, 3, 8),
            parent: id(8, 2, 8),
            start: boundary + 60_010 * MS,
            end: boundary + 60_020 * MS,
            error: false,
        });
        // Logs outside any trace.
        for (n, severity) in [(0, 1), (1, 5), (2, 9), (3, 13), (4, 17), (5, 21)] {
            log(
                "checkout",
                boundary + 120_000 * MS + n * MS,
                severity,
                "Heartbeat",
                format!("heartbeat {n}"),
                &[],
                &[],
            );
        }
        Dataset {
            logs,
            spans,
            start: boundary - HOUR,
            end: boundary + HOUR,
            boundary,
            cross_hour_trace: cross,
            rootless_trace: rootless,
        }
    }

    /// How many (signal, hour) partitions the data set fills.
    pub fn partitions(&self) -> usize {
        let logs: BTreeSet<u64> = self.logs.iter().map(|l| l.time / HOUR).collect();
        let spans: BTreeSet<u64> = self.spans.iter().map(|s| s.start / HOUR).collect();
        logs.len() + spans.len()
    }

    pub async fn send(&self, server: &TestServer) {
        let endpoint = format!("http://{}", server.grpc);
        let mut logs_client = LogsServiceClient::connect(endpoint.clone()).await.unwrap();
        let mut traces_client = TraceServiceClient::connect(endpoint).await.unwrap();
        let mut by_service: BTreeMap<&str, Vec<LogRecord>> = BTreeMap::new();
        for l in &self.logs {
            by_service.entry(l.service).or_default().push(LogRecord {
                time_unix_nano: l.time,
                severity_number: l.severity,
                event_name: l.event.into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(l.body.clone())),
                }),
                trace_id: l.trace_id.clone(),
                span_id: l.span_id.clone(),
                ..Default::default()
            });
        }
        for (service, records) in by_service {
            let response = logs_client
                .export(logs_request(service, records))
                .await
                .unwrap()
                .into_inner();
            assert!(response.partial_success.is_none(), "{response:?}");
        }
        let mut spans_by_service: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
        for s in &self.spans {
            spans_by_service.entry(s.service).or_default().push(Span {
                trace_id: s.trace_id.clone(),
                span_id: s.span_id.clone(),
                parent_span_id: s.parent.clone(),
                name: s.name.into(),
                kind: s.kind,
                start_time_unix_nano: s.start,
                end_time_unix_nano: s.end,
                attributes: vec![kv("http.route", s.name)],
                status: Some(Status {
                    code: if s.error { 2 } else { 0 },
                    message: if s.error {
                        "declined".into()
                    } else {
                        String::new()
                    },
                }),
                ..Default::default()
            });
        }
        let request = ExportTraceServiceRequest {
            resource_spans: spans_by_service
                .into_iter()
                .map(|(service, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", service), kv("host.name", "h1")],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        let response = traces_client.export(request).await.unwrap().into_inner();
        assert!(response.partial_success.is_none(), "{response:?}");
    }

    /// Range parameters covering the data set.
    pub fn range(&self) -> [(&'static str, String); 2] {
        [
            ("start", self.start.to_string()),
            ("end", self.end.to_string()),
        ]
    }

    /// Whole-trace durations of the request traces, by trace ID hex.
    pub fn trace_durations(&self) -> BTreeMap<String, u64> {
        let mut bounds: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for s in &self.spans {
            let e = bounds
                .entry(hex::encode(&s.trace_id))
                .or_insert((u64::MAX, 0));
            e.0 = e.0.min(s.start);
            e.1 = e.1.max(s.end);
        }
        bounds.into_iter().map(|(k, (a, b))| (k, b - a)).collect()
    }
}

/// The spans of `service`, as its SDK exports them: one resource, one scope.
pub fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}
