//! `GET /api/v1/logs/histogram`, `GET /api/v1/services` and `GET /api/v1/events`: counts from
//! the index's fast fields, for charts and catalogs; cluster-wide on a search node
//! (`crate::aggregation`), whose ingest nodes answer `POST /api/v1/internal/aggregate`.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::Value;
use weft_index::aggregate::BANDS;
use weft_index::query::parse;

use super::traces::authorization;
use crate::aggregation::{Aggregation, MAX_BUCKETS, aggregate};

use super::params::{limit, parse_time, time_range};
use super::{ApiError, ApiState};
use crate::pipeline::now_unix_nano;
use crate::query::answers::{
    Completeness, EventView, EventsAnswer, HistogramAnswer, HistogramBucketView, ServiceView,
    ServicesAnswer,
};
use crate::severity::rules::Rule;

const DEFAULT_BUCKETS: usize = 60;

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
    headers: HeaderMap,
) -> Result<Json<HistogramAnswer>, ApiError> {
    let started = Instant::now();
    let q = params.get("q").map_or("", String::as_str);
    if let Some(query) = parse(q)? {
        weft_index::query::compile(&query, weft_index::Signal::Logs)?;
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
    let aggregation = Aggregation::Histogram {
        q: q.to_string(),
        start_unix_nano: start,
        end_unix_nano: end,
        buckets,
    };
    let (found, missing) = aggregate(&state, aggregation, authorization(&headers)).await?;
    let width = (end - start).div_ceil(buckets as u64).max(1);
    let buckets = found
        .histogram_buckets(start, width)
        .iter()
        // What a node adds past the buckets asked for is not counted.
        .take(buckets)
        .map(|b| HistogramBucketView {
            start_unix_nano: b.start_unix_nano.to_string(),
            counts: BANDS.iter().copied().zip(b.counts).collect(),
            total: b.counts.iter().sum(),
        })
        .collect();
    Ok(Json(HistogramAnswer {
        bucket_ns: width.to_string(),
        bands: &BANDS,
        buckets,
        // Ingest nodes that did not answer: their records not yet published are not counted.
        completeness: Completeness::of(missing),
        took_ms: started.elapsed().as_millis() as u64,
    }))
}

pub(crate) async fn services(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<ServicesAnswer>, ApiError> {
    let (start, end) = catalog_range(&params)?;
    let (found, missing) =
        crate::aggregation::services(&state, start, end, authorization(&headers)).await?;
    let services = found
        .into_iter()
        .map(|(name, s)| ServiceView {
            service: name,
            span_count: s.spans,
            log_count: s.logs,
            last_seen_unix_nano: s.last_seen_unix_nano.to_string(),
        })
        .collect();
    Ok(Json(ServicesAnswer {
        services,
        completeness: Completeness::of(missing),
    }))
}

pub(crate) async fn events(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<EventsAnswer>, ApiError> {
    let (start, end) = catalog_range(&params)?;
    let service = params.get("service").filter(|s| !s.is_empty()).cloned();
    let aggregation = Aggregation::Events {
        service,
        start_unix_nano: start,
        end_unix_nano: end,
    };
    let (found, missing) = aggregate(&state, aggregation, authorization(&headers)).await?;
    let mut events: Vec<(String, weft_index::aggregate::EventStats)> =
        found.events.into_iter().collect();
    events.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
    let rules = state.severity.rules();
    let now = state.severity.now();
    let events = events
        .into_iter()
        .map(|(event, s)| EventView {
            rule: rule_in_force(&rules, &event, now)
                .map_or(Value::Null, |r| state.severity.rule_json(r)),
            event,
            services: s.services,
            count: s.count,
            first_seen_unix_nano: s.first_seen_unix_nano.to_string(),
            last_seen_unix_nano: s.last_seen_unix_nano.to_string(),
            severities: s.severities,
        })
        .collect();
    Ok(Json(EventsAnswer {
        events,
        completeness: Completeness::of(missing),
    }))
}

/// The newest unexpired rule that names this event ID.
fn rule_in_force<'a>(rules: &'a [Rule], event: &str, now: u64) -> Option<&'a Rule> {
    rules
        .iter()
        .filter(|r| r.selector.event.as_deref() == Some(event) && r.expires_at > now)
        .max_by_key(|r| r.created_at)
}
