//! Errors of the HTTP API and their HTTP answers: the one place a query service error
//! (`crate::query::Error`) becomes a status. Clients get a safe message; details of internal
//! failures go to weft's log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use weft_index::query::syntax_help;

use crate::query;

/// What an HTTP request can fail with: what the query service refused (its own error, also
/// used by the adapters' parameter parsers), or what the auth checks of a route refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A question the query service refused or could not answer.
    #[error(transparent)]
    Query(#[from] query::Error),
    /// A change without valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// A change from where changes are not accepted.
    #[error("{0}")]
    Forbidden(String),
}

impl ApiError {
    /// A parameter is wrong; the message says which and why.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::Query(query::Error::BadRequest(message.into()))
    }

    /// Nothing has that ID.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::Query(query::Error::NotFound(message.into()))
    }

    /// Retry later (a dependency away, too busy).
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ApiError::Query(query::Error::Unavailable(message.into()))
    }

    /// Something failed inside weft.
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        ApiError::Query(query::Error::Internal(detail.into()))
    }

    /// The HTTP status for this error; every HTTP answer (weft's and Jaeger's) uses it.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Query(error) => match error {
                query::Error::BadRequest(_) | query::Error::BadQuery(..) => StatusCode::BAD_REQUEST,
                query::Error::NotFound(_) => StatusCode::NOT_FOUND,
                query::Error::Unavailable(_) | query::Error::Timeout(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                query::Error::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
                query::Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The message a client may see; internal details go to weft's log instead.
    pub(crate) fn public_message(&self) -> String {
        match self {
            ApiError::Query(error) => error.public_message(),
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
            ApiError::Query(query::Error::BadQuery(q, signal)) => json!({
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
