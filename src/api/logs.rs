//! `GET /api/v1/logs`: log search, newest first.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};
use weft_index::LogSearch;
use weft_index::query::parse;

use super::params::{limit, time_range};
use super::{ApiError, ApiState};

pub(crate) async fn search(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let query = parse(params.get("q").map_or("", String::as_str))?;
    let (start, end) = time_range(
        params.get("start").map(String::as_str),
        params.get("end").map(String::as_str),
    )?;
    let limit = limit(
        params.get("limit").map(String::as_str),
        super::limits::DEFAULT_LOGS,
        super::limits::MAX_LOGS,
    )?;
    let cursor = super::params::cursor(params.get("cursor").map(String::as_str))?;
    let search = LogSearch {
        query,
        start_unix_nano: start,
        end_unix_nano: end,
        limit,
        cursor,
    };
    let page = state
        .run_query(move |store| Ok(store.search_logs(&search)?))
        .await?;
    let logs: Vec<Value> = page.logs.iter().map(|r| r.to_json()).collect();
    Ok(Json(json!({
        "logs": logs,
        "next_cursor": page.next_cursor.map(|c| c.encode()),
        "more": page.more,
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}
