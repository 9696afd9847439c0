//! `/api/v1/internal/*`: what a search node asks this node (`crate::query::fanout::RemoteNode`),
//! answered by [`LocalNode`] over this node's rows not yet in a published split, which also
//! checks each question's bounds. Each route only turns the wire question into a typed one
//! and the typed answer back (`crate::query::wire`); a live tail
//! (`/api/v1/internal/tail`) is in `super::tail`.

use axum::Json;
use axum::extract::{Path, State};
use weft_index::{LogSearch, TraceSearch};

use super::{ApiError, ApiState};
use crate::query::aggregation::{Aggregated, Aggregation};
use crate::query::node::{LocalNode, NodeQueries};
use crate::query::requests::{cursor, trace_id};
use crate::query::wire::{
    CandidatesQuestion, LogsQuestion, PartsQuestion, WireAnswer, WireCandidates, WireParts,
    WireRows,
};

/// `POST /api/v1/internal/trace/{trace_id}`: this node's rows of a trace.
pub(crate) async fn trace(
    State(state): State<ApiState>,
    Path(text): Path<String>,
) -> Result<Json<WireAnswer<WireRows>>, ApiError> {
    let id = trace_id(&text)?;
    let answer = LocalNode::new(&state.query).trace(id).await?;
    Ok(Json(WireAnswer::encode(answer, WireRows::from)))
}

/// `POST /api/v1/internal/logs`: this node's page of log records matching a search.
pub(crate) async fn logs(
    State(state): State<ApiState>,
    Json(question): Json<LogsQuestion>,
) -> Result<Json<WireAnswer<WireRows>>, ApiError> {
    let search = LogSearch {
        query: question.query,
        start_unix_nano: question.start_unix_nano,
        end_unix_nano: question.end_unix_nano,
        limit: question.limit,
        cursor: cursor(question.cursor.as_deref())?,
    };
    let answer = LocalNode::new(&state.query).logs(&search).await?;
    Ok(Json(WireAnswer::encode(answer, WireRows::from)))
}

/// `POST /api/v1/internal/trace-candidates`: this node's candidate traces of a search.
pub(crate) async fn trace_candidates(
    State(state): State<ApiState>,
    Json(question): Json<CandidatesQuestion>,
) -> Result<Json<WireAnswer<WireCandidates>>, ApiError> {
    let search = TraceSearch {
        query: question.query,
        start_unix_nano: question.start_unix_nano,
        end_unix_nano: question.end_unix_nano,
        min_duration_ns: None,
        max_duration_ns: None,
        limit: 0,
    };
    let answer = LocalNode::new(&state.query)
        .trace_candidates(&search)
        .await?;
    Ok(Json(WireAnswer::encode(answer, WireCandidates::from)))
}

/// `POST /api/v1/internal/trace-parts`: what this node holds of some traces.
pub(crate) async fn trace_parts(
    State(state): State<ApiState>,
    Json(question): Json<PartsQuestion>,
) -> Result<Json<WireAnswer<WireParts>>, ApiError> {
    let ids = question
        .trace_ids
        .iter()
        .map(|id| trace_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    let answer = LocalNode::new(&state.query)
        .trace_parts(&ids, question.start_unix_nano, question.end_unix_nano)
        .await?;
    Ok(Json(WireAnswer::encode(answer, WireParts::from)))
}

/// `POST /api/v1/internal/aggregate`: this node's part of an aggregation.
pub(crate) async fn aggregate(
    State(state): State<ApiState>,
    Json(aggregation): Json<Aggregation>,
) -> Result<Json<WireAnswer<Aggregated>>, ApiError> {
    let answer = LocalNode::new(&state.query).aggregate(&aggregation).await?;
    Ok(Json(WireAnswer::encode(answer, |value| value)))
}
