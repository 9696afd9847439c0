//! OTLP/JSON export bodies: decoding (with the unknown-field stripping it does first) never
//! panics, and whatever decodes goes through normalization and the WAL encoding intact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use weft::ingest::http::{Format, decode};

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode::<ExportLogsServiceRequest>(data, Format::Json) {
        common::logs(request);
    }
    if let Ok(request) = decode::<ExportTraceServiceRequest>(data, Format::Json) {
        common::spans(request);
    }
});
