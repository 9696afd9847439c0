//! Jaeger query API v1 (JSON), so Grafana's Jaeger data source and the Jaeger UI work against
//! weft: `/api/services`, `/api/services/{service}/operations`, `/api/operations`,
//! `/api/traces`, `/api/traces/{id}` and `/api/dependencies`, in Jaeger's envelope `{data,
//! total, limit, offset, errors}`. weft adds the logs of each span to that span's `logs`, so a
//! Jaeger UI shows them in place. An adapter: the answers come from `crate::query`.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde::Serialize;
use serde_json::{Value, json};
use weft_index::model::{SharedAttributes, any_value_to_json};
use weft_index::{LogRow, SpanRow, TraceSearch, text};

use super::{ApiError, ApiState, authorization};
use crate::clock::now_unix_nano;
use crate::query::requests::{SpanFilters, catalog_range, trace_id};
use crate::query::service_map::DEFAULT_LOOKBACK_NANOS as DEFAULT_DEPENDENCIES_LOOKBACK;
use crate::query::skew::adjusted;
use crate::query::traces::{Trace, not_found_message};

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

impl From<crate::query::Error> for JaegerError {
    fn from(error: crate::query::Error) -> Self {
        ApiError::from(error).into()
    }
}

pub(crate) type JaegerResult = Result<Json<Value>, JaegerError>;

/// A time parameter in `unit` since the epoch (Jaeger's microseconds or milliseconds), in
/// nanoseconds.
fn epoch(text: &str, name: &str, unit_nanos: u64, unit: &str) -> Result<u64, JaegerError> {
    text::epoch_units(text, unit_nanos, unit)
        .map_err(|why| JaegerError::bad_request(format!("{name} {why}")))
}

/// A duration parameter in Go's form (`100ms`, `1m30s`), in nanoseconds.
pub(crate) fn go_duration(value: &str, name: &str) -> Result<u64, JaegerError> {
    text::go_duration_ns(value).map_err(|why| JaegerError::bad_request(format!("{name} {why}")))
}

pub(crate) async fn services(State(state): State<ApiState>, headers: HeaderMap) -> JaegerResult {
    let found = state
        .query
        .traced_services(
            catalog_range(None, None)?,
            authorization(&headers).as_deref(),
        )
        .await?;
    Ok(envelope(
        json!(found.value),
        found.value.len(),
        &found.missing_nodes,
    ))
}

pub(crate) async fn service_operations(
    State(state): State<ApiState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> JaegerResult {
    let found = state
        .query
        .operations(
            &service,
            catalog_range(None, None)?,
            authorization(&headers).as_deref(),
        )
        .await?;
    let names: Vec<&String> = found.value.keys().collect();
    Ok(envelope(json!(names), names.len(), &found.missing_nodes))
}

pub(crate) async fn operations(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> JaegerResult {
    let service = params
        .get("service")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| JaegerError::bad_request("parameter 'service' is required"))?;
    let kind = params.get("spanKind").filter(|k| !k.is_empty());
    let found = state
        .query
        .operation_kinds(
            service,
            kind.map(String::as_str),
            "",
            authorization(&headers).as_deref(),
        )
        .await?;
    let data: Vec<Value> = found
        .value
        .iter()
        .map(|(name, kind)| json!({"name": name, "spanKind": kind}))
        .collect();
    let total = data.len();
    Ok(envelope(Value::Array(data), total, &found.missing_nodes))
}

/// Jaeger's tags parameter: a JSON object whose values are strings (or anything, as text).
fn jaeger_tags(text: Option<&str>) -> Result<BTreeMap<String, String>, JaegerError> {
    let Some(text) = text else {
        return Ok(BTreeMap::new());
    };
    let map: BTreeMap<String, Value> = serde_json::from_str(text).map_err(|e| {
        JaegerError::bad_request(format!(
            "tags must be a JSON object such as {{\"http.status_code\":\"500\"}}: {e}"
        ))
    })?;
    Ok(map
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(s) => (key, s),
            other => (key, other.to_string()),
        })
        .collect())
}

pub(crate) async fn search(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> JaegerResult {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let filters = SpanFilters {
        service: get("service"),
        operation: get("operation"),
        tags: jaeger_tags(get("tags"))?,
        span_min_duration_ns: get("minDuration")
            .map(|d| go_duration(d, "minDuration"))
            .transpose()?,
        span_max_duration_ns: get("maxDuration")
            .map(|d| go_duration(d, "maxDuration"))
            .transpose()?,
        ..SpanFilters::default()
    };
    let end = match get("end") {
        Some(e) => epoch(e, "end", 1000, "microseconds")?,
        None => now_unix_nano().saturating_add(1),
    };
    let start = match get("start") {
        Some(s) => epoch(s, "start", 1000, "microseconds")?,
        None => end.saturating_sub(DEFAULT_LOOKBACK_NANOS),
    };
    let limit = match get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                JaegerError::bad_request(format!("limit must be from 1 to {MAX_LIMIT}"))
            })?,
        None => DEFAULT_LIMIT,
    };
    let search = TraceSearch {
        query: filters.query()?,
        start_unix_nano: start,
        end_unix_nano: end.max(start + 1),
        min_duration_ns: None,
        max_duration_ns: None,
        limit,
    };
    let found = state
        .query
        .whole_traces(search, authorization(&headers).as_deref())
        .await?;
    let traces: Vec<Value> = found
        .value
        .iter()
        .map(|(id, trace)| trace_json(id, trace))
        .collect();
    let total = traces.len();
    Ok(envelope(Value::Array(traces), total, &found.missing_nodes))
}

pub(crate) async fn get_trace(
    State(state): State<ApiState>,
    Path(text): Path<String>,
    headers: HeaderMap,
) -> JaegerResult {
    let id = trace_id(&text)?;
    let found = state
        .query
        .trace(id, authorization(&headers).as_deref())
        .await?;
    let (trace, missing) = (found.value, found.missing_nodes);
    if trace.rows.spans.is_empty() && trace.rows.logs.is_empty() {
        // Jaeger's own words, unless a node that did not answer may hold the trace.
        let message = match missing.is_empty() {
            true => "trace not found".to_string(),
            false => not_found_message(id, &missing),
        };
        return Err(JaegerError(StatusCode::NOT_FOUND, message));
    }
    Ok(envelope(json!([trace_json(&id, &trace)]), 1, &missing))
}

/// One edge of Jaeger's dependency graph.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DependencyLink {
    parent: String,
    child: String,
    call_count: u64,
}

/// Jaeger's envelope around the links.
#[derive(Debug, Serialize)]
pub(crate) struct DependenciesResponse {
    data: Vec<DependencyLink>,
    total: usize,
    limit: usize,
    offset: usize,
    errors: Option<()>,
}

/// `GET /api/dependencies?endTs=<ms since the epoch>&lookback=<ms>[&service=]`: calls whose
/// called span started in `(endTs - lookback, endTs]`; with `service`, those it makes or takes.
pub(crate) async fn dependencies(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<DependenciesResponse>, JaegerError> {
    let get = |k: &str| {
        params
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    let end = match get("endTs") {
        Some(ms) => epoch(ms, "endTs", 1_000_000, "milliseconds")?,
        None => now_unix_nano() / 1_000_000 * 1_000_000,
    }
    .saturating_add(1);
    let lookback = match get("lookback") {
        Some(ms) => epoch(ms, "lookback", 1_000_000, "milliseconds")?,
        None => DEFAULT_DEPENDENCIES_LOOKBACK,
    };
    let start = end.saturating_sub(lookback);
    let found = state
        .query
        .dependencies(
            (start, end),
            get("service"),
            authorization(&headers).as_deref(),
        )
        .await?;
    let data = found
        .value
        .into_iter()
        .map(|(parent, child, call_count)| DependencyLink {
            parent,
            child,
            call_count,
        })
        .collect();
    // Jaeger leaves `total` at 0 in this answer.
    Ok(Json(DependenciesResponse {
        total: 0,
        data,
        limit: 0,
        offset: 0,
        errors: None,
    }))
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

/// A weft log record as a Jaeger span log, at `time` (adjusted for clock skew).
fn log_entry(log: &LogRow, time: u64) -> Value {
    json!({"timestamp": time / 1000, "fields": tags(&log_fields(log))})
}

/// A trace in Jaeger's JSON model.
pub(crate) fn trace_json(trace: &[u8; 16], Trace { rows, skew }: &Trace) -> Value {
    let (trace_id, spans, logs) = (trace, &rows.spans, &rows.logs);
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
        // Jaeger's answer carries the times adjusted for clock skew (the trace's `warnings`
        // say which services moved and by how much).
        let adjustment = skew.adjustment(&span.service);
        let mut span_logs: Vec<(u64, Value)> = span
            .events
            .iter()
            .map(|e| {
                let mut fields = vec![string_tag("event", &e.name)];
                fields.extend(tags(&e.attributes));
                let time = adjusted(e.time_unix_nano, adjustment);
                (time, json!({"timestamp": time / 1000, "fields": fields}))
            })
            .collect();
        if let Some(own) = logs_by_span.get(span.span_id.as_slice()) {
            span_logs.extend(own.iter().map(|l| {
                let time = adjusted(l.time_unix_nano, skew.adjustment(&l.service));
                (time, log_entry(l, time))
            }));
        }
        span_logs.sort_by_key(|(t, _)| *t);
        jaeger_spans.push(json!({
            "traceID": trace_hex,
            "spanID": hex::encode(&span.span_id),
            "operationName": span.name,
            "references": references,
            "startTime": adjusted(span.start_time_unix_nano, adjustment) / 1000,
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
    let warnings: Vec<String> = skew.services().map(|(s, o)| skew_warning(s, o)).collect();
    json!({
        "traceID": trace_hex,
        "spans": jaeger_spans,
        "processes": processes,
        "warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) },
    })
}

/// What a Jaeger UI shows of a service whose spans were moved for clock skew.
pub(crate) fn skew_warning(service: &str, offset_ns: i64) -> String {
    let (way, by) = if offset_ns >= 0 {
        ("ahead", offset_ns.unsigned_abs())
    } else {
        ("behind", offset_ns.unsigned_abs())
    };
    format!(
        "clock skew: {service}'s clock runs {:.3} s {way}; its spans and logs were moved by {:.3} s",
        by as f64 / 1e9,
        -(offset_ns as f64) / 1e9
    )
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
