//! Errors of the query API and their HTTP answers. Clients get a safe message; details of
//! internal failures go to weft's log.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use weft_index::IndexError;
use weft_index::query::QueryError;

/// What a query can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The query text is wrong at a position.
    #[error("{0}")]
    BadQuery(QueryError),
    /// Nothing has that ID.
    #[error("{0}")]
    NotFound(String),
    /// A change without valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// A change from where changes are not accepted.
    #[error("{0}")]
    Forbidden(String),
    /// Too many queries at once, or shutting down.
    #[error("{0}")]
    Busy(String),
    /// The query ran past its time limit.
    #[error("query did not finish within {0:?}; narrow the time range or the query")]
    Timeout(Duration),
    /// Something failed inside weft.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<IndexError> for ApiError {
    fn from(error: IndexError) -> Self {
        match error {
            IndexError::Query(q) => ApiError::BadQuery(q),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        ApiError::BadQuery(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({"error": m})),
            ApiError::BadQuery(q) => (
                StatusCode::BAD_REQUEST,
                json!({"error": q.to_string(), "message": q.message(), "position": q.position()}),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, json!({"error": m})),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, json!({"error": m})),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, json!({"error": m})),
            ApiError::Busy(m) => (StatusCode::SERVICE_UNAVAILABLE, json!({"error": m})),
            ApiError::Timeout(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": self.to_string()}),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "query failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal error; see weft's log"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

/// The same errors for gRPC clients: one mapping, next to the HTTP one.
impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::BadRequest(m) => tonic::Status::invalid_argument(m),
            ApiError::BadQuery(q) => tonic::Status::invalid_argument(q.to_string()),
            ApiError::NotFound(m) => tonic::Status::not_found(m),
            ApiError::Unauthorized(m) => tonic::Status::unauthenticated(m),
            ApiError::Forbidden(m) => tonic::Status::permission_denied(m),
            ApiError::Busy(m) => tonic::Status::unavailable(m),
            ApiError::Timeout(_) => tonic::Status::deadline_exceeded(error.to_string()),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "query failed");
                tonic::Status::internal("internal error; see weft's log")
            }
        }
    }
}
