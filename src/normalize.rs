//! OTLP export requests → weft rows.
//!
//! A record whose trace or span ID has the wrong length is rejected alone and counted, so the
//! exporter learns of it through `partial_success` while the rest of its batch is kept.
//! All-zero IDs mean "no trace" (OTLP says an all-zero ID is invalid, and SDKs send it when
//! there is no active span).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use weft_index::model::{SharedAttributes, any_value_to_string};
use weft_index::severity;
use weft_index::{LogRow, SpanRow};

/// Service name used when a resource has no `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Rows made from one request, and what was rejected.
#[derive(Debug, Default)]
pub struct Normalized<T> {
    /// Accepted rows.
    pub rows: Vec<T>,
    /// How many records were rejected.
    pub rejected: u64,
    /// Why the first rejected record was rejected (empty when none were).
    pub error_message: String,
}

impl<T> Normalized<T> {
    fn reject(&mut self, why: impl FnOnce() -> String) {
        if self.rejected == 0 {
            self.error_message = why();
        }
        self.rejected += 1;
    }
}

/// The record times weft accepts. Client timestamps choose the partition a row lands in, so a
/// request stamped across years would otherwise create a partition per hour it names: a row
/// older than the retention (it would be deleted at once) or further ahead of weft's clock than
/// the allowed skew is rejected alone, in `partial_success`, with the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// Earliest accepted time (unix ns).
    pub min_unix_nano: u64,
    /// Latest accepted time (unix ns).
    pub max_unix_nano: u64,
    retention: std::time::Duration,
    future_skew: std::time::Duration,
}

impl TimeWindow {
    /// From `now - retention` to `now + future_skew`.
    pub fn around(
        now_unix_nano: u64,
        retention: std::time::Duration,
        future_skew: std::time::Duration,
    ) -> Self {
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        TimeWindow {
            min_unix_nano: now_unix_nano.saturating_sub(nanos(retention)),
            max_unix_nano: now_unix_nano.saturating_add(nanos(future_skew)),
            retention,
            future_skew,
        }
    }

    /// Why `time` is outside the window, if it is.
    fn violation(&self, what: &str, time_unix_nano: u64) -> Option<String> {
        let stamp = || {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_unix_nano))
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| format!("{time_unix_nano} ns"))
        };
        if time_unix_nano < self.min_unix_nano {
            Some(format!(
                "{what} time {} is older than the retention of {}; such records are not stored",
                stamp(),
                humantime::format_duration(self.retention)
            ))
        } else if time_unix_nano > self.max_unix_nano {
            Some(format!(
                "{what} time {} is more than {} ahead of weft's clock (max_future_skew)",
                stamp(),
                humantime::format_duration(self.future_skew)
            ))
        } else {
            None
        }
    }

    /// Rejects the log rows outside the window.
    pub fn apply_to_logs(&self, out: &mut Normalized<LogRow>) {
        self.retain(out, "log record", |r| r.time_unix_nano);
    }

    /// Rejects the spans that start outside the window.
    pub fn apply_to_spans(&self, out: &mut Normalized<SpanRow>) {
        self.retain(out, "span start", |r| r.start_time_unix_nano);
    }

    fn retain<T>(&self, out: &mut Normalized<T>, what: &str, time: impl Fn(&T) -> u64) {
        let mut rows = std::mem::take(&mut out.rows);
        rows.retain(|row| match self.violation(what, time(row)) {
            None => true,
            Some(why) => {
                out.reject(|| why);
                false
            }
        });
        out.rows = rows;
    }
}

/// `service.name` of a resource.
pub fn service_name(resource: Option<&Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            },
        )
        .unwrap_or_else(|| UNKNOWN_SERVICE.to_string())
}

/// Checks an ID's length. All-zero IDs become empty ("none").
fn normalize_id(id: &[u8], expected: usize) -> Result<Vec<u8>, usize> {
    if id.is_empty() || id.iter().all(|b| *b == 0) {
        if id.is_empty() || id.len() == expected {
            return Ok(Vec::new());
        }
        return Err(id.len());
    }
    if id.len() == expected {
        Ok(id.to_vec())
    } else {
        Err(id.len())
    }
}

/// The event ID of a record: `event_name`, else attribute `event.name`, else `event.id`.
fn event_id(event_name: &str, attributes: &[KeyValue]) -> String {
    if !event_name.is_empty() {
        return event_name.to_string();
    }
    for key in ["event.name", "event.id"] {
        if let Some(kv) = attributes.iter().find(|kv| kv.key == key) {
            let value = any_value_to_string(kv.value.as_ref());
            if !value.is_empty() {
                return value;
            }
        }
    }
    String::new()
}

/// Severity number and text, each derived from the other when missing. A number outside
/// 1-24 is treated as unspecified.
pub fn severity_pair(number: i32, text: &str) -> (i32, String) {
    let number = if (1..=24).contains(&number) {
        number
    } else {
        0
    };
    match (number, text.is_empty()) {
        (0, true) => (0, String::new()),
        (0, false) => (
            severity::number_for_text(text).unwrap_or(0),
            text.to_string(),
        ),
        (n, true) => (n, severity::text_for_number(n)),
        (n, false) => (n, text.to_string()),
    }
}

fn scope_parts(scope: Option<&InstrumentationScope>) -> (String, String, SharedAttributes) {
    scope.map_or_else(Default::default, |s| {
        (
            s.name.clone(),
            s.version.clone(),
            s.attributes.clone().into(),
        )
    })
}

/// Normalizes a logs request. `now` is the arrival time, used when a record has no time.
pub fn logs(request: ExportLogsServiceRequest, now_unix_nano: u64) -> Normalized<LogRow> {
    let mut out = Normalized::default();
    for resource_logs in request.resource_logs {
        let service = service_name(resource_logs.resource.as_ref());
        let resource = resource_logs
            .resource
            .map(|r| SharedAttributes::from(r.attributes))
            .unwrap_or_default();
        for scope_logs in resource_logs.scope_logs {
            let (scope_name, scope_version, scope_attributes) =
                scope_parts(scope_logs.scope.as_ref());
            for record in scope_logs.log_records {
                let trace_id = match normalize_id(&record.trace_id, 16) {
                    Ok(id) => id,
                    Err(len) => {
                        out.reject(|| {
                            format!("log record has a trace_id of {len} bytes; expected 16")
                        });
                        continue;
                    }
                };
                let span_id = match normalize_id(&record.span_id, 8) {
                    Ok(id) => id,
                    Err(len) => {
                        out.reject(|| {
                            format!("log record has a span_id of {len} bytes; expected 8")
                        });
                        continue;
                    }
                };
                let time = [
                    record.time_unix_nano,
                    record.observed_time_unix_nano,
                    now_unix_nano,
                ]
                .into_iter()
                .find(|t| *t != 0)
                .unwrap_or(now_unix_nano);
                let (severity_number, severity_text) =
                    severity_pair(record.severity_number, &record.severity_text);
                out.rows.push(LogRow {
                    time_unix_nano: time,
                    observed_time_unix_nano: record.observed_time_unix_nano,
                    service: service.clone(),
                    severity_number,
                    severity_text,
                    event: event_id(&record.event_name, &record.attributes),
                    body: record.body,
                    trace_id,
                    span_id,
                    attributes: record.attributes,
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    flags: record.flags,
                    dropped_attributes_count: record.dropped_attributes_count,
                    scope_attributes: scope_attributes.clone(),
                    origin: 0,
                });
            }
        }
    }
    out
}

/// Normalizes a traces request. A span needs a non-zero trace ID and span ID.
pub fn spans(request: ExportTraceServiceRequest) -> Normalized<SpanRow> {
    let mut out = Normalized::default();
    for resource_spans in request.resource_spans {
        let service = service_name(resource_spans.resource.as_ref());
        let resource = resource_spans
            .resource
            .map(|r| SharedAttributes::from(r.attributes))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let (scope_name, scope_version, scope_attributes) =
                scope_parts(scope_spans.scope.as_ref());
            for span in scope_spans.spans {
                let trace_id = match normalize_id(&span.trace_id, 16) {
                    Ok(id) if !id.is_empty() => id,
                    Ok(_) => {
                        out.reject(|| "span has no trace_id".to_string());
                        continue;
                    }
                    Err(len) => {
                        out.reject(|| format!("span has a trace_id of {len} bytes; expected 16"));
                        continue;
                    }
                };
                let span_id = match normalize_id(&span.span_id, 8) {
                    Ok(id) if !id.is_empty() => id,
                    Ok(_) => {
                        out.reject(|| "span has no span_id".to_string());
                        continue;
                    }
                    Err(len) => {
                        out.reject(|| format!("span has a span_id of {len} bytes; expected 8"));
                        continue;
                    }
                };
                let parent_span_id = match normalize_id(&span.parent_span_id, 8) {
                    Ok(id) => id,
                    Err(len) => {
                        out.reject(|| {
                            format!("span has a parent_span_id of {len} bytes; expected 8")
                        });
                        continue;
                    }
                };
                let (status_code, status_message) =
                    span.status.map(|s| (s.code, s.message)).unwrap_or_default();
                out.rows.push(SpanRow {
                    trace_id,
                    span_id,
                    parent_span_id,
                    trace_state: span.trace_state,
                    name: span.name,
                    kind: span.kind,
                    service: service.clone(),
                    start_time_unix_nano: span.start_time_unix_nano,
                    end_time_unix_nano: span.end_time_unix_nano.max(span.start_time_unix_nano),
                    attributes: span.attributes,
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    events: span.events,
                    links: span.links,
                    status_code,
                    status_message,
                    flags: span.flags,
                    scope_attributes: scope_attributes.clone(),
                    dropped_attributes_count: span.dropped_attributes_count,
                    origin: 0,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use serde_json::json;
    use weft_index::model::attributes_to_json;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn logs_request(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "payments".into(),
                        version: "1.2.0".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn every_otlp_value_type_is_kept() {
        let record = LogRecord {
            time_unix_nano: 5,
            attributes: vec![
                kv("str", s("x")),
                kv("bool", any_value::Value::BoolValue(true)),
                kv("int", any_value::Value::IntValue(-42)),
                kv("double", any_value::Value::DoubleValue(1.5)),
                kv("bytes", any_value::Value::BytesValue(vec![1, 2, 255])),
                kv(
                    "array",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(s("a")),
                            },
                            AnyValue {
                                value: Some(any_value::Value::IntValue(1)),
                            },
                        ],
                    }),
                ),
                kv(
                    "map",
                    any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("inner", s("v"))],
                    }),
                ),
            ],
            ..Default::default()
        };
        let out = logs(logs_request(vec![], vec![record]), 99);
        assert_eq!(out.rows.len(), 1);
        assert_eq!(
            attributes_to_json(&out.rows[0].attributes),
            json!({
                "str": "x", "bool": true, "int": -42, "double": 1.5, "bytes": "AQL/",
                "array": ["a", 1], "map": {"inner": "v"}
            })
        );
    }

    #[test]
    fn service_defaults_and_resource_is_kept() {
        let out = logs(
            logs_request(vec![kv("host.name", s("a1"))], vec![LogRecord::default()]),
            7,
        );
        assert_eq!(out.rows[0].service, UNKNOWN_SERVICE);
        let out = logs(
            logs_request(
                vec![kv("service.name", s("checkout"))],
                vec![LogRecord::default()],
            ),
            7,
        );
        assert_eq!(out.rows[0].service, "checkout");
        assert_eq!(out.rows[0].scope_name, "payments");
        assert_eq!(out.rows[0].scope_version, "1.2.0");
    }

    #[test]
    fn the_records_of_one_resource_share_its_attributes() {
        let resource = vec![kv("service.name", s("checkout")), kv("host.name", s("a1"))];
        let out = logs(
            logs_request(resource.clone(), vec![LogRecord::default(); 3]),
            7,
        );
        assert_eq!(out.rows.len(), 3);
        for row in &out.rows {
            assert_eq!(*row.resource, resource);
            assert!(row.resource.is_shared_with(&out.rows[0].resource));
        }
    }

    #[test]
    fn times_outside_the_window_are_rejected_one_by_one() {
        const HOUR: u64 = 3_600_000_000_000;
        let now = 1_800_000_000_000_000_000;
        let window = TimeWindow::around(
            now,
            std::time::Duration::from_secs(7 * 24 * 3600),
            std::time::Duration::from_secs(3600),
        );
        // One request, 300 records an hour apart, as a hostile or broken client might send.
        let records = (0..300u64)
            .map(|h| LogRecord {
                time_unix_nano: now + 2 * HOUR - h * HOUR,
                ..Default::default()
            })
            .collect();
        let mut out = logs(logs_request(vec![], records), now);
        window.apply_to_logs(&mut out);
        // From one hour ahead back to exactly seven days old.
        assert_eq!(out.rows.len(), 1 + 7 * 24 + 1);
        assert_eq!(out.rejected, 300 - out.rows.len() as u64);
        assert!(
            out.error_message.contains("ahead of weft's clock"),
            "{}",
            out.error_message
        );
        let mut old = logs(
            logs_request(
                vec![],
                vec![LogRecord {
                    time_unix_nano: 5,
                    ..Default::default()
                }],
            ),
            now,
        );
        window.apply_to_logs(&mut old);
        assert_eq!(old.rejected, 1);
        assert!(
            old.error_message
                .contains("1970-01-01T00:00:00.000000005Z is older than the retention of 7days"),
            "{}",
            old.error_message
        );
    }

    #[test]
    fn time_falls_back_to_observed_then_arrival() {
        let records = vec![
            LogRecord {
                time_unix_nano: 10,
                observed_time_unix_nano: 20,
                ..Default::default()
            },
            LogRecord {
                observed_time_unix_nano: 20,
                ..Default::default()
            },
            LogRecord::default(),
        ];
        let out = logs(logs_request(vec![], records), 30);
        let times: Vec<u64> = out.rows.iter().map(|r| r.time_unix_nano).collect();
        assert_eq!(times, vec![10, 20, 30]);
    }

    #[test]
    fn event_id_sources_in_order() {
        let records = vec![
            LogRecord {
                event_name: "PaymentDeclined".into(),
                attributes: vec![kv("event.name", s("Other"))],
                ..Default::default()
            },
            LogRecord {
                attributes: vec![kv("event.id", s("Id")), kv("event.name", s("ByName"))],
                ..Default::default()
            },
            LogRecord {
                attributes: vec![kv("event.id", any_value::Value::IntValue(4012))],
                ..Default::default()
            },
            LogRecord::default(),
        ];
        let out = logs(logs_request(vec![], records), 1);
        let events: Vec<&str> = out.rows.iter().map(|r| r.event.as_str()).collect();
        assert_eq!(events, vec!["PaymentDeclined", "ByName", "4012", ""]);
    }

    #[test]
    fn severity_text_and_number_complete_each_other() {
        assert_eq!(severity_pair(17, ""), (17, "ERROR".to_string()));
        assert_eq!(severity_pair(0, "warning"), (13, "warning".to_string()));
        assert_eq!(severity_pair(0, "chatty"), (0, "chatty".to_string()));
        assert_eq!(severity_pair(10, "Info"), (10, "Info".to_string()));
        assert_eq!(severity_pair(99, ""), (0, String::new()));
        assert_eq!(severity_pair(0, ""), (0, String::new()));
    }

    #[test]
    fn id_rules() {
        let good_trace = vec![7u8; 16];
        let records = vec![
            LogRecord {
                trace_id: good_trace.clone(),
                span_id: vec![1; 8],
                ..Default::default()
            },
            LogRecord {
                trace_id: vec![0; 16],
                span_id: vec![0; 8],
                ..Default::default()
            },
            LogRecord {
                trace_id: vec![1; 15],
                ..Default::default()
            },
            LogRecord {
                trace_id: good_trace.clone(),
                span_id: vec![1; 9],
                ..Default::default()
            },
        ];
        let out = logs(logs_request(vec![], records), 1);
        assert_eq!(out.rows.len(), 2);
        assert_eq!(out.rows[0].trace_id, good_trace);
        assert!(out.rows[1].trace_id.is_empty() && out.rows[1].span_id.is_empty());
        assert_eq!(out.rejected, 2);
        assert!(
            out.error_message.contains("15 bytes"),
            "{}",
            out.error_message
        );
    }

    #[test]
    fn spans_need_ids_and_keep_the_rest() {
        let span = |trace: Vec<u8>, id: Vec<u8>| Span {
            trace_id: trace,
            span_id: id,
            name: "GET /".into(),
            start_time_unix_nano: 100,
            end_time_unix_nano: 50,
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("web"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        attributes: vec![kv("scope.kind", s("http"))],
                        ..Default::default()
                    }),
                    spans: vec![
                        span(vec![1; 16], vec![2; 8]),
                        span(vec![0; 16], vec![2; 8]),
                        span(vec![1; 16], vec![2; 4]),
                        span(vec![1; 16], vec![3; 8]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = spans(request);
        assert_eq!(out.rows.len(), 2);
        assert_eq!(out.rejected, 2);
        assert_eq!(out.rows[0].service, "web");
        // The spans of one resource and scope share their attributes.
        assert_eq!(out.rows[0].resource[0].key, "service.name");
        assert!(out.rows[1].resource.is_shared_with(&out.rows[0].resource));
        assert_eq!(out.rows[0].scope_attributes[0].key, "scope.kind");
        assert!(
            out.rows[1]
                .scope_attributes
                .is_shared_with(&out.rows[0].scope_attributes)
        );
        // An end before the start is clamped rather than producing a negative duration.
        assert_eq!(out.rows[0].duration_ns(), 0);
    }
}
