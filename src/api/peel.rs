//! Layer peeling over HTTP: `GET /api/v1/{logs,spans}/facets`, `/api/v1/{logs,spans}/fields`,
//! `/api/v1/spans/stats`, `/api/v1/spans/heatmap` and `/api/v1/{logs,spans}/compare`, each
//! answered by `crate::query::peel` from the parameters every one of them shares.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use weft_index::Signal;

use super::{ApiError, ApiState, authorization};
use crate::query::peel::{
    CompareAnswer, FacetsAnswer, FieldsAnswer, HeatmapAnswer, PeelParams, StatsAnswer,
};

type Answer<T> = Result<Json<T>, ApiError>;

pub(crate) async fn log_facets(
    State(state): State<ApiState>,
    Query(params): Query<PeelParams>,
    headers: HeaderMap,
) -> Answer<FacetsAnswer> {
    let who = authorization(&headers);
    Ok(Json(
        state
            .query
            .facets(Signal::Logs, params, who.as_deref())
            .await?,
    ))
}

pub(crate) async fn span_facets(
    State(state): State<ApiState>,
    Query(params): Query<PeelParams>,
    headers: HeaderMap,
) -> Answer<FacetsAnswer> {
    let who = authorization(&headers);
    Ok(Json(
        state
            .query
            .facets(Signal::Spans, params, who.as_deref())
            .await?,
    ))
}

pub(crate) async fn log_fields(
    State(state): State<ApiState>,
    Query(params): Query<PeelParams>,
    headers: HeaderMap,
) -> Answer<FieldsAnswer> {
    let who = authorization(&headers);
    Ok(Json(
        state
            .query
            .fields(Signal::Logs, params, who.as_deref())
            .await?,
    ))
}

pub(crate) async fn span_fields(
    State(state): State<ApiState>,
    Query(params): Query<PeelParams>,
    headers: HeaderMap,
) -> Answer<FieldsAnswer> {
    let who = authorization(&headers);
    Ok(Json(
        state
            .query
            .fields(Signal::Spans, params, who.as_deref())
            .await?,
    ))
}

pub(crate) async fn span_stats(
    State(state): State<ApiState>,
    Query(params): Query<PeelParams>,
    headers: HeaderMap,
) -> Answer<StatsAnswer> {
    let who = authorization(&headers);
    Ok(Json(state.query.span_stats(params, who.as_deref()).await?))
}

pub(crate) async fn span_heatmap(
    State(state): State<ApiState>,
    Query(params): Query<PeelParams>,
    headers: HeaderMap,
) -> Answer<HeatmapAnswer> {
    let who = authorization(&headers);
    Ok(Json(
        state.query.span_heatmap(params, who.as_deref()).await?,
    ))
}

pub(crate) async fn log_compare(
    State(state): State<ApiState>,
    Query(params): Query<PeelParams>,
    headers: HeaderMap,
) -> Answer<CompareAnswer> {
    let who = authorization(&headers);
    Ok(Json(
        state
            .query
            .compare(Signal::Logs, params, who.as_deref())
            .await?,
    ))
}

pub(crate) async fn span_compare(
    State(state): State<ApiState>,
    Query(params): Query<PeelParams>,
    headers: HeaderMap,
) -> Answer<CompareAnswer> {
    let who = authorization(&headers);
    Ok(Json(
        state
            .query
            .compare(Signal::Spans, params, who.as_deref())
            .await?,
    ))
}
