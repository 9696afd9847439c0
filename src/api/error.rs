//! Errors of the HTTP API and their HTTP answers: the one place a query service error
//! (`crate::query::Error`) becomes a status. Clients get a safe message; details of internal
//! failures go to weft's log.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use weft_index::Signal;
use weft_index::query::{QueryError, syntax_help};

use crate::query;

/// What a query can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The query text (of logs, or of spans) is wrong at a position.
    #[error("{0}")]
    BadQuery(QueryError, Signal),
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
    /// A limit on how many of something a client may hold open (live tails) is reached.
    #[error("{0}")]
    TooMany(String),
    /// The query ran past its time limit.
    #[error("query did not finish within {0:?}; narrow the time range or the query")]
    Timeout(Duration),
    /// Something failed inside weft.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The query service's errors, each to the answer it gets over HTTP.
impl From<query::Error> for ApiError {
    fn from(error: query::Error) -> Self {
        match error {
            query::Error::BadRequest(m) => ApiError::BadRequest(m),
            query::Error::BadQuery(q, signal) => ApiError::BadQuery(q, signal),
            query::Error::NotFound(m) => ApiError::NotFound(m),
            query::Error::Unavailable(m) => ApiError::Busy(m),
            query::Error::TooMany(m) => ApiError::TooMany(m),
            query::Error::Timeout(d) => ApiError::Timeout(d),
            query::Error::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl ApiError {
    /// The HTTP status for this error; every HTTP answer (weft's and Jaeger's) uses it.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BadQuery(..) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Busy(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client may see; internal details go to weft's log instead.
    pub(crate) fn public_message(&self) -> String {
        match self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "query failed");
                "internal error; see weft's log".to_string()
            }
            other => other.to_string(),
        }
    }
}

/// Adds `Retry-After` to answers that refuse for load (503, 429).
pub(crate) fn with_retry_after(mut response: Response) -> Response {
    if matches!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(query::RETRY_AFTER.as_secs()),
        );
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self {
            ApiError::BadQuery(q, signal) => json!({
                "error": q.to_string(),
                "message": q.message(),
                "position": q.position(),
                "help": syntax_help(*signal),
            }),
            other => json!({"error": other.public_message()}),
        };
        with_retry_after((self.status(), Json(body)).into_response())
    }
}
