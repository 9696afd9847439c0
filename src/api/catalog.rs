//! `GET /api/v1/logs/histogram`, `GET /api/v1/services` and `GET /api/v1/events`: counts from
//! the index's fast fields, for charts and catalogs.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Map, Value, json};
use weft_index::aggregate::BANDS;
use weft_index::query::parse;

use super::params::{limit, parse_time, time_range};
use super::{ApiError, ApiState};
use crate::pipeline::now_unix_nano;
use crate::severity::rules::Rule;

const DEFAULT_BUCKETS: usize = 60;
const MAX_BUCKETS: usize = 1000;

/// Catalogs cover everything retained unless a range is given.
fn catalog_range(params: &HashMap<String, String>) -> Result<(u64, u64), ApiError> {
    let start = params
        .get("start")
        .map(|s| parse_time("start", s))
        .transpose()?
        .unwrap_or(0);
    let end = params
        .get("end")
        .map(|e| parse_time("end", e))
        .transpose()?
        .unwrap_or_else(|| now_unix_nano().saturating_add(3_600_000_000_000));
    if start >= end {
        return Err(ApiError::BadRequest("start must be before end".into()));
    }
    Ok((start, end))
}

pub(crate) async fn histogram(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let query = parse(params.get("q").map_or("", String::as_str))?;
    if let Some(q) = &query {
        weft_index::query::compile(q, weft_index::Signal::Logs)?;
    }
    let (start, end) = time_range(
        params.get("start").map(String::as_str),
        params.get("end").map(String::as_str),
    )?;
    let buckets = limit(
        params.get("buckets").map(String::as_str),
        DEFAULT_BUCKETS,
        MAX_BUCKETS,
    )?;
    let found = state
        .run_query(move |store, _| Ok(store.log_histogram(query.as_ref(), start, end, buckets)?))
        .await?;
    let width = (end - start).div_ceil(buckets as u64).max(1);
    let buckets: Vec<Value> = found
        .iter()
        .map(|b| {
            let counts: Map<String, Value> = BANDS
                .iter()
                .zip(b.counts)
                .map(|(band, n)| (band.to_string(), json!(n)))
                .collect();
            json!({
                "start_unix_nano": b.start_unix_nano.to_string(),
                "counts": counts,
                "total": b.counts.iter().sum::<u64>(),
            })
        })
        .collect();
    Ok(Json(json!({
        "bucket_ns": width.to_string(),
        "bands": BANDS,
        "buckets": buckets,
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}

pub(crate) async fn services(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (start, end) = catalog_range(&params)?;
    let found = state
        .run_query(move |store, _| Ok(store.services(start, end)?))
        .await?;
    let services: Vec<Value> = found
        .into_iter()
        .map(|(name, s)| {
            json!({
                "service": name,
                "span_count": s.spans,
                "log_count": s.logs,
                "last_seen_unix_nano": s.last_seen_unix_nano.to_string(),
            })
        })
        .collect();
    Ok(Json(json!({ "services": services })))
}

pub(crate) async fn events(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (start, end) = catalog_range(&params)?;
    let service = params.get("service").filter(|s| !s.is_empty()).cloned();
    let found = state
        .run_query(move |store, _| Ok(store.events(service.as_deref(), start, end)?))
        .await?;
    let mut events: Vec<(String, weft_index::aggregate::EventStats)> = found.into_iter().collect();
    events.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
    let rules = state.severity.rules();
    let now = state.severity.now();
    let events: Vec<Value> = events
        .into_iter()
        .map(|(event, s)| {
            json!({
                "event": event,
                "services": s.services,
                "count": s.count,
                "first_seen_unix_nano": s.first_seen_unix_nano.to_string(),
                "last_seen_unix_nano": s.last_seen_unix_nano.to_string(),
                "severities": s.severities,
                "rule": rule_in_force(&rules, &event, now)
                    .map_or(Value::Null, |r| state.severity.rule_json(r)),
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}

/// The newest unexpired rule that names this event ID.
fn rule_in_force<'a>(rules: &'a [Rule], event: &str, now: u64) -> Option<&'a Rule> {
    rules
        .iter()
        .filter(|r| r.selector.event.as_deref() == Some(event) && r.expires_at > now)
        .max_by_key(|r| r.created_at)
}
