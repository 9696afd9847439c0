//! Layer peeling over HTTP: `GET /api/v1/{logs,spans}/facets`, `/api/v1/{logs,spans}/fields`,
//! `/api/v1/{logs,spans}/compare`, `/api/v1/spans/stats` and `/api/v1/spans/heatmap`, each
//! answered by `crate::query::peel` from the parameters every one of them shares.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use weft_index::Signal;

use super::{ApiError, ApiState, authorization};
use crate::query::peel::PeelParams;

/// `GET /api/v1/{signal}/{question}`: the question a path names, of the signal it names.
pub(crate) async fn peel(
    State(state): State<ApiState>,
    Path((name, question)): Path<(String, String)>,
    Query(params): Query<PeelParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = authorization(&headers);
    let who = who.as_deref();
    let signal = match name.as_str() {
        "logs" => Signal::Logs,
        "spans" => Signal::Spans,
        _ => return Err(not_found(&name, &question)),
    };
    let query = &state.query;
    Ok(match (signal, question.as_str()) {
        (_, "facets") => Json(query.facets(signal, params, who).await?).into_response(),
        (_, "fields") => Json(query.fields(signal, params, who).await?).into_response(),
        (_, "compare") => Json(query.compare(signal, params, who).await?).into_response(),
        (Signal::Spans, "stats") => Json(query.span_stats(params, who).await?).into_response(),
        (Signal::Spans, "heatmap") => Json(query.span_heatmap(params, who).await?).into_response(),
        _ => return Err(not_found(&name, &question)),
    })
}

fn not_found(signal: &str, question: &str) -> ApiError {
    ApiError::not_found(format!(
        "no such question /api/v1/{signal}/{question}; ask facets, fields or compare of logs \
         or spans, stats or heatmap of spans"
    ))
}
