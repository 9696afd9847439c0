//! The answers of OTLP/HTTP: the two body formats it allows, and a `google.rpc.Status` body in
//! the request's format, which OTLP exporters read on any refusal. Shared by ingest and by the
//! auth layer, which refuses an export before ingest sees it. A leaf: it names no other module.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde_json::json;

/// The body formats OTLP/HTTP allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP JSON encoding).
    Json,
}

impl Format {
    /// The content type of answers in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The format a request's `Content-Type` names, or why it names none OTLP allows.
pub fn request_format(headers: &HeaderMap) -> Result<Format, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err(format!(
            "unsupported content type '{content_type}'; send application/x-protobuf or application/json"
        )),
    }
}

/// A refusal decided before the body is read (authentication): a `google.rpc.Status` in the
/// request's format, JSON when the content type is not one OTLP allows.
pub fn status_response(
    status: StatusCode,
    code: tonic::Code,
    message: String,
    headers: &HeaderMap,
) -> Response {
    let format = request_format(headers).unwrap_or(Format::Json);
    encoded_status(status, code, message, format)
}

/// An answer with `status` and a `google.rpc.Status` of `code` and `message` in `format`.
pub fn encoded_status(
    status: StatusCode,
    code: tonic::Code,
    message: String,
    format: Format,
) -> Response {
    let body = match format {
        Format::Protobuf => tonic_types::Status {
            code: code as i32,
            message,
            details: Vec::new(),
        }
        .encode_to_vec(),
        Format::Json => json!({"code": code as i32, "message": message})
            .to_string()
            .into_bytes(),
    };
    (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}
