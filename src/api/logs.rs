//! `GET /api/v1/logs`: log search, newest first.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use weft_index::LogSearch;
use weft_index::query::parse;

use super::params::{limit, time_range};
use super::traces::authorization;
use super::{ApiError, ApiState};
use crate::query::answers::{Completeness, LogRecord, LogsAnswer};
use crate::query::service::log_page;

/// A log search from its parameters as text, with the API's defaults and limits; HTTP and
/// gRPC both build theirs here.
pub(crate) fn log_search(
    q: &str,
    start: Option<&str>,
    end: Option<&str>,
    page_size: Option<&str>,
    cursor: Option<&str>,
) -> Result<LogSearch, ApiError> {
    let query = parse(q)?;
    let (start, end) = time_range(start, end)?;
    let limit = limit(
        page_size,
        super::limits::DEFAULT_LOGS,
        super::limits::MAX_LOGS,
    )?;
    Ok(LogSearch {
        query,
        start_unix_nano: start,
        end_unix_nano: end,
        limit,
        cursor: super::params::cursor(cursor)?,
    })
}

pub(crate) async fn search(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let get = |k: &str| params.get(k).map(String::as_str);
    let q = get("q").unwrap_or("");
    let search = log_search(q, get("start"), get("end"), get("limit"), get("cursor"))?;
    let (page, missing) = log_page(&state, search, authorization(&headers).as_deref()).await?;
    let answer = LogsAnswer {
        logs: page.logs.iter().map(LogRecord::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.encode()),
        more: page.more,
        completeness: Completeness::of(missing),
        took_ms: started.elapsed().as_millis() as u64,
    };
    Ok(Json(answer).into_response())
}
