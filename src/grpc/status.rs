//! The one place a query service error (`crate::query::Error`) becomes a gRPC status. Refusals
//! that may succeed later carry a `RetryInfo`, as OTLP clients and gRPC retry policies expect.

use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

use crate::query;

fn retryable(code: tonic::Code, message: String) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_retry_info(Some(query::RETRY_AFTER)),
    )
}

impl From<query::Error> for Status {
    fn from(error: query::Error) -> Self {
        match error {
            query::Error::BadRequest(m) => Status::invalid_argument(m),
            query::Error::BadQuery(q, _) => Status::invalid_argument(q.to_string()),
            query::Error::NotFound(m) => Status::not_found(m),
            query::Error::Unavailable(m) => retryable(tonic::Code::Unavailable, m),
            query::Error::TooMany(m) => retryable(tonic::Code::ResourceExhausted, m),
            query::Error::Timeout(_) => Status::deadline_exceeded(error.to_string()),
            query::Error::Internal(_) => Status::internal(error.public_message()),
        }
    }
}
