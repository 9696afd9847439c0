//! Jaeger query API v1 (JSON), so Grafana's Jaeger data source and the Jaeger UI work against
//! weft: `/api/services`, `/api/services/{service}/operations`, `/api/operations`,
//! `/api/traces` and `/api/traces/{id}`, in Jaeger's envelope `{data, total, limit, offset,
//! errors}`. weft adds the logs of each span to that span's `logs`, so a Jaeger UI shows them
//! in place.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::{Value, json};
use weft_index::model::{SharedAttributes, any_value_to_json};
use weft_index::query::{CmpOp, Expr};
use weft_index::{LogRow, SpanRow, TraceSearch};

use super::traces::{authorization, parse_trace_id};
use super::{ApiError, ApiState};
use crate::pipeline::now_unix_nano;
use crate::query::service::{trace_rows, whole_traces};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1500;
/// Jaeger's default look-back when a search gives no start.
const DEFAULT_LOOKBACK_NANOS: u64 = 3_600 * 1_000_000_000;
/// Largest integer a JavaScript client reads exactly; larger int64 tags go out as strings.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Jaeger's envelope around `data`. On a search node, ingest nodes that did not answer
/// (`missing`) are named in `errors` beside the data, as Jaeger names the storage errors of
/// a partial answer: the UI shows the data it has, and a client can tell it is partial.
fn envelope(data: Value, total: usize, missing: &[String]) -> Json<Value> {
    let errors = if missing.is_empty() {
        Value::Null
    } else {
        json!([{
            "code": StatusCode::SERVICE_UNAVAILABLE.as_u16(),
            "msg": partial_message(missing),
        }])
    };
    Json(json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}))
}

/// What a partial answer is missing, for the `errors` of Jaeger's envelopes (v1 and v3).
pub(crate) fn partial_message(missing: &[String]) -> String {
    format!(
        "partial answer: ingest nodes {} did not answer; their records not yet published are missing",
        missing.join(", ")
    )
}

/// Errors in Jaeger's envelope, with the HTTP status in `code`.
pub(crate) struct JaegerError(StatusCode, String);

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        let body = json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": self.0.as_u16(), "msg": self.1}],
        });
        super::error::with_retry_after((self.0, Json(body)).into_response())
    }
}

impl JaegerError {
    /// A 400 naming what is wrong with the request.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        JaegerError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl From<ApiError> for JaegerError {
    fn from(error: ApiError) -> Self {
        JaegerError(error.status(), error.public_message())
    }
}

pub(crate) type JaegerResult = Result<Json<Value>, JaegerError>;

fn all_time() -> (u64, u64) {
    (0, now_unix_nano().saturating_add(3_600_000_000_000))
}

pub(crate) async fn services(State(state): State<ApiState>, headers: HeaderMap) -> JaegerResult {
    let (start, end) = all_time();
    let (found, missing) =
        crate::aggregation::services(&state, start, end, authorization(&headers)).await?;
    let names: Vec<&String> = found
        .iter()
        .filter(|(_, s)| s.spans > 0)
        .map(|(n, _)| n)
        .collect();
    Ok(envelope(json!(names), names.len(), &missing))
}

pub(crate) async fn service_operations(
    State(state): State<ApiState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> JaegerResult {
    let (start, end) = all_time();
    let (found, missing) =
        crate::aggregation::operations(&state, service, start, end, authorization(&headers))
            .await?;
    let names: Vec<&String> = found.keys().collect();
    Ok(envelope(json!(names), names.len(), &missing))
}

pub(crate) async fn operations(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> JaegerResult {
    let service = params
        .get("service")
        .filter(|s| !s.is_empty())
        .cloned()
        .ok_or_else(|| {
            JaegerError(
                StatusCode::BAD_REQUEST,
                "parameter 'service' is required".into(),
            )
        })?;
    let kind = params.get("spanKind").filter(|k| !k.is_empty()).cloned();
    let (start, end) = all_time();
    let (found, missing) =
        crate::aggregation::operations(&state, service, start, end, authorization(&headers))
            .await?;
    let mut data = Vec::new();
    for (name, kinds) in &found {
        for k in kinds {
            let jaeger_kind = if k == "unspecified" { "" } else { k };
            if kind.as_deref().is_none_or(|wanted| wanted == jaeger_kind) {
                data.push(json!({"name": name, "spanKind": jaeger_kind}));
            }
        }
    }
    let total = data.len();
    Ok(envelope(Value::Array(data), total, &missing))
}

fn micros(text: &str, name: &str) -> Result<u64, JaegerError> {
    text.trim()
        .parse::<u64>()
        .map(|us| us.saturating_mul(1000))
        .map_err(|_| {
            JaegerError(
                StatusCode::BAD_REQUEST,
                format!("{name} must be microseconds since the epoch, not '{text}'"),
            )
        })
}

/// Go-style durations as Jaeger takes them: `1.5s`, `100ms`, `1m30s`, `250us`.
pub(crate) fn go_duration(text: &str, name: &str) -> Result<u64, JaegerError> {
    let bad = || {
        JaegerError(
            StatusCode::BAD_REQUEST,
            format!("{name} must be a duration such as 100ms or 1m30s, not '{text}'"),
        )
    };
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Ok(total as u64)
}

/// What a Jaeger trace search (API v1 or v3) filters on.
pub(crate) struct SearchFilters<'a> {
    pub service: Option<&'a str>,
    pub operation: Option<&'a str>,
    /// Tags (v1) or attributes (v3), as strings.
    pub tags: BTreeMap<String, String>,
    pub min_duration_ns: Option<u64>,
    pub max_duration_ns: Option<u64>,
}

impl SearchFilters<'_> {
    /// The filters as a query on spans: a trace matches when one of its spans does.
    pub(crate) fn expr(&self) -> Option<Expr> {
        let mut parts = Vec::new();
        if let Some(service) = self.service {
            parts.push(Expr::filter("service", CmpOp::Eq, service));
        }
        if let Some(operation) = self.operation {
            parts.push(Expr::filter("name", CmpOp::Eq, operation));
        }
        for (key, value) in &self.tags {
            if key == "error" && value == "true" {
                parts.push(Expr::filter("status", CmpOp::Eq, "error"));
            } else {
                // Jaeger matches a span's own tags and its process (resource) tags.
                parts.push(Expr::Or(vec![
                    Expr::filter(&format!("attr.{key}"), CmpOp::Eq, value),
                    Expr::filter(&format!("resource.{key}"), CmpOp::Eq, value),
                ]));
            }
        }
        // Jaeger's duration filters apply to spans.
        if let Some(ns) = self.min_duration_ns {
            parts.push(Expr::filter("duration", CmpOp::Ge, &ns.to_string()));
        }
        if let Some(ns) = self.max_duration_ns {
            parts.push(Expr::filter("duration", CmpOp::Le, &ns.to_string()));
        }
        match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Expr::And(parts)),
        }
    }
}

pub(crate) async fn search(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> JaegerResult {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let tags = match get("tags") {
        None => BTreeMap::new(),
        Some(tags) => {
            let map: BTreeMap<String, Value> = serde_json::from_str(tags).map_err(|e| {
                JaegerError::bad_request(format!(
                    "tags must be a JSON object such as {{\"http.status_code\":\"500\"}}: {e}"
                ))
            })?;
            map.into_iter()
                .map(|(key, value)| match value {
                    Value::String(s) => (key, s),
                    other => (key, other.to_string()),
                })
                .collect()
        }
    };
    let filters = SearchFilters {
        service: get("service"),
        operation: get("operation"),
        tags,
        min_duration_ns: get("minDuration")
            .map(|d| go_duration(d, "minDuration"))
            .transpose()?,
        max_duration_ns: get("maxDuration")
            .map(|d| go_duration(d, "maxDuration"))
            .transpose()?,
    };
    let end = match get("end") {
        Some(e) => micros(e, "end")?,
        None => now_unix_nano().saturating_add(1),
    };
    let start = match get("start") {
        Some(s) => micros(s, "start")?,
        None => end.saturating_sub(DEFAULT_LOOKBACK_NANOS),
    };
    let limit = match get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                JaegerError(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be from 1 to {MAX_LIMIT}"),
                )
            })?,
        None => DEFAULT_LIMIT,
    };
    let search = TraceSearch {
        query: filters.expr(),
        start_unix_nano: start,
        end_unix_nano: end.max(start + 1),
        min_duration_ns: None,
        max_duration_ns: None,
        limit,
    };
    let (found, missing) = whole_traces(&state, search, authorization(&headers).as_deref()).await?;
    let traces: Vec<Value> = found
        .iter()
        .map(|(id, rows)| trace_json(id, &rows.spans, &rows.logs))
        .collect();
    let total = traces.len();
    Ok(envelope(Value::Array(traces), total, &missing))
}

pub(crate) async fn get_trace(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
    headers: axum::http::HeaderMap,
) -> JaegerResult {
    let id = parse_trace_id(&trace_id)?;
    let (rows, missing) = trace_rows(&state, id, authorization(&headers).as_deref()).await?;
    if rows.spans.is_empty() && rows.logs.is_empty() {
        // Jaeger's own words, unless a node that did not answer may hold the trace.
        let message = match missing.is_empty() {
            true => "trace not found".to_string(),
            false => super::traces::not_found_message(id, &missing),
        };
        return Err(JaegerError(StatusCode::NOT_FOUND, message));
    }
    Ok(envelope(
        json!([trace_json(&id, &rows.spans, &rows.logs)]),
        1,
        &missing,
    ))
}

/// One typed Jaeger tag.
fn tag(key: &str, value: Option<&AnyValue>) -> Value {
    let (kind, value) = match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => ("string", json!(s)),
        Some(any_value::Value::BoolValue(b)) => ("bool", json!(b)),
        Some(any_value::Value::IntValue(i)) if i.abs() <= MAX_SAFE_INTEGER => ("int64", json!(i)),
        Some(any_value::Value::IntValue(i)) => ("int64", json!(i.to_string())),
        Some(any_value::Value::DoubleValue(d)) => ("float64", json!(d)),
        Some(any_value::Value::BytesValue(_)) => ("binary", any_value_to_json(value)),
        Some(_) => ("string", json!(any_value_to_json(value).to_string())),
        None => ("string", json!("")),
    };
    json!({"key": key, "type": kind, "value": value})
}

fn string_tag(key: &str, value: &str) -> Value {
    json!({"key": key, "type": "string", "value": value})
}

fn tags(attributes: &[KeyValue]) -> Vec<Value> {
    attributes
        .iter()
        .map(|kv| tag(&kv.key, kv.value.as_ref()))
        .collect()
}

/// An OTLP string attribute.
pub(crate) fn string_value(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// A weft log record's fields as Jaeger shows them among a span's logs: its event ID (or
/// "log"), level, message, then its attributes. API v1 sends them as a span log's fields, v3 as
/// a span event's attributes.
pub(crate) fn log_fields(log: &LogRow) -> Vec<KeyValue> {
    let mut fields = Vec::with_capacity(log.attributes.len() + 3);
    let event = if log.event.is_empty() {
        "log"
    } else {
        &log.event
    };
    fields.push(string_value("event", event));
    if !log.severity_text.is_empty() {
        fields.push(string_value("level", &log.severity_text));
    }
    fields.push(string_value("message", &log.body_text()));
    fields.extend(log.attributes.iter().cloned());
    fields
}

/// A weft log record as a Jaeger span log.
fn log_entry(log: &LogRow) -> Value {
    json!({"timestamp": log.time_unix_nano / 1000, "fields": tags(&log_fields(log))})
}

/// A trace in Jaeger's JSON model.
pub(crate) fn trace_json(trace_id: &[u8; 16], spans: &[SpanRow], logs: &[LogRow]) -> Value {
    let trace_hex = hex::encode(trace_id);
    // One process per distinct service + resource.
    let mut processes: Vec<(String, SharedAttributes)> = Vec::new();
    let mut process_of = |row: &SpanRow| -> String {
        let index = processes
            .iter()
            .position(|(s, r)| *s == row.service && *r == row.resource)
            .unwrap_or_else(|| {
                processes.push((row.service.clone(), row.resource.clone()));
                processes.len() - 1
            });
        format!("p{}", index + 1)
    };
    let mut logs_by_span: HashMap<&[u8], Vec<&LogRow>> = HashMap::new();
    for log in logs {
        logs_by_span
            .entry(log.span_id.as_slice())
            .or_default()
            .push(log);
    }
    let mut jaeger_spans = Vec::with_capacity(spans.len());
    for span in spans {
        let mut references = Vec::new();
        if !span.parent_span_id.is_empty() {
            references.push(json!({
                "refType": "CHILD_OF", "traceID": trace_hex,
                "spanID": hex::encode(&span.parent_span_id),
            }));
        }
        for link in &span.links {
            references.push(json!({
                "refType": "FOLLOWS_FROM", "traceID": hex::encode(&link.trace_id),
                "spanID": hex::encode(&link.span_id),
            }));
        }
        let mut span_tags = Vec::new();
        if !span.scope_name.is_empty() {
            span_tags.push(string_tag("otel.scope.name", &span.scope_name));
        }
        if !span.scope_version.is_empty() {
            span_tags.push(string_tag("otel.scope.version", &span.scope_version));
        }
        span_tags.extend(tags(&span.attributes));
        if !matches!(span.kind_name(), "unspecified") {
            span_tags.push(string_tag("span.kind", span.kind_name()));
        }
        match span.status_code {
            2 => {
                span_tags.push(json!({"key": "error", "type": "bool", "value": true}));
                span_tags.push(string_tag("otel.status_code", "ERROR"));
            }
            1 => span_tags.push(string_tag("otel.status_code", "OK")),
            _ => {}
        }
        if !span.status_message.is_empty() {
            span_tags.push(string_tag("otel.status_description", &span.status_message));
        }
        let mut span_logs: Vec<(u64, Value)> = span
            .events
            .iter()
            .map(|e| {
                let mut fields = vec![string_tag("event", &e.name)];
                fields.extend(tags(&e.attributes));
                (
                    e.time_unix_nano,
                    json!({"timestamp": e.time_unix_nano / 1000, "fields": fields}),
                )
            })
            .collect();
        if let Some(own) = logs_by_span.get(span.span_id.as_slice()) {
            span_logs.extend(own.iter().map(|l| (l.time_unix_nano, log_entry(l))));
        }
        span_logs.sort_by_key(|(t, _)| *t);
        jaeger_spans.push(json!({
            "traceID": trace_hex,
            "spanID": hex::encode(&span.span_id),
            "operationName": span.name,
            "references": references,
            "startTime": span.start_time_unix_nano / 1000,
            "duration": span.duration_ns() / 1000,
            "tags": span_tags,
            "logs": span_logs.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
            "processID": process_of(span),
            "warnings": null,
        }));
    }
    let processes: serde_json::Map<String, Value> = processes
        .into_iter()
        .enumerate()
        .map(|(i, (service, resource))| {
            let resource_tags: Vec<Value> = resource
                .iter()
                .filter(|kv| kv.key != "service.name")
                .map(|kv| tag(&kv.key, kv.value.as_ref()))
                .collect();
            (
                format!("p{}", i + 1),
                json!({"serviceName": service, "tags": resource_tags}),
            )
        })
        .collect();
    json!({
        "traceID": trace_hex,
        "spans": jaeger_spans,
        "processes": processes,
        "warnings": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("100ms", "d").ok(), Some(100_000_000));
        assert_eq!(go_duration("1m30s", "d").ok(), Some(90_000_000_000));
        assert_eq!(go_duration("1.5s", "d").ok(), Some(1_500_000_000));
        assert_eq!(go_duration("250us", "d").ok(), Some(250_000));
        assert!(go_duration("fast", "d").is_err());
        assert!(go_duration("10", "d").is_err());
    }

    #[test]
    fn tags_are_typed_like_jaeger() {
        let v = |value| Some(AnyValue { value: Some(value) });
        assert_eq!(
            tag(
                "big",
                v(any_value::Value::IntValue(9_223_372_036_854_775_222)).as_ref()
            ),
            json!({"key": "big", "type": "int64", "value": "9223372036854775222"})
        );
        assert_eq!(
            tag("n", v(any_value::Value::IntValue(23456)).as_ref()),
            json!({"key": "n", "type": "int64", "value": 23456})
        );
        assert_eq!(
            tag(
                "blob",
                v(any_value::Value::BytesValue(vec![0, 0, 0x30, 0x39])).as_ref()
            ),
            json!({"key": "blob", "type": "binary", "value": "AAAwOQ=="})
        );
        assert_eq!(
            tag("t", v(any_value::Value::DoubleValue(72.5)).as_ref()),
            json!({"key": "t", "type": "float64", "value": 72.5})
        );
    }
}
