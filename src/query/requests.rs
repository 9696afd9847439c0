//! The query service's typed requests, built from text parameters as every front end receives
//! them, and the bounds of what one request may ask. HTTP, gRPC and Jaeger's APIs parse their
//! parameters with these, so each parameter accepts the same text everywhere (the values
//! themselves through `weft_index::text`).

use std::collections::BTreeMap;

use weft_index::query::{CmpOp, Expr, parse};
use weft_index::{LogCursor, LogSearch, Signal, TraceSearch, text};

use super::Error;
use crate::clock::now_unix_nano;

/// Page sizes: the default when a request names none, and the most it may ask for.
pub mod limits {
    /// Log records per page by default.
    pub const DEFAULT_LOGS: usize = 100;
    /// Most log records per page.
    pub const MAX_LOGS: usize = 1000;
    /// Traces per search by default.
    pub const DEFAULT_TRACES: usize = 20;
    /// Most traces per search (weft's API; Jaeger's has its own).
    pub const MAX_TRACES: usize = 500;
    /// Most spans and log records one trace answer carries.
    pub const MAX_TRACE_SPANS: usize = 10_000;
    pub const MAX_TRACE_LOGS: usize = 50_000;
}

/// Default look-back of a query without `start`.
pub const DEFAULT_RANGE_NANOS: u64 = 3_600 * 1_000_000_000;

/// A time parameter `name`: RFC 3339 or unix nanoseconds.
pub fn time(name: &str, value: &str) -> Result<u64, Error> {
    text::time_unix_nano(value).map_err(|why| Error::BadRequest(format!("{name} {why}")))
}

/// `[start, end)` from optional parameters; the default is the hour before now.
pub fn time_range(start: Option<&str>, end: Option<&str>) -> Result<(u64, u64), Error> {
    // `end` is exclusive, so a record stamped "now" is still inside the default range.
    let end = match end {
        Some(e) => time("end", e)?,
        None => now_unix_nano() + 1,
    };
    let start = match start {
        Some(s) => time("start", s)?,
        None => end.saturating_sub(DEFAULT_RANGE_NANOS),
    };
    if start >= end {
        return Err(Error::BadRequest(format!(
            "start ({start}) must be before end ({end})"
        )));
    }
    Ok((start, end))
}

/// A catalog's range: from `start` (default: the beginning) to `end` (default: an hour past
/// now, so records slightly ahead of weft's clock are listed).
pub fn catalog_range(start: Option<&str>, end: Option<&str>) -> Result<(u64, u64), Error> {
    let start = start.map(|s| time("start", s)).transpose()?.unwrap_or(0);
    let end = end
        .map(|e| time("end", e))
        .transpose()?
        .unwrap_or_else(|| now_unix_nano().saturating_add(DEFAULT_RANGE_NANOS));
    if start >= end {
        return Err(Error::BadRequest("start must be before end".into()));
    }
    Ok((start, end))
}

/// A count parameter `name`: `default` when absent, from 1 to `max`.
pub fn count(name: &str, value: Option<&str>, default: usize, max: usize) -> Result<usize, Error> {
    match value {
        None => Ok(default),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Error::BadRequest(format!(
                "{name} must be a number from 1 to {max}, not '{text}'"
            ))),
        },
    }
}

/// A page size: `default` when absent, at most `max`.
pub fn limit(value: Option<&str>, default: usize, max: usize) -> Result<usize, Error> {
    count("limit", value, default, max)
}

/// A `cursor` parameter: empty or absent for the first page.
pub fn cursor(value: Option<&str>) -> Result<Option<LogCursor>, Error> {
    match value.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(text) => LogCursor::decode(text).map(Some).ok_or_else(|| {
            Error::BadRequest("cursor is not one weft returned as next_cursor".into())
        }),
    }
}

/// A duration parameter `name` in nanoseconds, in weft's syntax (`250ms`, `1.5s`, `2m`, or
/// plain nanoseconds).
pub fn duration_ns(name: &str, value: &str) -> Result<u64, Error> {
    text::duration_ns(value).map_err(|why| Error::BadRequest(format!("{name} {why}")))
}

/// A trace ID parameter that names a trace: 32 hex characters, not all zero.
pub fn trace_id(value: &str) -> Result<[u8; 16], Error> {
    text::trace_id(value)
        .and_then(text::nonzero)
        .map_err(|why| Error::BadRequest(format!("trace ID {why}")))
}

/// A log search from its parameters as text, with the API's defaults and limits.
pub fn log_search(
    q: &str,
    start: Option<&str>,
    end: Option<&str>,
    page_size: Option<&str>,
    page: Option<&str>,
) -> Result<LogSearch, Error> {
    let query = parse(q)?;
    let (start, end) = time_range(start, end)?;
    Ok(LogSearch {
        query,
        start_unix_nano: start,
        end_unix_nano: end,
        limit: limit(page_size, limits::DEFAULT_LOGS, limits::MAX_LOGS)?,
        cursor: cursor(page)?,
    })
}

/// What a trace search selects, as each front end words it: weft's `service`, `operation`,
/// `status=error` and query text; Jaeger's service, operation, tags and span durations. A
/// trace is found when one of its spans matches all of them.
#[derive(Debug, Default)]
pub struct SpanFilters<'a> {
    /// The span's service.
    pub service: Option<&'a str>,
    /// The span's name.
    pub operation: Option<&'a str>,
    /// Spans whose status is error only.
    pub errors_only: bool,
    /// Tags (Jaeger v1) or attributes (v3) as text: a span matches on its own attributes or
    /// its resource's, as in Jaeger; `error=true` means the error status.
    pub tags: BTreeMap<String, String>,
    /// Jaeger's duration bounds, on the span (weft's are on the whole trace:
    /// [`TraceSearch::min_duration_ns`]).
    pub span_min_duration_ns: Option<u64>,
    pub span_max_duration_ns: Option<u64>,
    /// weft's query text, on spans.
    pub q: Option<&'a str>,
}

impl SpanFilters<'_> {
    /// The filters as one query on spans, checked (a mistake is a 400, not an empty answer).
    pub fn query(&self) -> Result<Option<Expr>, Error> {
        let mut parts = Vec::new();
        if let Some(service) = self.service.filter(|s| !s.is_empty()) {
            parts.push(Expr::filter("service", CmpOp::Eq, service));
        }
        if let Some(operation) = self.operation.filter(|o| !o.is_empty()) {
            parts.push(Expr::filter("name", CmpOp::Eq, operation));
        }
        let error_tag = self.tags.get("error").is_some_and(|v| v == "true");
        if self.errors_only || error_tag {
            parts.push(Expr::filter("status", CmpOp::Eq, "error"));
        }
        for (key, value) in &self.tags {
            if key == "error" && value == "true" {
                continue;
            }
            parts.push(Expr::Or(vec![
                Expr::filter(&format!("attr.{key}"), CmpOp::Eq, value),
                Expr::filter(&format!("resource.{key}"), CmpOp::Eq, value),
            ]));
        }
        if let Some(ns) = self.span_min_duration_ns {
            parts.push(Expr::filter("duration", CmpOp::Ge, &ns.to_string()));
        }
        if let Some(ns) = self.span_max_duration_ns {
            parts.push(Expr::filter("duration", CmpOp::Le, &ns.to_string()));
        }
        if let Some(expr) = parse(self.q.unwrap_or("")).map_err(Error::span_query)? {
            parts.push(expr);
        }
        let query = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Expr::And(parts)),
        };
        if let Some(q) = &query {
            weft_index::query::compile(q, Signal::Spans).map_err(Error::span_query)?;
        }
        Ok(query)
    }
}

/// weft's `status` parameter of a trace search: `error`, or `any` (the default).
pub fn errors_only(status: Option<&str>) -> Result<bool, Error> {
    match status.map(str::trim) {
        None | Some("") | Some("any") => Ok(false),
        Some("error") => Ok(true),
        Some(other) => Err(Error::BadRequest(format!(
            "status must be 'error' or 'any', not '{other}'"
        ))),
    }
}

/// weft's trace search from its parameters as text: spans selected by `filters` in `start` to
/// `end` (default the last hour), whole traces of `min_duration` to `max_duration`, at most
/// `limit` of them.
pub struct TraceSearchParams<'a> {
    pub filters: SpanFilters<'a>,
    pub start: Option<&'a str>,
    pub end: Option<&'a str>,
    pub min_duration_ns: Option<u64>,
    pub max_duration_ns: Option<u64>,
    pub limit: Option<&'a str>,
}

/// A validated trace search with the API's defaults and limits.
pub fn trace_search(p: TraceSearchParams<'_>) -> Result<TraceSearch, Error> {
    let query = p.filters.query()?;
    let (start, end) = time_range(p.start, p.end)?;
    Ok(TraceSearch {
        query,
        start_unix_nano: start,
        end_unix_nano: end,
        min_duration_ns: p.min_duration_ns,
        max_duration_ns: p.max_duration_ns,
        limit: limit(p.limit, limits::DEFAULT_TRACES, limits::MAX_TRACES)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_limits() {
        let (s, e) = time_range(None, Some("7200000000000")).unwrap();
        assert_eq!((s, e), (3_600_000_000_000, 7_200_000_000_000));
        assert!(time_range(Some("5"), Some("5")).is_err());
        assert!(time_range(Some("yesterday"), None).is_err());
        assert_eq!(limit(None, 100, 1000).unwrap(), 100);
        assert_eq!(limit(Some("7"), 100, 1000).unwrap(), 7);
        assert!(limit(Some("0"), 100, 1000).is_err());
        assert!(limit(Some("1001"), 100, 1000).is_err());
    }

    #[test]
    fn trace_ids_name_a_trace() {
        assert!(trace_id(" 5b8efff798038103d269b633813fc60c").is_ok());
        assert!(trace_id(&"0".repeat(32)).is_err());
        assert!(trace_id("5b8e").is_err());
    }

    /// Jaeger's tags and weft's filters make the same query.
    #[test]
    fn span_filters_build_one_query() {
        let filters = SpanFilters {
            service: Some("checkout"),
            tags: BTreeMap::from([
                ("error".to_string(), "true".to_string()),
                ("http.status_code".to_string(), "500".to_string()),
            ]),
            span_min_duration_ns: Some(250_000_000),
            ..SpanFilters::default()
        };
        let weft = SpanFilters {
            service: Some("checkout"),
            errors_only: true,
            q: Some(
                "(attr.http.status_code:500 OR resource.http.status_code:500) duration>=250000000",
            ),
            ..SpanFilters::default()
        };
        let (a, b) = (filters.query().unwrap(), weft.query().unwrap());
        assert!(a.is_some() && b.is_some());
        assert!(SpanFilters::default().query().unwrap().is_none());
        let bad = SpanFilters {
            q: Some("severity:ERROR"),
            ..SpanFilters::default()
        };
        assert!(matches!(
            bad.query(),
            Err(Error::BadQuery(_, Signal::Spans))
        ));
    }
}
