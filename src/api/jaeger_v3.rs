//! Jaeger query API v3 over HTTP, as Jaeger v2's own gateway serves it and as the Jaeger UI
//! (2.15 and later for services and operations, 2.19 and later for search) calls it:
//!
//! - `GET /api/v3/services` → `{"services": [...]}`
//! - `GET /api/v3/operations?service=&spanKind=` → `{"operations": [{"name", "spanKind"}]}`
//! - `GET /api/v3/traces/{trace_id}` and `GET /api/v3/traces?query.…` → `{"result": TracesData}`
//!   in OTLP JSON; weft's logs of each span are among that span's events
//! - `GET /api/v3/trace-summaries?query.…` → `{"summaries": [...]}`, what the UI's search lists
//!
//! Search parameters take Jaeger's camelCase names (`query.serviceName`, `query.startTimeMin`,
//! `query.searchDepth`, …) and its older snake_case ones. Errors are Jaeger's
//! `{"error": {"httpCode", "message"}}`. v3's answers have no place for a partial answer's
//! errors, so on a search node the ingest nodes that did not answer are named in a
//! `Weft-Missing-Nodes` header.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, TracesData};
use serde::Serialize;
use weft_index::{LogRow, TraceSearch, TraceSummary};

use super::jaeger::{log_fields, skew_warning, string_value};
use super::{ApiError, ApiState, authorization};
use crate::query::requests::{SpanFilters, catalog_range, trace_id};
use crate::query::skew::adjusted;
use crate::query::traces::{Trace, not_found_message};

/// The ingest nodes that did not answer, as a `Weft-Missing-Nodes` header (none when all
/// did).
pub(crate) struct MissingNodes(Vec<String>);

impl axum::response::IntoResponseParts for MissingNodes {
    type Error = std::convert::Infallible;

    fn into_response_parts(
        self,
        mut parts: axum::response::ResponseParts,
    ) -> Result<axum::response::ResponseParts, Self::Error> {
        // Node IDs are the operator's names; one that is not a valid header value is left
        // out rather than failing the answer.
        if let Ok(value) = axum::http::HeaderValue::from_str(&self.0.join(", "))
            && !self.0.is_empty()
        {
            parts.headers_mut().insert("weft-missing-nodes", value);
        }
        Ok(parts)
    }
}

/// Traces a search returns when it names no depth (Jaeger's default).
const DEFAULT_SEARCH_DEPTH: usize = 100;
/// The most a search may ask for (the Jaeger UI's own limit).
const MAX_SEARCH_DEPTH: usize = 1500;

/// Jaeger's HTTP error body.
#[derive(Debug, Serialize)]
pub(crate) struct V3Error {
    error: V3ErrorDetails,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct V3ErrorDetails {
    http_code: u16,
    message: String,
}

impl V3Error {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        V3Error {
            error: V3ErrorDetails {
                http_code: status.as_u16(),
                message: message.into(),
            },
        }
    }

    fn malformed(name: &str, reason: impl std::fmt::Display) -> Self {
        V3Error::new(
            StatusCode::BAD_REQUEST,
            format!("malformed parameter {name}: {reason}"),
        )
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.error.http_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        super::error::with_retry_after((status, Json(self)).into_response())
    }
}

impl From<ApiError> for V3Error {
    fn from(error: ApiError) -> Self {
        V3Error::new(error.status(), error.public_message())
    }
}

impl From<crate::query::Error> for V3Error {
    fn from(error: crate::query::Error) -> Self {
        ApiError::from(error).into()
    }
}

/// `GET /api/v3/services`.
#[derive(Debug, Serialize)]
pub(crate) struct ServicesResponse {
    services: Vec<String>,
}

/// One operation: a span name with its kind, lowercase (`server`, `client`, …).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Operation {
    name: String,
    span_kind: String,
}

/// `GET /api/v3/operations`.
#[derive(Debug, Serialize)]
pub(crate) struct OperationsResponse {
    operations: Vec<Operation>,
}

/// `GET /api/v3/traces` and `/api/v3/traces/{id}`: OTLP JSON in Jaeger's `result` envelope.
#[derive(Debug, Serialize)]
pub(crate) struct TracesResponse {
    result: TracesData,
}

/// One service of a trace summary.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceSummary {
    name: String,
    span_count: usize,
    error_span_count: usize,
}

/// One trace as the UI's search lists it. Counts are sent even when zero: the UI hides a
/// column no row has.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TraceSummaryV3 {
    trace_id: String,
    root_service_name: String,
    root_operation_name: String,
    /// int64 in proto3 JSON: decimal strings.
    min_start_time_unix_nano: String,
    max_end_time_unix_nano: String,
    span_count: usize,
    error_span_count: usize,
    orphan_span_count: usize,
    services: Vec<ServiceSummary>,
}

/// `GET /api/v3/trace-summaries`.
#[derive(Debug, Serialize)]
pub(crate) struct TraceSummariesResponse {
    summaries: Vec<TraceSummaryV3>,
}

impl From<TraceSummary> for TraceSummaryV3 {
    fn from(s: TraceSummary) -> Self {
        TraceSummaryV3 {
            trace_id: hex::encode(s.trace_id),
            root_service_name: s.root_service.unwrap_or_default(),
            root_operation_name: s.root_name.unwrap_or_default(),
            min_start_time_unix_nano: s.start_time_unix_nano.to_string(),
            max_end_time_unix_nano: (s.start_time_unix_nano + s.duration_ns).to_string(),
            span_count: s.span_count,
            error_span_count: s.error_count,
            orphan_span_count: s.orphan_count,
            services: s
                .spans_by_service
                .into_iter()
                .map(|(name, (spans, errors))| ServiceSummary {
                    name,
                    span_count: spans,
                    error_span_count: errors,
                })
                .collect(),
        }
    }
}

pub(crate) async fn services(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<(MissingNodes, Json<ServicesResponse>), V3Error> {
    let found = state
        .query
        .traced_services(
            catalog_range(None, None)?,
            authorization(&headers).as_deref(),
        )
        .await?;
    Ok((
        MissingNodes(found.missing_nodes),
        Json(ServicesResponse {
            services: found.value,
        }),
    ))
}

pub(crate) async fn operations(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<(MissingNodes, Json<OperationsResponse>), V3Error> {
    let service = params
        .get("service")
        .filter(|s| !s.is_empty())
        .cloned()
        .ok_or_else(|| V3Error::new(StatusCode::BAD_REQUEST, "parameter service is required"))?;
    let wanted = first(&params, "spanKind", "span_kind").map(|(kind, _)| kind);
    // Jaeger names a span of unspecified kind "internal".
    let found = state
        .query
        .operation_kinds(
            &service,
            wanted,
            "internal",
            authorization(&headers).as_deref(),
        )
        .await?;
    let (found, missing) = (found.value, found.missing_nodes);
    let operations = found
        .into_iter()
        .map(|(name, span_kind)| Operation { name, span_kind })
        .collect();
    Ok((
        MissingNodes(missing),
        Json(OperationsResponse { operations }),
    ))
}

/// The value of a parameter under its canonical name, else its older alias, with the name used.
fn first<'a>(
    params: &'a HashMap<String, String>,
    canonical: &'static str,
    deprecated: &'static str,
) -> Option<(&'a str, &'static str)> {
    [canonical, deprecated].into_iter().find_map(|name| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .map(|v| (v, name))
    })
}

fn rfc3339(value: &str, name: &str) -> Result<u64, V3Error> {
    weft_index::text::rfc3339_unix_nano(value).map_err(|why| V3Error::malformed(name, why))
}

fn boolean(value: &str, name: &str) -> Result<bool, V3Error> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(V3Error::malformed(
            name,
            format!("'{value}' is not a boolean"),
        )),
    }
}

/// A duration as the UI sends what the user typed: Go's form (`1.2s`, `100ms`), a space
/// before the unit allowed.
fn duration(value: &str, name: &str) -> Result<u64, V3Error> {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    weft_index::text::go_duration_ns(&compact).map_err(|_| {
        V3Error::malformed(
            name,
            format!("'{value}' is not a duration such as 1.2s, 100ms or 500us"),
        )
    })
}

/// A search's parameters: both start-time bounds are required, as in Jaeger.
fn parse_search(params: &HashMap<String, String>) -> Result<TraceSearch, V3Error> {
    let (min, max) = match (
        first(params, "query.startTimeMin", "query.start_time_min"),
        first(params, "query.startTimeMax", "query.start_time_max"),
    ) {
        (Some(min), Some(max)) => (rfc3339(min.0, min.1)?, rfc3339(max.0, max.1)?),
        _ => {
            return Err(V3Error::new(
                StatusCode::BAD_REQUEST,
                "query.startTimeMin and query.startTimeMax are required",
            ));
        }
    };
    if min >= max {
        return Err(V3Error::new(
            StatusCode::BAD_REQUEST,
            "query.startTimeMin must be before query.startTimeMax",
        ));
    }
    let tags = match params.get("query.attributes").filter(|a| !a.is_empty()) {
        None => BTreeMap::new(),
        Some(text) => serde_json::from_str::<BTreeMap<String, String>>(text).map_err(|e| {
            V3Error::malformed(
                "query.attributes",
                format!("a JSON object of strings such as {{\"http.status_code\":\"500\"}}: {e}"),
            )
        })?,
    };
    let depth = match first(params, "query.searchDepth", "query.search_depth")
        .or_else(|| first(params, "query.num_traces", "query.num_traces"))
    {
        None => DEFAULT_SEARCH_DEPTH,
        Some((text, name)) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_SEARCH_DEPTH).contains(n))
            .ok_or_else(|| {
                V3Error::malformed(
                    name,
                    format!("'{text}' is not a number from 1 to {MAX_SEARCH_DEPTH}"),
                )
            })?,
    };
    if let Some((raw, name)) = first(params, "query.rawTraces", "query.raw_traces") {
        boolean(raw, name)?;
    }
    let filters = SpanFilters {
        service: first(params, "query.serviceName", "query.service_name").map(|(v, _)| v),
        operation: first(params, "query.operationName", "query.operation_name").map(|(v, _)| v),
        tags,
        span_min_duration_ns: first(params, "query.durationMin", "query.duration_min")
            .map(|(v, name)| duration(v, name))
            .transpose()?,
        span_max_duration_ns: first(params, "query.durationMax", "query.duration_max")
            .map(|(v, name)| duration(v, name))
            .transpose()?,
        ..SpanFilters::default()
    };
    Ok(TraceSearch {
        query: filters.query()?,
        start_unix_nano: min,
        end_unix_nano: max,
        min_duration_ns: None,
        max_duration_ns: None,
        limit: depth,
    })
}

pub(crate) async fn trace_summaries(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<(MissingNodes, Json<TraceSummariesResponse>), V3Error> {
    let search = parse_search(&params)?;
    let found = state
        .query
        .find_traces(search, authorization(&headers).as_deref())
        .await?;
    Ok((
        MissingNodes(found.missing_nodes),
        Json(TraceSummariesResponse {
            summaries: found.value.traces.into_iter().map(Into::into).collect(),
        }),
    ))
}

fn no_traces() -> V3Error {
    V3Error::new(StatusCode::NOT_FOUND, "No traces found")
}

pub(crate) async fn find_traces(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<(MissingNodes, Json<TracesResponse>), V3Error> {
    let search = parse_search(&params)?;
    let found = state
        .query
        .whole_traces(search, authorization(&headers).as_deref())
        .await?;
    let (found, missing) = (found.value, found.missing_nodes);
    let resource_spans: Vec<ResourceSpans> = found
        .iter()
        .flat_map(|(_, trace)| otlp_resource_spans(trace))
        .collect();
    if resource_spans.is_empty() {
        return Err(no_traces());
    }
    Ok((
        MissingNodes(missing),
        Json(TracesResponse {
            result: TracesData { resource_spans },
        }),
    ))
}

pub(crate) async fn get_trace(
    State(state): State<ApiState>,
    Path(text): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Result<(MissingNodes, Json<TracesResponse>), V3Error> {
    let id = trace_id(&text).map_err(|e| V3Error::malformed("trace_id", e.public_message()))?;
    // The bounds only narrow where Jaeger's storage looks; weft finds a trace at any age, so
    // they are checked and otherwise not needed.
    for (canonical, deprecated) in [("startTime", "start_time"), ("endTime", "end_time")] {
        if let Some((value, name)) = first(&params, canonical, deprecated) {
            rfc3339(value, name)?;
        }
    }
    if let Some((raw, name)) = first(&params, "rawTraces", "raw_traces") {
        boolean(raw, name)?;
    }
    let found = state
        .query
        .trace(id, authorization(&headers).as_deref())
        .await?;
    let (trace, missing) = (found.value, found.missing_nodes);
    if trace.rows.spans.is_empty() {
        if missing.is_empty() {
            return Err(no_traces());
        }
        let message = not_found_message(id, &missing);
        return Err(V3Error::new(StatusCode::NOT_FOUND, message));
    }
    Ok((
        MissingNodes(missing),
        Json(TracesResponse {
            result: TracesData {
                resource_spans: otlp_resource_spans(&trace),
            },
        }),
    ))
}

/// A weft log record as an event of its span, named by its event ID (or "log"), as Jaeger
/// shows a span's logs.
fn log_event(log: &LogRow) -> Event {
    Event {
        time_unix_nano: log.time_unix_nano,
        name: if log.event.is_empty() {
            "log".into()
        } else {
            log.event.clone()
        },
        attributes: log_fields(log),
        dropped_attributes_count: 0,
    }
}

/// One trace's spans in OTLP's shape: grouped by resource, then by instrumentation scope.
/// The times are adjusted for clock skew (`crate::query::skew`); a span that moved carries the
/// attribute `weft.clock_adjustment_ns`, and its warning in `@jaeger@warnings` (a list of
/// strings), the attribute where Jaeger v2 keeps a span's warnings.
fn otlp_resource_spans(Trace { rows, skew }: &Trace) -> Vec<ResourceSpans> {
    let (spans, logs) = (&rows.spans, &rows.logs);
    let mut logs_by_span: HashMap<&[u8], Vec<&LogRow>> = HashMap::new();
    for log in logs {
        logs_by_span
            .entry(log.span_id.as_slice())
            .or_default()
            .push(log);
    }
    let mut out: Vec<ResourceSpans> = Vec::new();
    // Resources in order of first appearance, each with its service and attributes.
    let mut resource_keys: Vec<(&str, &[KeyValue])> = Vec::new();
    for span in spans {
        let key = (span.service.as_str(), span.resource.as_slice());
        let at = match resource_keys.iter().position(|k| *k == key) {
            Some(at) => at,
            None => {
                let mut attributes = span.resource.to_vec();
                if !attributes.iter().any(|kv| kv.key == "service.name") {
                    attributes.insert(0, string_value("service.name", &span.service));
                }
                resource_keys.push(key);
                out.push(ResourceSpans {
                    resource: Some(Resource {
                        attributes,
                        ..Resource::default()
                    }),
                    scope_spans: Vec::new(),
                    schema_url: String::new(),
                });
                out.len() - 1
            }
        };
        let scope = InstrumentationScope {
            name: span.scope_name.clone(),
            version: span.scope_version.clone(),
            attributes: span.scope_attributes.to_vec(),
            dropped_attributes_count: 0,
        };
        let scope_spans = &mut out[at].scope_spans;
        let at = match scope_spans
            .iter()
            .position(|s| s.scope.as_ref() == Some(&scope))
        {
            Some(at) => at,
            None => {
                scope_spans.push(ScopeSpans {
                    scope: Some(scope),
                    spans: Vec::new(),
                    schema_url: String::new(),
                });
                scope_spans.len() - 1
            }
        };
        let adjustment = skew.adjustment(&span.service);
        let mut events = span.events.clone();
        for event in &mut events {
            event.time_unix_nano = adjusted(event.time_unix_nano, adjustment);
        }
        if let Some(own) = logs_by_span.get(span.span_id.as_slice()) {
            events.extend(own.iter().map(|l| {
                let mut event = log_event(l);
                event.time_unix_nano = adjusted(l.time_unix_nano, skew.adjustment(&l.service));
                event
            }));
            events.sort_by_key(|e| e.time_unix_nano);
        }
        let mut attributes = span.attributes.clone();
        if adjustment != 0 {
            attributes.push(string_value(
                "weft.clock_adjustment_ns",
                &adjustment.to_string(),
            ));
            let warning = skew_warning(&span.service, skew.offset(&span.service));
            attributes.push(KeyValue {
                key: "@jaeger@warnings".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::StringValue(warning)),
                        }],
                    })),
                }),
                ..KeyValue::default()
            });
        }
        scope_spans[at].spans.push(Span {
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            trace_state: span.trace_state.clone(),
            parent_span_id: span.parent_span_id.clone(),
            flags: span.flags,
            name: span.name.clone(),
            kind: span.kind,
            start_time_unix_nano: adjusted(span.start_time_unix_nano, adjustment),
            end_time_unix_nano: adjusted(span.end_time_unix_nano, adjustment),
            attributes,
            dropped_attributes_count: span.dropped_attributes_count,
            events,
            dropped_events_count: 0,
            links: span.links.clone(),
            dropped_links_count: 0,
            status: Some(Status {
                message: span.status_message.clone(),
                code: span.status_code,
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn search_parameters_in_both_spellings() {
        let camel = parse_search(&params(&[
            ("query.serviceName", "checkout"),
            ("query.startTimeMin", "2026-08-18T05:08:24.123Z"),
            ("query.startTimeMax", "2026-08-18T06:08:24.123Z"),
            ("query.searchDepth", "20"),
            ("query.durationMin", "100 ms"),
        ]))
        .unwrap();
        let snake = parse_search(&params(&[
            ("query.service_name", "checkout"),
            ("query.start_time_min", "2026-08-18T05:08:24.123Z"),
            ("query.start_time_max", "2026-08-18T06:08:24.123Z"),
            ("query.num_traces", "20"),
            ("query.duration_min", "100ms"),
        ]))
        .unwrap();
        assert_eq!(camel.query, snake.query);
        assert_eq!(
            (camel.start_unix_nano, camel.end_unix_nano, camel.limit),
            (1_787_029_704_123_000_000, 1_787_033_304_123_000_000, 20)
        );
        assert_eq!(
            (snake.start_unix_nano, snake.end_unix_nano, snake.limit),
            (camel.start_unix_nano, camel.end_unix_nano, 20)
        );
    }

    #[test]
    fn bad_search_parameters_say_which_and_why() {
        let message = |pairs: &[(&str, &str)]| match parse_search(&params(pairs)) {
            Err(e) => (e.error.http_code, e.error.message),
            Ok(_) => panic!("accepted {pairs:?}"),
        };
        let window = [
            ("query.startTimeMin", "2026-08-18T05:00:00Z"),
            ("query.startTimeMax", "2026-08-18T06:00:00Z"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut all = window.to_vec();
            all.push(extra);
            message(&all)
        };
        assert_eq!(
            message(&[("query.serviceName", "a")]).1,
            "query.startTimeMin and query.startTimeMax are required"
        );
        assert!(
            with(("query.durationMin", "fast"))
                .1
                .contains("query.durationMin")
        );
        assert!(
            with(("query.searchDepth", "0"))
                .1
                .contains("query.searchDepth")
        );
        assert!(
            with(("query.attributes", "{\"a\":1}"))
                .1
                .contains("query.attributes")
        );
        assert!(
            with(("query.rawTraces", "maybe"))
                .1
                .contains("query.rawTraces")
        );
        let (code, reversed) = message(&[
            ("query.startTimeMin", "2026-08-18T06:00:00Z"),
            ("query.startTimeMax", "2026-08-18T05:00:00Z"),
        ]);
        assert_eq!(
            (code, reversed.as_str()),
            (400, "query.startTimeMin must be before query.startTimeMax")
        );
        assert!(
            message(&[
                ("query.startTimeMin", "yesterday"),
                ("query.startTimeMax", "2026-08-18T05:00:00Z"),
            ])
            .1
            .starts_with("malformed parameter query.startTimeMin")
        );
    }
}
