//! Errors of the query API and their HTTP answers. Clients get a safe message; details of
//! internal failures go to weft's log.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use weft_index::query::{QueryError, syntax_help};
use weft_index::{IndexError, Signal};

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

/// Query errors found while a search runs are labelled as log queries: span queries are
/// compiled (and their errors labelled) before they run, in `traces.rs`.
impl From<IndexError> for ApiError {
    fn from(error: IndexError) -> Self {
        match error {
            IndexError::Query(q) => ApiError::BadQuery(q, Signal::Logs),
            // Object storage is away: retryable, and the message says which data.
            IndexError::Remote(reason) => ApiError::Busy(reason),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A query error of a log query; span queries say so with [`ApiError::span_query`].
impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        ApiError::BadQuery(error, Signal::Logs)
    }
}

impl ApiError {
    /// A query error of a span query.
    pub(crate) fn span_query(error: QueryError) -> Self {
        ApiError::BadQuery(error, Signal::Spans)
    }

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
            axum::http::HeaderValue::from(RETRY_AFTER.as_secs()),
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

/// How long a client refused for load should wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

fn retryable(code: tonic::Code, message: String) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    tonic::Status::with_error_details(
        code,
        message,
        ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
    )
}

/// The same errors for gRPC clients: one mapping, next to the HTTP one.
impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::BadRequest(m) => tonic::Status::invalid_argument(m),
            ApiError::BadQuery(q, _) => tonic::Status::invalid_argument(q.to_string()),
            ApiError::NotFound(m) => tonic::Status::not_found(m),
            ApiError::Unauthorized(m) => tonic::Status::unauthenticated(m),
            ApiError::Forbidden(m) => tonic::Status::permission_denied(m),
            ApiError::Busy(m) => retryable(tonic::Code::Unavailable, m),
            ApiError::TooMany(m) => retryable(tonic::Code::ResourceExhausted, m),
            ApiError::Timeout(_) => tonic::Status::deadline_exceeded(error.to_string()),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "query failed");
                tonic::Status::internal("internal error; see weft's log")
            }
        }
    }
}
