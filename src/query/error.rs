//! What a question to the query service can fail with, whatever transport asked it. The HTTP
//! adapter maps it to a status in `crate::api::error`, the gRPC adapter to a code in
//! `crate::grpc::status`: one place each.
//!
//! An answer missing the part of an ingest node that did not answer is not an error: it is an
//! answer, and says so itself ([`super::Answer::missing_nodes`]).

use std::time::Duration;

use weft_index::query::{QueryError, syntax_help};
use weft_index::{IndexError, Signal};

/// How long a client refused for load should wait before asking again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is wrong; the message says which and why.
    #[error("{0}")]
    BadRequest(String),
    /// The query text (of logs, or of spans) is wrong at a position.
    #[error("{0}")]
    BadQuery(QueryError, Signal),
    /// Nothing has that ID.
    #[error("{0}")]
    NotFound(String),
    /// Too many questions at once, object storage away, or shutting down: retry after
    /// [`RETRY_AFTER`].
    #[error("{0}")]
    Unavailable(String),
    /// A limit on how many of something a client may hold open (live tails) is reached:
    /// retry after [`RETRY_AFTER`].
    #[error("{0}")]
    TooMany(String),
    /// The question ran past `query_timeout`.
    #[error("query did not finish within {0:?}; narrow the time range or the query")]
    Timeout(Duration),
    /// Something failed inside weft (details for weft's log, not for the client).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A query error of a span query; log queries convert with `From`.
    pub fn span_query(error: QueryError) -> Self {
        Error::BadQuery(error, Signal::Spans)
    }

    /// The message a client may see; internal details go to weft's log instead.
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "query failed");
                "internal error; see weft's log".to_string()
            }
            other => other.to_string(),
        }
    }

    /// For a query text error: the syntax of the signal searched, to show beside it.
    pub fn syntax_help(&self) -> Option<String> {
        match self {
            Error::BadQuery(_, signal) => Some(syntax_help(*signal)),
            _ => None,
        }
    }
}

/// Query errors found while a search runs are labelled as log queries: span queries are
/// compiled (and their errors labelled) before they run.
impl From<IndexError> for Error {
    fn from(error: IndexError) -> Self {
        match error {
            IndexError::Query(q) => Error::BadQuery(q, Signal::Logs),
            // Object storage is away: retryable, and the message says which data.
            IndexError::Remote(reason) => Error::Unavailable(reason),
            other => Error::Internal(other.to_string()),
        }
    }
}

/// A query error of a log query; span queries say so with [`Error::span_query`].
impl From<QueryError> for Error {
    fn from(error: QueryError) -> Self {
        Error::BadQuery(error, Signal::Logs)
    }
}
