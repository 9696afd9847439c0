//! The rows weft stores: one normalized log record, one span.
//!
//! Rows are prost messages so that the same compact, lossless encoding serves the write-ahead
//! log and the tantivy doc store. Attributes stay OTLP `KeyValue`s: every OTLP value type
//! (bytes, arrays, maps, ints vs doubles) survives a round trip, and the JSON view is derived
//! only when a query answers.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::{Map, Value};

use crate::severity;

/// A normalized log record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRow {
    /// Event time; falls back to observed time, then to arrival time.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// When the record was observed by the exporting pipeline (0 if unknown).
    #[prost(fixed64, tag = "2")]
    pub observed_time_unix_nano: u64,
    /// `service.name` of the resource, `unknown_service` if absent.
    #[prost(string, tag = "3")]
    pub service: String,
    /// OTLP severity number (1-24; 0 unspecified).
    #[prost(int32, tag = "4")]
    pub severity_number: i32,
    /// Severity text, derived from the number when the exporter sent none.
    #[prost(string, tag = "5")]
    pub severity_text: String,
    /// Event ID: `event_name`, else attribute `event.name`, else `event.id`.
    #[prost(string, tag = "6")]
    pub event: String,
    /// The log body as sent.
    #[prost(message, optional, tag = "7")]
    pub body: Option<AnyValue>,
    /// 16 bytes, or empty when the record belongs to no trace.
    #[prost(bytes = "vec", tag = "8")]
    pub trace_id: Vec<u8>,
    /// 8 bytes, or empty.
    #[prost(bytes = "vec", tag = "9")]
    pub span_id: Vec<u8>,
    /// Record attributes.
    #[prost(message, repeated, tag = "10")]
    pub attributes: Vec<KeyValue>,
    /// Resource attributes.
    #[prost(message, repeated, tag = "11")]
    pub resource: Vec<KeyValue>,
    /// Instrumentation scope name.
    #[prost(string, tag = "12")]
    pub scope_name: String,
    /// Instrumentation scope version.
    #[prost(string, tag = "13")]
    pub scope_version: String,
    /// W3C trace flags.
    #[prost(fixed32, tag = "14")]
    pub flags: u32,
    /// Attributes the exporter had to drop.
    #[prost(uint32, tag = "15")]
    pub dropped_attributes_count: u32,
    /// Instrumentation scope attributes.
    #[prost(message, repeated, tag = "16")]
    pub scope_attributes: Vec<KeyValue>,
}

/// A normalized span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanRow {
    /// 16 bytes, never zero.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes, never zero.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// 8 bytes, or empty for a root span.
    #[prost(bytes = "vec", tag = "3")]
    pub parent_span_id: Vec<u8>,
    /// W3C trace state.
    #[prost(string, tag = "4")]
    pub trace_state: String,
    /// Span (operation) name.
    #[prost(string, tag = "5")]
    pub name: String,
    /// OTLP span kind number.
    #[prost(int32, tag = "6")]
    pub kind: i32,
    /// `service.name` of the resource, `unknown_service` if absent.
    #[prost(string, tag = "7")]
    pub service: String,
    /// Start time.
    #[prost(fixed64, tag = "8")]
    pub start_time_unix_nano: u64,
    /// End time (never before start).
    #[prost(fixed64, tag = "9")]
    pub end_time_unix_nano: u64,
    /// Span attributes.
    #[prost(message, repeated, tag = "10")]
    pub attributes: Vec<KeyValue>,
    /// Resource attributes.
    #[prost(message, repeated, tag = "11")]
    pub resource: Vec<KeyValue>,
    /// Instrumentation scope name.
    #[prost(string, tag = "12")]
    pub scope_name: String,
    /// Instrumentation scope version.
    #[prost(string, tag = "13")]
    pub scope_version: String,
    /// Span events.
    #[prost(message, repeated, tag = "14")]
    pub events: Vec<Event>,
    /// Links to other spans.
    #[prost(message, repeated, tag = "15")]
    pub links: Vec<Link>,
    /// OTLP status code number.
    #[prost(int32, tag = "16")]
    pub status_code: i32,
    /// Status message.
    #[prost(string, tag = "17")]
    pub status_message: String,
    /// W3C trace flags.
    #[prost(fixed32, tag = "18")]
    pub flags: u32,
    /// Instrumentation scope attributes.
    #[prost(message, repeated, tag = "19")]
    pub scope_attributes: Vec<KeyValue>,
    /// Attributes the exporter had to drop.
    #[prost(uint32, tag = "20")]
    pub dropped_attributes_count: u32,
}

/// What one write-ahead-log entry holds: the rows of one accepted export request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RowBatch {
    /// Log rows.
    #[prost(message, repeated, tag = "1")]
    pub logs: Vec<LogRow>,
    /// Span rows.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<SpanRow>,
}

impl RowBatch {
    /// Number of rows of both signals.
    pub fn len(&self) -> usize {
        self.logs.len() + self.spans.len()
    }

    /// True when the batch holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encoding of each row inside `payload`, this batch's own protobuf encoding (as the
    /// WAL holds it): log rows, then span rows, each exactly the bytes `row.encode` writes.
    /// The indexer stores these slices instead of encoding every row a second time. `None` if
    /// `payload` does not parse as a batch of this batch's shape.
    pub fn row_encodings<'a>(&self, payload: &'a [u8]) -> Option<RowEncodings<'a>> {
        let mut logs = Vec::with_capacity(self.logs.len());
        let mut spans = Vec::with_capacity(self.spans.len());
        let mut rest = payload;
        while !rest.is_empty() {
            let (tag, wire_type) = prost::encoding::decode_key(&mut rest).ok()?;
            if wire_type != prost::encoding::WireType::LengthDelimited {
                return None;
            }
            let len = usize::try_from(prost::encoding::decode_varint(&mut rest).ok()?).ok()?;
            let (row, after) = rest.split_at_checked(len)?;
            match tag {
                1 => logs.push(row),
                2 => spans.push(row),
                _ => return None,
            }
            rest = after;
        }
        (logs.len() == self.logs.len() && spans.len() == self.spans.len())
            .then_some(RowEncodings { logs, spans })
    }
}

/// Each row's protobuf encoding, sliced from its batch's encoding.
#[derive(Debug)]
pub struct RowEncodings<'a> {
    /// One slice per log row, in order.
    pub logs: Vec<&'a [u8]>,
    /// One slice per span row, in order.
    pub spans: Vec<&'a [u8]>,
}

impl SpanRow {
    /// Duration in nanoseconds (0 if the exporter sent an end before the start).
    pub fn duration_ns(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }

    /// True when the span's status is ERROR.
    pub fn is_error(&self) -> bool {
        self.status_code == StatusCode::Error as i32
    }

    /// Lowercase kind name as the HTTP API shows it.
    pub fn kind_name(&self) -> &'static str {
        span_kind_name(self.kind)
    }
}

impl LogRow {
    /// The body as text: strings as they are, other values as JSON.
    pub fn body_text(&self) -> String {
        match self.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(_) => any_value_to_json(self.body.as_ref()).to_string(),
            None => String::new(),
        }
    }

    /// Severity band of the record (`"error"`, `"warn"`, …) for summaries.
    pub fn severity_band(&self) -> &'static str {
        severity::band_name(self.severity_number)
    }
}

/// Lowercase name of an OTLP span kind number.
pub fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// OTLP attributes as a JSON object: strings, bools, numbers as themselves, bytes as base64,
/// arrays and maps as JSON arrays and objects. Later duplicate keys win, as in OTLP.
pub fn attributes_to_json(attributes: &[KeyValue]) -> Value {
    let mut map = Map::with_capacity(attributes.len());
    for kv in attributes {
        map.insert(kv.key.clone(), any_value_to_json(kv.value.as_ref()));
    }
    Value::Object(map)
}

/// One OTLP value as JSON (see [`attributes_to_json`]).
pub fn any_value_to_json(value: Option<&AnyValue>) -> Value {
    use base64::Engine;
    let Some(value) = value.and_then(|v| v.value.as_ref()) else {
        return Value::Null;
    };
    match value {
        any_value::Value::StringValue(s) => Value::String(s.clone()),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::from(*i),
        any_value::Value::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        any_value::Value::BytesValue(b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::ArrayValue(a) => Value::Array(
            a.values
                .iter()
                .map(|v| any_value_to_json(Some(v)))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => attributes_to_json(&kv.values),
        // A strings-table index only has meaning inside an OTLP profiles message.
        any_value::Value::StringValueStrindex(_) => Value::Null,
    }
}

/// A short string form of a value, for fields such as an event ID taken from an attribute.
pub fn any_value_to_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        None => String::new(),
        Some(_) => any_value_to_json(value).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn batch() -> RowBatch {
        let log = |body: &str| LogRow {
            time_unix_nano: 7,
            service: "checkout".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.into())),
            }),
            trace_id: vec![1; 16],
            ..Default::default()
        };
        RowBatch {
            logs: vec![log("first"), LogRow::default(), log("third")],
            spans: vec![SpanRow {
                name: "charge".into(),
                span_id: vec![2; 8],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn row_encodings_are_each_rows_own_encoding() {
        let batch = batch();
        let payload = batch.encode_to_vec();
        let rows = batch.row_encodings(&payload).expect("own encoding parses");
        let expected_logs: Vec<Vec<u8>> = batch.logs.iter().map(|r| r.encode_to_vec()).collect();
        assert_eq!(rows.logs, expected_logs);
        assert_eq!(rows.spans, vec![batch.spans[0].encode_to_vec()]);
    }

    #[test]
    fn row_encodings_refuse_a_payload_of_another_shape() {
        let batch = batch();
        let payload = batch.encode_to_vec();
        assert!(
            batch.row_encodings(&payload[..payload.len() - 1]).is_none(),
            "truncated"
        );
        let other = RowBatch {
            logs: batch.logs[..2].to_vec(),
            spans: Vec::new(),
        };
        assert!(
            batch.row_encodings(&other.encode_to_vec()).is_none(),
            "fewer rows"
        );
        assert!(
            batch.row_encodings(&[0x08, 0x01]).is_none(),
            "a varint field"
        );
    }
}
