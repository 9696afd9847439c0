//! The rows weft stores: one normalized log record, one span.
//!
//! Rows are prost messages so that the same compact, lossless encoding serves the write-ahead
//! log and the tantivy doc store. Attributes stay OTLP `KeyValue`s: every OTLP value type
//! (bytes, arrays, maps, ints vs doubles) survives a round trip, and the JSON view is derived
//! only when a query answers.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
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
    /// Resource attributes, shared by the rows of one OTLP resource.
    #[prost(message, repeated, tag = "11")]
    pub resource: SharedAttributes,
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
    /// Instrumentation scope attributes, shared by the rows of one scope.
    #[prost(message, repeated, tag = "16")]
    pub scope_attributes: SharedAttributes,
    /// Only inside a WAL entry: 1 + the index in the entry's `log_origins` of this row's
    /// service, resource and scope, which the row then leaves out. 0 everywhere else.
    #[prost(uint32, tag = "17")]
    pub origin: u32,
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
    /// Resource attributes, shared by the rows of one OTLP resource.
    #[prost(message, repeated, tag = "11")]
    pub resource: SharedAttributes,
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
    /// Instrumentation scope attributes, shared by the rows of one scope.
    #[prost(message, repeated, tag = "19")]
    pub scope_attributes: SharedAttributes,
    /// Attributes the exporter had to drop.
    #[prost(uint32, tag = "20")]
    pub dropped_attributes_count: u32,
    /// Only inside a WAL entry: 1 + the index in the entry's `span_origins` of this row's
    /// service, resource and scope, which the row then leaves out. 0 everywhere else.
    #[prost(uint32, tag = "21")]
    pub origin: u32,
}

/// Attributes that many rows hold alike (their resource's, their scope's), behind one
/// reference count: a request's rows share them instead of each copying every key and value,
/// and a packed WAL entry ([`RowBatch::encode_packed`]) tells a run of rows with one origin by
/// a pointer comparison. Encoded and decoded exactly as the `Vec<KeyValue>` it derefs to; changing one row's copy
/// (`DerefMut`) clones it first if it is shared. Empty ones allocate nothing, as an empty `Vec`.
#[derive(Clone, Default)]
pub struct SharedAttributes(Option<Arc<Vec<KeyValue>>>);

/// What an empty [`SharedAttributes`] derefs to.
static NO_ATTRIBUTES: Vec<KeyValue> = Vec::new();

impl Deref for SharedAttributes {
    type Target = Vec<KeyValue>;

    fn deref(&self) -> &Vec<KeyValue> {
        self.0.as_deref().unwrap_or(&NO_ATTRIBUTES)
    }
}

impl DerefMut for SharedAttributes {
    fn deref_mut(&mut self) -> &mut Vec<KeyValue> {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }
}

impl From<Vec<KeyValue>> for SharedAttributes {
    fn from(attributes: Vec<KeyValue>) -> Self {
        SharedAttributes((!attributes.is_empty()).then(|| Arc::new(attributes)))
    }
}

impl PartialEq for SharedAttributes {
    fn eq(&self, other: &Self) -> bool {
        self.is_shared_with(other) || **self == **other
    }
}

impl<'a> IntoIterator for &'a SharedAttributes {
    type Item = &'a KeyValue;
    type IntoIter = std::slice::Iter<'a, KeyValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl SharedAttributes {
    /// True when both hold the very same attributes in memory (not merely equal ones).
    pub fn is_shared_with(&self, other: &SharedAttributes) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl std::fmt::Debug for SharedAttributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
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

/// A [`RowBatch`] as the WAL holds it ([`RowBatch::encode_packed`]): the same rows, and the
/// origins (service, resource, scope) they name, each a row holding nothing else.
#[derive(Clone, PartialEq, prost::Message)]
struct PackedBatch {
    #[prost(message, repeated, tag = "1")]
    logs: Vec<LogRow>,
    #[prost(message, repeated, tag = "2")]
    spans: Vec<SpanRow>,
    #[prost(message, repeated, tag = "3")]
    log_origins: Vec<LogRow>,
    #[prost(message, repeated, tag = "4")]
    span_origins: Vec<SpanRow>,
}

/// A packed batch encoding that names an origin it does not hold, or does not decode.
#[derive(Debug, thiserror::Error)]
pub enum PackedBatchError {
    /// The bytes are not a batch.
    #[error(transparent)]
    Protobuf(#[from] prost::DecodeError),
    /// A row names an origin the batch does not have.
    #[error("a row names origin {origin}, and the entry holds {origins}")]
    MissingOrigin {
        /// What the row names (1-based).
        origin: u32,
        /// How many the batch has.
        origins: usize,
    },
}

/// The fields a row shares with the other rows of its resource and scope, by reference.
struct OriginFields<'r> {
    service: &'r mut String,
    resource: &'r mut SharedAttributes,
    scope_name: &'r mut String,
    scope_version: &'r mut String,
    scope_attributes: &'r mut SharedAttributes,
    /// The row's `origin` (see [`RowBatch::encode_packed`]).
    origin: &'r mut u32,
}

/// A row with an origin: log rows and span rows alike.
trait HasOrigin: Default {
    fn origin_fields(&mut self) -> OriginFields<'_>;
}

/// Log rows and span rows name their origin fields alike.
macro_rules! has_origin {
    ($($row:ty),*) => {$(
        impl HasOrigin for $row {
            fn origin_fields(&mut self) -> OriginFields<'_> {
                OriginFields {
                    service: &mut self.service,
                    resource: &mut self.resource,
                    scope_name: &mut self.scope_name,
                    scope_version: &mut self.scope_version,
                    scope_attributes: &mut self.scope_attributes,
                    origin: &mut self.origin,
                }
            }
        }
    )*};
}

has_origin!(LogRow, SpanRow);

/// The service, resource and scope of a row (what `origin` stands for in a packed batch).
#[derive(Clone, Default)]
struct Origin {
    service: String,
    resource: SharedAttributes,
    scope_name: String,
    scope_version: String,
    scope_attributes: SharedAttributes,
}

impl Origin {
    /// Moves the row's origin out, leaving its fields empty.
    fn take(row: &mut impl HasOrigin) -> Self {
        let f = row.origin_fields();
        Origin {
            service: std::mem::take(f.service),
            resource: std::mem::take(f.resource),
            scope_name: std::mem::take(f.scope_name),
            scope_version: std::mem::take(f.scope_version),
            scope_attributes: std::mem::take(f.scope_attributes),
        }
    }

    /// Gives the row this origin (shared attributes are shared, not copied).
    fn put(self, row: &mut impl HasOrigin) {
        let f = row.origin_fields();
        *f.service = self.service;
        *f.resource = self.resource;
        *f.scope_name = self.scope_name;
        *f.scope_version = self.scope_version;
        *f.scope_attributes = self.scope_attributes;
    }

    /// Whether a row of `other` may name this origin: the same strings and the very same
    /// attributes in memory (or none). Attributes equal only by value are not enough: two
    /// values may compare equal and encode differently (`0.0` and `-0.0`), and each row must
    /// keep its own bytes.
    fn same_run(&self, other: &Origin) -> bool {
        let same = |a: &SharedAttributes, b: &SharedAttributes| {
            a.is_shared_with(b) || (a.is_empty() && b.is_empty())
        };
        self.service == other.service
            && self.scope_name == other.scope_name
            && self.scope_version == other.scope_version
            && same(&self.resource, &other.resource)
            && same(&self.scope_attributes, &other.scope_attributes)
    }

    /// A row holding this origin and nothing else: its entry in a packed batch.
    fn row<R: HasOrigin>(&self) -> R {
        let mut row = R::default();
        self.clone().put(&mut row);
        row
    }
}

/// Takes each row's origin out and names it by `origin` instead, one origin per run of rows
/// with the same one. Returns the runs' origins and, per row, the origin taken from it when
/// its run's entry holds another copy of it.
fn pack<R: HasOrigin>(rows: &mut [R]) -> (Vec<Origin>, Vec<Option<Origin>>) {
    let mut runs: Vec<Origin> = Vec::new();
    let mut taken = Vec::with_capacity(rows.len());
    for row in rows {
        let own = Origin::take(row);
        if runs.last().is_some_and(|run| run.same_run(&own)) {
            taken.push(Some(own));
        } else {
            runs.push(own);
            taken.push(None);
        }
        *row.origin_fields().origin = runs.len() as u32;
    }
    (runs, taken)
}

/// Undoes [`pack`]: each run's first row gets the run's origin back, the others their own.
fn unpack_in_place<R: HasOrigin>(rows: &mut [R], runs: Vec<Origin>, taken: Vec<Option<Origin>>) {
    let mut runs = runs.into_iter();
    for (row, taken) in rows.iter_mut().zip(taken) {
        *row.origin_fields().origin = 0;
        if let Some(origin) = taken.or_else(|| runs.next()) {
            origin.put(row);
        }
    }
}

/// Gives each decoded row that names an origin a copy of it from `origins` (the entries of a
/// packed batch), sharing its attributes.
fn restore_origins<R: HasOrigin>(
    rows: &mut [R],
    mut origins: Vec<R>,
) -> Result<(), PackedBatchError> {
    let origins: Vec<Origin> = origins.iter_mut().map(Origin::take).collect();
    for row in rows {
        let named = std::mem::take(row.origin_fields().origin);
        if named == 0 {
            continue;
        }
        let origin = origins
            .get(named as usize - 1)
            .ok_or(PackedBatchError::MissingOrigin {
                origin: named,
                origins: origins.len(),
            })?;
        origin.clone().put(row);
    }
    Ok(())
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

    /// This batch's encoding for the WAL. Rows of one export request mostly share their
    /// service, resource and scope, a quarter of a record's WAL bytes: each run of rows with the same
    /// one writes it once, in `log_origins` / `span_origins`, and each row names it by its
    /// `origin`. The rows are left as they were (`origin` 0). Rows form a run when they share
    /// their attributes in memory, as `normalize` makes the rows of one OTLP resource and scope.
    ///
    /// Only [`RowBatch::decode_packed`] reads it back: plain `decode` would skip the origins
    /// and leave the rows without service, resource and scope. [`RowBatch::decode_packed`] reads it back
    /// (and any unpacked encoding, as `decode` does).
    pub fn encode_packed(&mut self) -> Vec<u8> {
        let (log_runs, log_taken) = pack(&mut self.logs);
        let (span_runs, span_taken) = pack(&mut self.spans);
        let packed = PackedBatch {
            logs: std::mem::take(&mut self.logs),
            spans: std::mem::take(&mut self.spans),
            log_origins: log_runs.iter().map(Origin::row).collect(),
            span_origins: span_runs.iter().map(Origin::row).collect(),
        };
        let payload = packed.encode_to_vec();
        self.logs = packed.logs;
        self.spans = packed.spans;
        unpack_in_place(&mut self.logs, log_runs, log_taken);
        unpack_in_place(&mut self.spans, span_runs, span_taken);
        payload
    }

    /// Decodes a batch encoded by [`RowBatch::encode_packed`] or by `encode`, each row with its
    /// own service, resource and scope again (the rows of a run share the attributes).
    pub fn decode_packed(payload: &[u8]) -> Result<RowBatch, PackedBatchError> {
        let mut batch = PackedBatch::decode(payload)?;
        restore_origins(&mut batch.logs, batch.log_origins)?;
        restore_origins(&mut batch.spans, batch.span_origins)?;
        Ok(RowBatch {
            logs: batch.logs,
            spans: batch.spans,
        })
    }

    /// The encoding of each row inside `payload`, this batch's own protobuf encoding (as the
    /// WAL holds it, packed or not): log rows, then span rows, each exactly the bytes
    /// `row.encode` wrote, and the origins a packed one holds. The indexer stores these slices
    /// instead of encoding every row a second time. `None` if `payload` does not parse as a
    /// batch of this batch's shape.
    pub fn row_encodings<'a>(&self, payload: &'a [u8]) -> Option<RowEncodings<'a>> {
        let mut logs = Vec::with_capacity(self.logs.len());
        let mut spans = Vec::with_capacity(self.spans.len());
        let mut log_origins = Vec::new();
        let mut span_origins = Vec::new();
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
                3 => log_origins.push(row),
                4 => span_origins.push(row),
                _ => return None,
            }
            rest = after;
        }
        (logs.len() == self.logs.len() && spans.len() == self.spans.len()).then_some(RowEncodings {
            logs,
            spans,
            log_origins,
            span_origins,
        })
    }
}

/// Each row's protobuf encoding, sliced from its batch's encoding.
#[derive(Debug)]
pub struct RowEncodings<'a> {
    /// One slice per log row, in order.
    pub logs: Vec<&'a [u8]>,
    /// One slice per span row, in order.
    pub spans: Vec<&'a [u8]>,
    /// The log rows' origins, in a packed encoding (a row's `origin` is 1 + its index).
    pub log_origins: Vec<&'a [u8]>,
    /// The span rows' origins, likewise.
    pub span_origins: Vec<&'a [u8]>,
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

/// OTLP `SPAN_KIND_CLIENT`: the caller's side of a call, timed from request to response.
pub const SPAN_KIND_CLIENT: i32 = 3;
/// OTLP `SPAN_KIND_PRODUCER`: a message sent, whose consumer may run any time later.
pub const SPAN_KIND_PRODUCER: i32 = 4;
/// OTLP `SPAN_KIND_CONSUMER`: a message received.
pub const SPAN_KIND_CONSUMER: i32 = 5;

/// Lowercase name of an OTLP span kind number.
pub fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        SPAN_KIND_CLIENT => "client",
        SPAN_KIND_PRODUCER => "producer",
        SPAN_KIND_CONSUMER => "consumer",
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

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    /// The field as it was declared before it was shared; the WAL and the doc store hold its
    /// encoding, so the shared one must write and read the same bytes.
    #[derive(Clone, PartialEq, prost::Message)]
    struct PlainResource {
        #[prost(message, repeated, tag = "11")]
        resource: Vec<KeyValue>,
    }

    #[test]
    fn shared_attributes_encode_as_a_plain_list() {
        let attributes = vec![kv("host.name", "a1"), kv("region", "eu")];
        let row = LogRow {
            resource: attributes.clone().into(),
            ..Default::default()
        };
        let plain = PlainResource {
            resource: attributes,
        };
        assert_eq!(row.encode_to_vec(), plain.encode_to_vec());
        let decoded = LogRow::decode(plain.encode_to_vec().as_slice()).unwrap();
        assert_eq!(*decoded.resource, plain.resource);
        assert_eq!(LogRow::default().encode_to_vec(), Vec::<u8>::new());
        assert_eq!(SharedAttributes::default(), Vec::new().into());
    }

    #[test]
    fn changing_a_shared_copy_leaves_the_others_alone() {
        let one: SharedAttributes = vec![kv("host.name", "a1")].into();
        let mut two = one.clone();
        assert!(two.is_shared_with(&one));
        two.push(kv("region", "eu"));
        assert!(!two.is_shared_with(&one));
        assert_eq!(one.len(), 1);
        assert_eq!(two.len(), 2);
        let mut empty = SharedAttributes::default();
        empty.push(kv("k", "v"));
        assert_eq!(*empty, vec![kv("k", "v")]);
    }

    #[test]
    fn a_packed_batch_holds_each_run_of_one_origin_once_and_reads_back_whole() {
        let (a, b): (SharedAttributes, SharedAttributes) = (
            vec![kv("host.name", "a1")].into(),
            vec![kv("host.name", "b2")].into(),
        );
        let log = |body: &str, resource: &SharedAttributes, scope: &str| LogRow {
            service: "checkout".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.into())),
            }),
            resource: resource.clone(),
            scope_name: scope.into(),
            ..Default::default()
        };
        let mut batch = RowBatch {
            logs: vec![
                log("1", &a, "s"),
                log("2", &a, "s"),
                log("3", &a, "t"),
                log("4", &b, "t"),
                log("5", &a, "s"),
            ],
            spans: vec![
                SpanRow {
                    name: "charge".into(),
                    service: "payments".into(),
                    resource: b.clone(),
                    ..Default::default()
                },
                SpanRow {
                    name: "bare".into(),
                    ..Default::default()
                },
            ],
        };
        let before = batch.clone();
        let plain = batch.encode_to_vec();
        let packed = batch.encode_packed();
        assert_eq!(batch, before, "packing leaves the rows as they were");
        let origins = batch.row_encodings(&packed).unwrap();
        assert_eq!(
            origins.log_origins.len(),
            4,
            "runs (a, s), (a, t), (b, t), (a, s)"
        );
        assert_eq!(origins.span_origins.len(), 2);
        let back = RowBatch::decode_packed(&packed).unwrap();
        assert_eq!(back, before);
        assert!(back.logs[1].resource.is_shared_with(&back.logs[0].resource));
        assert!(back.logs.iter().all(|r| r.origin == 0));
        // What the WAL held before packing reads the same way.
        assert_eq!(RowBatch::decode_packed(&plain).unwrap(), before);
        // A row naming an origin the entry lacks is refused, not read without one.
        let mut lacking = PackedBatch::decode(packed.as_slice()).unwrap();
        lacking.log_origins.truncate(1);
        let error = RowBatch::decode_packed(&lacking.encode_to_vec()).unwrap_err();
        assert!(
            matches!(
                error,
                PackedBatchError::MissingOrigin {
                    origin: 2,
                    origins: 1
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn rows_with_attributes_equal_only_by_value_keep_their_own_bytes() {
        let zero = |z: f64| -> SharedAttributes {
            vec![KeyValue {
                key: "ratio".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::DoubleValue(z)),
                }),
                ..Default::default()
            }]
            .into()
        };
        let (positive, negative) = (zero(0.0), zero(-0.0));
        assert_eq!(positive, negative, "equal by value");
        let row = |resource: &SharedAttributes| LogRow {
            service: "checkout".into(),
            resource: resource.clone(),
            ..Default::default()
        };
        let mut batch = RowBatch {
            logs: vec![row(&positive), row(&negative), row(&negative)],
            spans: Vec::new(),
        };
        let plain = batch.encode_to_vec();
        let packed = batch.encode_packed();
        let slices = batch.row_encodings(&packed).unwrap();
        assert_eq!(
            slices.log_origins.len(),
            2,
            "two runs: 0.0, then -0.0 twice"
        );
        let back = RowBatch::decode_packed(&packed).unwrap();
        assert_eq!(back.encode_to_vec(), plain, "every row keeps its own bytes");
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
