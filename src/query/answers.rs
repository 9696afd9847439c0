//! The JSON shapes of weft's answers (`/api/v1/...`, live tail): typed structs, so that what
//! a client receives is written down in one place and checked by the compiler. Rows borrow
//! from the index's [`LogRow`] and [`SpanRow`]; IDs are hex; times and durations in
//! nanoseconds are strings, since JSON numbers lose precision past 2^53.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;
use weft_index::model::{any_value_to_json, attributes_to_json};
use weft_index::{LogRow, SpanRow, TraceSummary};

/// A log record.
#[derive(Debug, Serialize)]
pub struct LogRecord<'a> {
    pub time_unix_nano: String,
    pub observed_time_unix_nano: String,
    pub service: &'a str,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub event: &'a str,
    /// A string body as it is; any other value as JSON; `null` when there is none.
    pub body: Value,
    pub trace_id: String,
    pub span_id: String,
    pub attributes: Value,
    pub resource: Value,
    pub scope: InstrumentationScope<'a>,
    pub flags: u32,
}

impl<'a> From<&'a LogRow> for LogRecord<'a> {
    fn from(row: &'a LogRow) -> Self {
        LogRecord {
            time_unix_nano: row.time_unix_nano.to_string(),
            observed_time_unix_nano: row.observed_time_unix_nano.to_string(),
            service: &row.service,
            severity_number: row.severity_number,
            severity_text: &row.severity_text,
            event: &row.event,
            body: body(row.body.as_ref()),
            trace_id: hex::encode(&row.trace_id),
            span_id: hex::encode(&row.span_id),
            attributes: attributes_to_json(&row.attributes),
            resource: attributes_to_json(&row.resource),
            scope: InstrumentationScope::new(
                &row.scope_name,
                &row.scope_version,
                &row.scope_attributes,
            ),
            flags: row.flags,
        }
    }
}

fn body(value: Option<&AnyValue>) -> Value {
    match value.and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        None => Value::Null,
        Some(_) => any_value_to_json(value),
    }
}

/// The instrumentation scope of a row.
#[derive(Debug, Serialize)]
pub struct InstrumentationScope<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// Left out when the scope has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Value>,
}

impl<'a> InstrumentationScope<'a> {
    fn new(name: &'a str, version: &'a str, attributes: &[KeyValue]) -> Self {
        InstrumentationScope {
            name,
            version,
            attributes: (!attributes.is_empty()).then(|| attributes_to_json(attributes)),
        }
    }
}

/// A span.
#[derive(Debug, Serialize)]
pub struct Span<'a> {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub trace_state: &'a str,
    pub name: &'a str,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    pub service: &'a str,
    pub start_time_unix_nano: String,
    pub end_time_unix_nano: String,
    pub duration_ns: String,
    pub status: Status<'a>,
    pub attributes: Value,
    pub resource: Value,
    pub scope: InstrumentationScope<'a>,
    pub events: Vec<SpanEvent<'a>>,
    pub links: Vec<SpanLink<'a>>,
    pub flags: u32,
}

/// A span's status.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    /// `ok`, `error` or `unset`.
    pub code: &'static str,
    pub message: &'a str,
}

/// An event inside a span.
#[derive(Debug, Serialize)]
pub struct SpanEvent<'a> {
    pub time_unix_nano: String,
    pub name: &'a str,
    pub attributes: Value,
}

/// A span's link to another span.
#[derive(Debug, Serialize)]
pub struct SpanLink<'a> {
    pub trace_id: String,
    pub span_id: String,
    pub trace_state: &'a str,
    pub attributes: Value,
}

impl<'a> From<&'a SpanRow> for Span<'a> {
    fn from(row: &'a SpanRow) -> Self {
        Span {
            trace_id: hex::encode(&row.trace_id),
            span_id: hex::encode(&row.span_id),
            parent_span_id: hex::encode(&row.parent_span_id),
            trace_state: &row.trace_state,
            name: &row.name,
            kind: row.kind_name(),
            service: &row.service,
            start_time_unix_nano: row.start_time_unix_nano.to_string(),
            end_time_unix_nano: row.end_time_unix_nano.to_string(),
            duration_ns: row.duration_ns().to_string(),
            status: Status {
                code: weft_index::text::status_name(row.status_code),
                message: &row.status_message,
            },
            attributes: attributes_to_json(&row.attributes),
            resource: attributes_to_json(&row.resource),
            scope: InstrumentationScope::new(
                &row.scope_name,
                &row.scope_version,
                &row.scope_attributes,
            ),
            events: row
                .events
                .iter()
                .map(|e| SpanEvent {
                    time_unix_nano: e.time_unix_nano.to_string(),
                    name: &e.name,
                    attributes: attributes_to_json(&e.attributes),
                })
                .collect(),
            links: row
                .links
                .iter()
                .map(|l| SpanLink {
                    trace_id: hex::encode(&l.trace_id),
                    span_id: hex::encode(&l.span_id),
                    trace_state: &l.trace_state,
                    attributes: attributes_to_json(&l.attributes),
                })
                .collect(),
            flags: row.flags,
        }
    }
}

/// A trace in a list: its root, size, duration and services.
#[derive(Debug, Serialize)]
pub struct TraceSummaryView<'a> {
    pub trace_id: String,
    /// `None` when the trace's root span is not (yet) stored.
    pub root_service: Option<&'a str>,
    pub root_name: Option<&'a str>,
    pub start_time_unix_nano: String,
    /// Whole trace: first span start to last span end.
    pub duration_ns: String,
    pub span_count: usize,
    pub error_count: usize,
    pub log_count: usize,
    pub services: Vec<&'a str>,
    /// Spans name parents that are not stored.
    pub incomplete: bool,
}

impl<'a> From<&'a TraceSummary> for TraceSummaryView<'a> {
    fn from(s: &'a TraceSummary) -> Self {
        TraceSummaryView {
            trace_id: hex::encode(s.trace_id),
            root_service: s.root_service.as_deref(),
            root_name: s.root_name.as_deref(),
            start_time_unix_nano: s.start_time_unix_nano.to_string(),
            duration_ns: s.duration_ns.to_string(),
            span_count: s.span_count,
            error_count: s.error_count,
            log_count: s.log_count,
            services: s.services.iter().map(String::as_str).collect(),
            incomplete: s.incomplete,
        }
    }
}

/// Which ingest nodes did not answer a search node (empty on a single node): their rows not
/// yet published are missing from the answer.
#[derive(Debug, Serialize)]
pub struct Completeness {
    pub partial: bool,
    pub missing_nodes: Vec<String>,
}

impl Completeness {
    /// The completeness of an answer that `missing` did not contribute to.
    pub fn of(missing: Vec<String>) -> Self {
        Completeness {
            partial: !missing.is_empty(),
            missing_nodes: missing,
        }
    }
}

/// `GET /api/v1/logs`: a page of log records, newest first.
#[derive(Debug, Serialize)]
pub struct LogsAnswer<'a> {
    pub logs: Vec<LogRecord<'a>>,
    /// The cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
    pub more: bool,
    #[serde(flatten)]
    pub completeness: Completeness,
    pub took_ms: u64,
}

/// `GET /api/v1/traces/{trace_id}`: every span and log record of a trace.
#[derive(Debug, Serialize)]
pub struct TraceAnswer<'a> {
    pub trace_id: String,
    pub spans: Vec<Adjusted<Span<'a>>>,
    pub logs: Vec<Adjusted<LogRecord<'a>>>,
    pub summary: TraceSummaryView<'a>,
    /// More spans or logs than one answer carries.
    pub truncated: bool,
    /// The services whose clocks were found skewed in this trace, and how far each is ahead
    /// (negative: behind); their spans and logs carry the adjustment.
    pub clock_skew: Vec<ServiceSkew>,
    #[serde(flatten)]
    pub completeness: Completeness,
    pub took_ms: u64,
}

/// A span or log record of a trace as stored (its times as its service's clock gave them), and
/// what to add to those times to place it on the trace's clock: a signed integer as a string,
/// `"0"` when its service's clock agrees.
#[derive(Debug, Serialize)]
pub struct Adjusted<T> {
    #[serde(flatten)]
    pub row: T,
    pub clock_adjustment_ns: String,
}

/// A service whose clock was found skewed in a trace.
#[derive(Debug, Serialize)]
pub struct ServiceSkew {
    pub service: String,
    /// How far its clock is ahead, in nanoseconds as a string (negative: behind).
    pub offset_ns: String,
}

/// `GET /api/v1/traces`: the traces a search found, newest matching span first.
#[derive(Debug, Serialize)]
pub struct TracesAnswer<'a> {
    pub traces: Vec<TraceSummaryView<'a>>,
    /// The search stopped at a limit: there may be more.
    pub limited: bool,
    #[serde(flatten)]
    pub completeness: Completeness,
    pub took_ms: u64,
}

/// `GET /api/v1/logs/histogram`: log records per time bucket, by severity band.
#[derive(Debug, Serialize)]
pub struct HistogramAnswer {
    /// Each bucket's width.
    pub bucket_ns: String,
    /// The severity bands, lowest first (the keys of each bucket's `counts`).
    pub bands: &'static [&'static str],
    pub buckets: Vec<HistogramBucketView>,
    #[serde(flatten)]
    pub completeness: Completeness,
    pub took_ms: u64,
}

/// One bucket of a histogram.
#[derive(Debug, Serialize)]
pub struct HistogramBucketView {
    pub start_unix_nano: String,
    /// Records per severity band.
    pub counts: BTreeMap<&'static str, u64>,
    pub total: u64,
}

/// `GET /api/v1/services`: every service seen, with its counts.
#[derive(Debug, Serialize)]
pub struct ServicesAnswer {
    pub services: Vec<ServiceView>,
    #[serde(flatten)]
    pub completeness: Completeness,
}

/// A service in the catalog.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    pub service: String,
    pub span_count: u64,
    pub log_count: u64,
    pub last_seen_unix_nano: String,
    /// How far the service's clock runs ahead of its callers' (negative: behind), in
    /// nanoseconds, estimated from the calls indexed since the node started
    /// (`weft_index::clock`); absent until enough calls were seen.
    pub clock_offset_ns: Option<String>,
    /// Calls (or agent-stamped log records) the estimate rests on.
    pub clock_offset_pairs: u64,
}

/// `GET /api/v1/events`: every event ID seen, most frequent first, with the severity rule
/// in force for it.
#[derive(Debug, Serialize)]
pub struct EventsAnswer {
    pub events: Vec<EventView>,
    #[serde(flatten)]
    pub completeness: Completeness,
}

/// An event ID in the catalog.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub event: String,
    pub services: BTreeSet<String>,
    pub count: u64,
    pub first_seen_unix_nano: String,
    pub last_seen_unix_nano: String,
    /// Severity bands seen.
    pub severities: BTreeSet<String>,
    /// The newest unexpired rule that names this event ID, as `/api/v1/severity/rules`
    /// lists it; `null` when none does.
    pub rule: Value,
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::span::Event;

    use super::*;

    fn text(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        })
    }

    #[test]
    fn a_log_record_has_the_documented_shape() {
        let row = LogRow {
            time_unix_nano: u64::MAX,
            service: "checkout".into(),
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: text("declined"),
            trace_id: vec![0xab; 16],
            attributes: vec![KeyValue {
                key: "order.id".into(),
                value: text("7"),
                ..Default::default()
            }],
            ..Default::default()
        };
        let json = serde_json::to_value(LogRecord::from(&row)).unwrap();
        assert_eq!(json["time_unix_nano"], u64::MAX.to_string());
        assert_eq!(json["body"], "declined");
        assert_eq!(json["trace_id"], "ab".repeat(16));
        assert_eq!(json["span_id"], "");
        assert_eq!(json["attributes"]["order.id"], "7");
        assert_eq!(
            json["scope"],
            serde_json::json!({"name": "", "version": ""})
        );
        let without_body = LogRow::default();
        let json = serde_json::to_value(LogRecord::from(&without_body)).unwrap();
        assert!(json["body"].is_null());
    }

    #[test]
    fn a_span_has_the_documented_shape() {
        let row = SpanRow {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /cart".into(),
            kind: 2,
            start_time_unix_nano: 10,
            end_time_unix_nano: 35,
            status_code: 2,
            status_message: "boom".into(),
            events: vec![Event {
                time_unix_nano: 20,
                name: "retry".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let json = serde_json::to_value(Span::from(&row)).unwrap();
        assert_eq!(json["kind"], "server");
        assert_eq!(json["duration_ns"], "25");
        assert_eq!(json["parent_span_id"], "");
        assert_eq!(
            json["status"],
            serde_json::json!({"code": "error", "message": "boom"})
        );
        assert_eq!(json["events"][0]["time_unix_nano"], "20");
        assert_eq!(json["links"], serde_json::json!([]));
    }

    #[test]
    fn completeness_flattens_into_the_answer() {
        let answer = TracesAnswer {
            traces: Vec::new(),
            limited: false,
            completeness: Completeness::of(vec!["ingest-2".into()]),
            took_ms: 1,
        };
        let json = serde_json::to_value(answer).unwrap();
        assert_eq!(json["partial"], true);
        assert_eq!(json["missing_nodes"], serde_json::json!(["ingest-2"]));
    }
}
