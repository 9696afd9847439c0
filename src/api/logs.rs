//! `GET /api/v1/logs` (log search, newest first), `GET /api/v1/logs/histogram` (counts per
//! time bucket by severity band) and `GET /api/v1/logs/patterns` (the templates of the bodies,
//! answered by `crate::query::patterns`).

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use weft_index::aggregate::BANDS;

use super::{ApiError, ApiState, authorization};
use crate::query::answers::{
    Completeness, HistogramAnswer, HistogramBucketView, LogRecord, LogsAnswer,
};
use crate::query::logs::HistogramRequest;
use crate::query::patterns::PatternParams;
use crate::query::requests::log_search;

pub(crate) async fn search(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let get = |k: &str| params.get(k).map(String::as_str);
    let search = log_search(
        get("q").unwrap_or(""),
        get("start"),
        get("end"),
        get("limit"),
        get("cursor"),
    )?;
    let found = state
        .query
        .search_logs(search, authorization(&headers).as_deref())
        .await?;
    let page = found.value;
    let answer = LogsAnswer {
        logs: page.logs.iter().map(LogRecord::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.encode()),
        more: page.more,
        completeness: Completeness::of(found.missing_nodes),
        took_ms: started.elapsed().as_millis() as u64,
    };
    Ok(Json(answer).into_response())
}

pub(crate) async fn histogram(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<HistogramAnswer>, ApiError> {
    let started = Instant::now();
    let get = |k: &str| params.get(k).map(String::as_str);
    let request = HistogramRequest::parse(
        get("q").unwrap_or(""),
        get("start"),
        get("end"),
        get("buckets"),
    )?;
    let found = state
        .query
        .log_histogram(&request, authorization(&headers).as_deref())
        .await?;
    let buckets = found
        .value
        .iter()
        .map(|b| HistogramBucketView {
            start_unix_nano: b.start_unix_nano.to_string(),
            counts: BANDS.iter().copied().zip(b.counts).collect(),
            total: b.counts.iter().sum(),
        })
        .collect();
    Ok(Json(HistogramAnswer {
        bucket_ns: request.bucket_ns().to_string(),
        bands: &BANDS,
        buckets,
        // Ingest nodes that did not answer: their records not yet published are not counted.
        completeness: Completeness::of(found.missing_nodes),
        took_ms: started.elapsed().as_millis() as u64,
    }))
}

/// `GET /api/v1/logs/patterns`: the templates of the selected records' bodies, largest first.
pub(crate) async fn patterns(
    State(state): State<ApiState>,
    Query(params): Query<PatternParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = authorization(&headers);
    Ok(Json(state.query.patterns(params, who.as_deref()).await?).into_response())
}
