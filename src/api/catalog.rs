//! `GET /api/v1/services` and `GET /api/v1/events`: the catalogs (`crate::query::catalog`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::Value;

use super::{ApiError, ApiState, authorization};
use crate::query::answers::{Completeness, EventView, EventsAnswer, ServiceView, ServicesAnswer};
use crate::query::requests::catalog_range;

/// Catalogs cover everything retained unless a range is given.
fn range(params: &HashMap<String, String>) -> Result<(u64, u64), ApiError> {
    let get = |k: &str| params.get(k).map(String::as_str);
    Ok(catalog_range(get("start"), get("end"))?)
}

pub(crate) async fn services(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<ServicesAnswer>, ApiError> {
    let found = state
        .query
        .services(range(&params)?, authorization(&headers).as_deref())
        .await?;
    let clock = found.value.clock;
    let services = found
        .value
        .stats
        .into_iter()
        .map(|(name, s)| {
            let offset = clock.get(&name);
            ServiceView {
                clock_offset_ns: offset.map(|o| o.offset_ns.to_string()),
                clock_offset_pairs: offset.map_or(0, |o| o.pairs),
                service: name,
                span_count: s.spans,
                log_count: s.logs,
                last_seen_unix_nano: s.last_seen_unix_nano.to_string(),
            }
        })
        .collect();
    Ok(Json(ServicesAnswer {
        services,
        completeness: Completeness::of(found.missing_nodes),
    }))
}

pub(crate) async fn events(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<EventsAnswer>, ApiError> {
    let service = params.get("service").filter(|s| !s.is_empty());
    let found = state
        .query
        .events(
            service.map(String::as_str),
            range(&params)?,
            authorization(&headers).as_deref(),
        )
        .await?;
    let events = found
        .value
        .into_iter()
        .map(|e| EventView {
            rule: e
                .rule
                .as_ref()
                .map_or(Value::Null, |r| state.severity.rule_json(r)),
            event: e.event,
            services: e.stats.services,
            count: e.stats.count,
            first_seen_unix_nano: e.stats.first_seen_unix_nano.to_string(),
            last_seen_unix_nano: e.stats.last_seen_unix_nano.to_string(),
            severities: e.stats.severities,
        })
        .collect();
    Ok(Json(EventsAnswer {
        events,
        completeness: Completeness::of(found.missing_nodes),
    }))
}
