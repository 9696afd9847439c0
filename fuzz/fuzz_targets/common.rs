//! What the OTLP targets share: a decoded request goes the whole way an export goes before the
//! WAL (normalize, time window, severity rules, encoding) and the rows' views are rendered.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use weft::normalize::{self, TimeWindow};
use weft::query::answers::{LogRecord, Span};
use weft_index::RowBatch;

const NOW: u64 = 1_800_000_000_000_000_000;

fn window() -> TimeWindow {
    TimeWindow::around(
        NOW,
        std::time::Duration::from_secs(7 * 86_400),
        std::time::Duration::from_secs(3_600),
    )
}

/// Checks one batch the way the WAL and the index see it: it encodes packed, each row's slice of
/// the encoding is found, it decodes back to itself, packing leaves its rows as they were, and
/// every row renders as JSON.
fn check_batch(mut batch: RowBatch) {
    let plain = batch.encode_to_vec();
    let payload = batch.encode_packed();
    // Compared as bytes: a NaN attribute is not equal to itself.
    assert_eq!(batch.encode_to_vec(), plain, "packing changed the rows");
    let slices = batch
        .row_encodings(&payload)
        .expect("a batch's own encoding has a slice per row");
    assert_eq!(slices.logs.len(), batch.logs.len());
    assert_eq!(slices.spans.len(), batch.spans.len());
    let back = RowBatch::decode_packed(&payload).expect("a batch decodes from its encoding");
    assert_eq!(back.encode_to_vec(), plain);
    for row in &batch.logs {
        serde_json::to_string(&LogRecord::from(row)).expect("a log record renders as JSON");
    }
    for row in &batch.spans {
        serde_json::to_string(&Span::from(row)).expect("a span renders as JSON");
    }
}

pub fn logs(request: ExportLogsServiceRequest) {
    let mut out = normalize::logs(request, NOW);
    window().apply_to_logs(&mut out);
    check_batch(RowBatch {
        logs: out.rows,
        spans: Vec::new(),
    });
}

pub fn spans(request: ExportTraceServiceRequest) {
    let mut out = normalize::spans(request);
    window().apply_to_spans(&mut out);
    check_batch(RowBatch {
        logs: Vec::new(),
        spans: out.rows,
    });
}
