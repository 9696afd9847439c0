//! OTLP/gRPC: `LogsService/Export` and `TraceService/Export`, gzip accepted.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use weft_index::Signal;

use super::admission::{DECODE_FACTOR, Ticket};
use super::{Ingest, IngestError, prepare_logs, prepare_spans};
use crate::pipeline::PipelineError;
use crate::pipeline::Reservation;
use prost::Message;

/// The gRPC status for an ingest error. Every transient refusal is UNAVAILABLE with a
/// `RetryInfo`, which OTLP exporters retry; nothing is INTERNAL.
pub fn status(error: &IngestError) -> Status {
    if let Some(delay) = error.retry_after() {
        let message = match error {
            IngestError::Pipeline(PipelineError::Saturated) => {
                "weft is saturated; retry after the delay given".to_string()
            }
            IngestError::Pipeline(PipelineError::ShuttingDown) => {
                "weft is shutting down; retry against a running instance".to_string()
            }
            other => format!("{other}; retry after the delay given"),
        };
        return Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(delay)),
        );
    }
    match error {
        IngestError::TooLarge(m) => Status::resource_exhausted(m.clone()),
        IngestError::Unsupported(m) => Status::unimplemented(m.clone()),
        IngestError::SearchNode => Status::unimplemented(error.to_string()),
        other => Status::invalid_argument(other.to_string()),
    }
}

/// The reservation [`super::admission::AdmissionLayer`] took for this request (already grown
/// to cover decoding it), or, where the service runs without the layer, one that covers it now.
fn admitted<T: Message>(ingest: &Ingest, request: &Request<T>) -> Result<Reservation, Status> {
    match request.extensions().get::<Ticket>().and_then(Ticket::take) {
        Some(reservation) => Ok(reservation),
        None => ingest
            .reserve(DECODE_FACTOR * request.get_ref().encoded_len())
            .map_err(|e| status(&e)),
    }
}

struct LogsIngest(Ingest);
struct TracesIngest(Ingest);

#[tonic::async_trait]
impl LogsService for LogsIngest {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let reservation = admitted(&self.0, &request)?;
        let request = request.into_inner();
        let context = self.0.context();
        let accepted = self
            .0
            .accept(Signal::Logs, reservation, move |_| {
                Ok(prepare_logs(request, &context))
            })
            .await
            .map_err(|e| status(&e))?;
        let partial_success = (accepted.rejected > 0).then_some(ExportLogsPartialSuccess {
            rejected_log_records: accepted.rejected as i64,
            error_message: accepted.error_message,
        });
        Ok(Response::new(ExportLogsServiceResponse { partial_success }))
    }
}

#[tonic::async_trait]
impl TraceService for TracesIngest {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let reservation = admitted(&self.0, &request)?;
        let request = request.into_inner();
        let context = self.0.context();
        let accepted = self
            .0
            .accept(Signal::Spans, reservation, move |_| {
                Ok(prepare_spans(request, &context))
            })
            .await
            .map_err(|e| status(&e))?;
        let partial_success = (accepted.rejected > 0).then_some(ExportTracePartialSuccess {
            rejected_spans: accepted.rejected as i64,
            error_message: accepted.error_message,
        });
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success,
        }))
    }
}

/// The OTLP gRPC services, with gzip and the body limit applied.
pub fn services(
    ingest: Ingest,
) -> (
    LogsServiceServer<impl LogsService>,
    TraceServiceServer<impl TraceService>,
) {
    let limit = ingest.max_body_bytes();
    let logs = LogsServiceServer::new(LogsIngest(ingest.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let traces = TraceServiceServer::new(TracesIngest(ingest))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    (logs, traces)
}

/// tonic reports a message over the size limit as OUT_OF_RANGE (and a gzip body that inflates
/// past it as RESOURCE_EXHAUSTED). OTLP clients treat RESOURCE_EXHAUSTED as "too big", so the
/// first is rewritten to match.
pub fn size_limit_status<B>(mut response: http::Response<B>) -> http::Response<B> {
    let out_of_range = response
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    let about_size = response
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.contains("too%20large") || m.contains("too large"));
    if out_of_range && about_size {
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}
