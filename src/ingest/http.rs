//! OTLP/HTTP: `POST /v1/logs` and `POST /v1/traces`, protobuf or JSON, optionally gzipped.
//! Answers use the request's content type, errors included (a `google.rpc.Status`).

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;
use weft_index::Signal;

use super::admission::{DECODE_FACTOR, gunzip, read_body};
use super::{Accepted, Ingest, IngestError, Prepared, prepare_logs, prepare_spans};
pub use crate::otlp_status::Format;
use crate::otlp_status::encoded_status;

/// Routes for OTLP over HTTP.
pub fn router(ingest: Ingest) -> Router {
    Router::new()
        .route("/v1/logs", post(export_logs))
        .route("/v1/traces", post(export_traces))
        .with_state(ingest)
}

fn request_format(headers: &HeaderMap) -> Result<Format, IngestError> {
    crate::otlp_status::request_format(headers).map_err(IngestError::Unsupported)
}

fn content_encoding(headers: &HeaderMap) -> Result<bool, IngestError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "gzip" => Ok(true),
        "identity" | "" => Ok(false),
        other => Err(IngestError::Unsupported(format!(
            "unsupported content encoding '{other}'; send gzip or no encoding"
        ))),
    }
}

/// OTLP JSON lets an `AnyValue` object carry fields this decoder does not know; they are dropped
/// before decoding so that newer senders are not refused.
fn strip_unknown_any_value_fields(value: &mut serde_json::Value) {
    const ANY_VALUE_KEYS: [&str; 7] = [
        "stringValue",
        "boolValue",
        "intValue",
        "doubleValue",
        "arrayValue",
        "kvlistValue",
        "bytesValue",
    ];
    match value {
        serde_json::Value::Object(map) => {
            if map.keys().any(|k| ANY_VALUE_KEYS.contains(&k.as_str())) {
                map.retain(|k, _| ANY_VALUE_KEYS.contains(&k.as_str()));
            }
            for v in map.values_mut() {
                strip_unknown_any_value_fields(v);
            }
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(strip_unknown_any_value_fields)
        }
        _ => {}
    }
}

/// Decodes an OTLP message in either format.
pub fn decode<T>(body: &[u8], format: Format) -> Result<T, IngestError>
where
    T: Message + Default + serde::de::DeserializeOwned,
{
    match format {
        Format::Protobuf => T::decode(body).map_err(|e| {
            IngestError::Malformed(format!("body is not a valid OTLP protobuf message: {e}"))
        }),
        Format::Json => {
            let mut value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| IngestError::Malformed(format!("body is not valid JSON: {e}")))?;
            strip_unknown_any_value_fields(&mut value);
            serde_json::from_value(value).map_err(|e| {
                IngestError::Malformed(format!("body is not a valid OTLP JSON message: {e}"))
            })
        }
    }
}

async fn export_logs(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    let context = ingest.context();
    export(ingest, Signal::Logs, headers, body, move |bytes, format| {
        decode::<ExportLogsServiceRequest>(bytes, format).map(|r| prepare_logs(r, &context))
    })
    .await
}

async fn export_traces(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    let context = ingest.context();
    export(
        ingest,
        Signal::Spans,
        headers,
        body,
        move |bytes, format| {
            decode::<ExportTraceServiceRequest>(bytes, format).map(|r| prepare_spans(r, &context))
        },
    )
    .await
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

async fn export(
    ingest: Ingest,
    signal: Signal,
    headers: HeaderMap,
    body: Body,
    decode_and_prepare: impl FnOnce(&[u8], Format) -> Result<Prepared, IngestError> + Send + 'static,
) -> Response {
    // Until the content type is known, errors are answered in JSON.
    let format = match request_format(&headers) {
        Ok(f) => f,
        Err(e) => return error_response(&e, Format::Json),
    };
    let gzipped = match content_encoding(&headers) {
        Ok(g) => g,
        Err(e) => return error_response(&e, format),
    };
    let limit = ingest.max_body_bytes();
    let declared = content_length(&headers);
    if declared.is_some_and(|n| n > limit) {
        let error = IngestError::TooLarge(format!(
            "request body of {} bytes is larger than the limit of {limit} bytes (max_body_bytes)",
            declared.unwrap_or(0)
        ));
        return error_response(&error, format);
    }
    // Admission before allocation: the request's place is taken before a byte is read.
    let mut reservation = match ingest.reserve(declared.unwrap_or(0)) {
        Ok(r) => r,
        Err(e) => return error_response(&e, format),
    };
    let timeout = ingest.body_read_timeout();
    let body = match read_body(body, limit, declared, timeout, &mut reservation).await {
        Ok(body) => body,
        Err(e) => return error_response(&e, format),
    };
    let result = ingest
        .accept(signal, reservation, move |reservation| {
            let inflated;
            let bytes: &[u8] = if gzipped {
                inflated = gunzip(&body, limit, Some(&mut *reservation))?;
                &inflated
            } else {
                &body
            };
            reservation.grow_to(body.len() + DECODE_FACTOR * bytes.len())?;
            decode_and_prepare(bytes, format)
        })
        .await;
    match result {
        Ok(accepted) => success_response(signal, &accepted, format),
        Err(e) => error_response(&e, format),
    }
}

fn success_response(signal: Signal, accepted: &Accepted, format: Format) -> Response {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    let partial = accepted.rejected > 0;
    let body = match format {
        Format::Protobuf => match signal {
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: partial.then(|| ExportLogsPartialSuccess {
                    rejected_log_records: accepted.rejected as i64,
                    error_message: accepted.error_message.clone(),
                }),
            }
            .encode_to_vec(),
            Signal::Spans => ExportTraceServiceResponse {
                partial_success: partial.then(|| ExportTracePartialSuccess {
                    rejected_spans: accepted.rejected as i64,
                    error_message: accepted.error_message.clone(),
                }),
            }
            .encode_to_vec(),
        },
        Format::Json => {
            let count_key = match signal {
                Signal::Logs => "rejectedLogRecords",
                Signal::Spans => "rejectedSpans",
            };
            let value = if partial {
                // int64 is a string in proto3 JSON.
                json!({"partialSuccess": {
                    count_key: accepted.rejected.to_string(),
                    "errorMessage": accepted.error_message,
                }})
            } else {
                json!({})
            };
            value.to_string().into_bytes()
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

/// An error answer: the HTTP status, and a `google.rpc.Status` body in the request's format.
/// Every transient refusal is 503 with `Retry-After`, which OTLP exporters retry.
pub fn error_response(error: &IngestError, format: Format) -> Response {
    let retry_after = error.retry_after();
    let (status, code) = match error {
        _ if retry_after.is_some() => (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable),
        IngestError::TooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
        ),
        IngestError::Unsupported(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
        ),
        // Not retryable: OTLP exporters retry 429, 502, 503 and 504 only.
        IngestError::SearchNode => (StatusCode::NOT_IMPLEMENTED, tonic::Code::Unimplemented),
        _ => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
    };
    let mut response = encoded_status(status, code, error.to_string(), format);
    if let Some(delay) = retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(delay.as_secs().max(1)),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gunzip_stops_at_the_limit() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 1 << 20]).unwrap();
        let small = encoder.finish().unwrap();
        assert!(small.len() < 10_000);
        assert!(matches!(
            gunzip(&small, 1000, None),
            Err(IngestError::TooLarge(_))
        ));
        assert_eq!(gunzip(&small, 1 << 20, None).unwrap().len(), 1 << 20);
        assert!(matches!(
            gunzip(b"not gzip", 1000, None),
            Err(IngestError::Malformed(_))
        ));
    }

    #[test]
    fn json_accepts_otlp_conventions_and_unknown_fields() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
            "futureField":1,
            "scopeLogs":[{"logRecords":[{"timeUnixNano":"1763780000123456789","observedTimeUnixNano":1763780000123456790,
            "severityNumber":17,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "body":{"stringValue":"card declined","newKind":true},
            "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"m","value":{"intValue":7}}]}]}]}]}"#;
        let request: ExportLogsServiceRequest = decode(body, Format::Json).unwrap();
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_763_780_000_123_456_789);
        assert_eq!(record.observed_time_unix_nano, 1_763_780_000_123_456_790);
        assert_eq!(record.severity_number, 17);
        assert_eq!(
            hex::encode(&record.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(record.attributes.len(), 2);
    }

    #[test]
    fn malformed_bodies_are_described() {
        let err = decode::<ExportLogsServiceRequest>(b"{not json", Format::Json).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err =
            decode::<ExportLogsServiceRequest>(&[0xff, 0xff, 0xff], Format::Protobuf).unwrap_err();
        assert!(err.to_string().contains("protobuf"), "{err}");
        let err = decode::<ExportLogsServiceRequest>(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#,
            Format::Json,
        )
        .unwrap_err();
        assert!(err.to_string().contains("OTLP JSON"), "{err}");
    }
}
