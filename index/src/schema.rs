//! tantivy schemas for logs and spans, per partition format, and the documents built from rows.
//!
//! Every field but `source` is index-only or a fast column: the row is stored once,
//! prost-encoded, in the compressed doc store, and answers are rebuilt from it (in format 2
//! together with the columns that hold the parts left out of it; see `rows`).
//!
//! Both formats share their first fields, in the same order, so a field handle means the same
//! field in a partition of either; format 2 appends its columns after them. The query compiler
//! and readers therefore use one set of handles (the current format's), and ask a segment's
//! schema for its format only where the formats differ (ID lookups, rebuilding rows, trace
//! search's trace ID column). Documents are built for their partition's format.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tantivy::TantivyDocument;
use tantivy::schema::{
    BytesOptions, FAST, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, OwnedValue,
    STRING, Schema, TEXT, TextFieldIndexing, TextOptions,
};

use crate::attributes::{AttributeValue, has_bytes};
use crate::format::Format;
pub(crate) use crate::format::column;
use crate::ids::bucket;
use crate::model::{LogRow, SpanRow, any_value_to_json};
use crate::rows;

/// Name of the stored field that holds the encoded row.
const SOURCE: &str = "source";

/// The handle of a field a format does not have.
const UNUSED: Field = Field::from_field_id(u32::MAX);

/// Index options of one field in one format.
struct Options {
    format: Format,
}

impl Options {
    /// A field matched as one exact term (`service:checkout`).
    fn keyword(&self) -> TextOptions {
        match self.format {
            Format::V1 => STRING,
            Format::V2 | Format::V3 => TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(false),
            ),
        }
    }

    /// Full text, with positions for phrase search.
    fn text(&self) -> TextOptions {
        match self.format {
            Format::V1 => TEXT,
            Format::V2 | Format::V3 => TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("default")
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions)
                    .set_fieldnorms(false),
            ),
        }
    }

    /// A field every row of a batch shares (`service`, a log's `event`): a keyword with a
    /// string column through format 2; format 3 keeps only the column, which its filters scan
    /// (see `query::columns`).
    fn shared_keyword(&self) -> TextOptions {
        match self.format {
            Format::V1 | Format::V2 => self.keyword() | FAST,
            Format::V3 => TextOptions::default() | FAST,
        }
    }

    /// Resource attributes: indexed through format 2; format 3 answers their filters from the
    /// origin column, and leaves the field unindexed and empty.
    fn resource(&self) -> JsonObjectOptions {
        match self.format {
            Format::V1 | Format::V2 => self.attributes(),
            Format::V3 => JsonObjectOptions::default(),
        }
    }

    fn attributes(&self) -> JsonObjectOptions {
        // `raw` keeps attribute values exact (`attr.http.route:/pay/{id}`); expanding dots
        // makes `http.route` and `{"http":{"route":…}}` the same path, which is what OTLP keys
        // mean.
        JsonObjectOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(self.format == Format::V1),
            )
            .set_expand_dots_enabled()
    }
}

fn id_options() -> BytesOptions {
    BytesOptions::default().set_indexed()
}

/// A span or parent span ID's field: its bucket is indexed in formats 1 and 2 (the full ID in
/// 1). Format 3 keeps the field, unused, so that every later field keeps its handle; lookups
/// scan the ID's column instead.
fn span_id_options(format: Format) -> BytesOptions {
    match format {
        Format::V1 | Format::V2 => id_options(),
        Format::V3 => BytesOptions::default(),
    }
}

fn u64_column() -> NumericOptions {
    NumericOptions::default().set_fast()
}

fn bytes_column() -> BytesOptions {
    BytesOptions::default().set_fast()
}

/// Fields of the logs schema (format 2's, whose first fields are format 1's).
#[derive(Clone, Debug)]
pub struct LogFields {
    pub(crate) time: Field,
    pub(crate) service: Field,
    pub(crate) severity: Field,
    pub(crate) event: Field,
    pub(crate) body: Field,
    /// Format 1: the full ID. Format 2: its bucket.
    pub(crate) trace_id: Field,
    /// Format 1: the full ID. Format 2: its bucket. Format 3: unused (the `span` column).
    pub(crate) span_id: Field,
    pub(crate) scope: Field,
    pub(crate) attr: Field,
    pub(crate) resource: Field,
    pub(crate) source: Field,
    pub(crate) trace_hi: Field,
    pub(crate) trace_lo: Field,
    pub(crate) span: Field,
    pub(crate) origin: Field,
}

impl LogFields {
    pub(crate) fn new() -> Self {
        Self::build(Format::CURRENT).0
    }

    pub(crate) fn schema(format: Format) -> Schema {
        Self::build(format).1
    }

    fn build(format: Format) -> (Self, Schema) {
        let o = Options { format };
        let mut b = Schema::builder();
        // Time and severity are only ever filtered by range, which tantivy answers from the fast
        // column; indexing them too would add a term per distinct nanosecond timestamp, the
        // largest and busiest part of the term dictionary, for nothing.
        let time = b.add_u64_field("time", FAST);
        let service = b.add_text_field("service", o.shared_keyword());
        let severity = b.add_u64_field("severity", FAST);
        let event = b.add_text_field("event", o.shared_keyword());
        let body = b.add_text_field("body", o.text());
        let trace_id = b.add_bytes_field("trace_id", id_options());
        let span_id = b.add_bytes_field("span_id", span_id_options(format));
        let scope = b.add_text_field("scope", o.keyword());
        let attr = b.add_json_field("attr", o.attributes());
        let resource = b.add_json_field("resource", o.resource());
        let source = b.add_bytes_field(SOURCE, BytesOptions::default().set_stored());
        // Format 2's columns. The handles of a format 1 build are never used: only its schema
        // is (the crate's handles are the current format's).
        let (trace_hi, trace_lo, span, origin) = if format >= Format::V2 {
            (
                b.add_u64_field(column::TRACE_HI, u64_column()),
                b.add_u64_field(column::TRACE_LO, u64_column()),
                b.add_u64_field(column::SPAN, u64_column()),
                b.add_bytes_field(column::ORIGIN, bytes_column()),
            )
        } else {
            (UNUSED, UNUSED, UNUSED, UNUSED)
        };
        let fields = LogFields {
            time,
            service,
            severity,
            event,
            body,
            trace_id,
            span_id,
            scope,
            attr,
            resource,
            source,
            trace_hi,
            trace_lo,
            span,
            origin,
        };
        (fields, b.build())
    }

    /// The document of `row` for a partition of `format`; `encoded` is the row's protobuf
    /// encoding in its WAL entry, and `origins` that entry's origins (see
    /// `RowBatch::encode_packed`).
    pub(crate) fn document(
        &self,
        row: &LogRow,
        encoded: &[u8],
        origins: &[&[u8]],
        format: Format,
    ) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.time, row.time_unix_nano);
        doc.add_text(self.service, &row.service);
        doc.add_u64(self.severity, row.severity_number.max(0) as u64);
        if !row.event.is_empty() {
            doc.add_text(self.event, &row.event);
        }
        let body = row.body_text();
        if !body.is_empty() {
            doc.add_text(self.body, body);
        }
        if !row.scope_name.is_empty() {
            doc.add_text(self.scope, &row.scope_name);
        }
        add_attributes(&mut doc, self.attr, &row.attributes);
        if format < Format::V3 {
            add_attributes(&mut doc, self.resource, &row.resource);
        }
        match format {
            Format::V1 => {
                if !row.trace_id.is_empty() {
                    doc.add_bytes(self.trace_id, &row.trace_id);
                }
                if !row.span_id.is_empty() {
                    doc.add_bytes(self.span_id, &row.span_id);
                }
                // Format 1 stores the whole row, origin included: from a packed entry, it is
                // encoded again.
                if origins.is_empty() {
                    doc.add_bytes(self.source, encoded);
                } else {
                    doc.add_bytes(self.source, &row.encode_to_vec());
                }
            }
            Format::V2 | Format::V3 => {
                let split = rows::split_log(row, encoded, origins, format);
                // An ID of another length than OTLP's stays in the stored row, unindexed: no
                // query can name it (they take 16 / 8 bytes of hex).
                if let Some((hi, lo)) = split.trace_id {
                    doc.add_bytes(self.trace_id, &bucket(&row.trace_id));
                    doc.add_u64(self.trace_hi, hi);
                    doc.add_u64(self.trace_lo, lo);
                }
                if let Some(span) = split.span_id {
                    if format == Format::V2 {
                        doc.add_bytes(self.span_id, &bucket(&row.span_id));
                    }
                    doc.add_u64(self.span, span);
                }
                doc.add_bytes(self.origin, &split.origin);
                doc.add_bytes(self.source, &split.kept);
            }
        }
        doc
    }
}

/// Fields of the spans schema (format 2's, whose first fields are format 1's).
#[derive(Clone, Debug)]
pub struct SpanFields {
    pub(crate) start: Field,
    pub(crate) duration: Field,
    pub(crate) service: Field,
    pub(crate) name: Field,
    pub(crate) text: Field,
    pub(crate) kind: Field,
    pub(crate) status: Field,
    /// Format 1: the full ID, also a fast column. Format 2: its bucket.
    pub(crate) trace_id: Field,
    /// Format 1: the full ID. Format 2: its bucket. Format 3: unused (the `span` column).
    pub(crate) span_id: Field,
    /// Format 1: the full ID. Format 2: its bucket. Format 3: unused (the `parent` column).
    pub(crate) parent_span_id: Field,
    pub(crate) scope: Field,
    pub(crate) attr: Field,
    pub(crate) resource: Field,
    pub(crate) source: Field,
    pub(crate) span: Field,
    pub(crate) parent: Field,
    pub(crate) origin: Field,
    pub(crate) trace: Field,
}

impl SpanFields {
    pub(crate) fn new() -> Self {
        Self::build(Format::CURRENT).0
    }

    pub(crate) fn schema(format: Format) -> Schema {
        Self::build(format).1
    }

    fn build(format: Format) -> (Self, Schema) {
        let o = Options { format };
        let mut b = Schema::builder();
        // Range-filtered only, from the fast column (see the logs schema).
        let start = b.add_u64_field("start", FAST);
        let duration = b.add_u64_field("duration", FAST);
        let service = b.add_text_field("service", o.shared_keyword());
        let name = b.add_text_field("name", o.keyword() | FAST);
        let text = b.add_text_field("text", o.text());
        let kind = b.add_text_field("kind", o.keyword() | FAST);
        let status = b.add_text_field("status", o.keyword());
        // Format 1 reads candidate trace IDs for trace search from this field's column; format
        // 2 from the `trace` column, and indexes only a bucket here.
        let trace_id = b.add_bytes_field(
            "trace_id",
            match format {
                Format::V1 => id_options().set_fast(),
                Format::V2 | Format::V3 => id_options(),
            },
        );
        let span_id = b.add_bytes_field("span_id", span_id_options(format));
        let parent_span_id = b.add_bytes_field("parent_span_id", span_id_options(format));
        let scope = b.add_text_field("scope", o.keyword());
        let attr = b.add_json_field("attr", o.attributes());
        let resource = b.add_json_field("resource", o.resource());
        let source = b.add_bytes_field(SOURCE, BytesOptions::default().set_stored());
        // As for logs, a format 1 build serves only its schema.
        let (span, parent, origin, trace) = if format >= Format::V2 {
            (
                b.add_u64_field(column::SPAN, u64_column()),
                b.add_u64_field(column::PARENT, u64_column()),
                b.add_bytes_field(column::ORIGIN, bytes_column()),
                b.add_bytes_field(column::TRACE, bytes_column()),
            )
        } else {
            (UNUSED, UNUSED, UNUSED, UNUSED)
        };
        let fields = SpanFields {
            start,
            duration,
            service,
            name,
            text,
            kind,
            status,
            trace_id,
            span_id,
            parent_span_id,
            scope,
            attr,
            resource,
            source,
            span,
            parent,
            origin,
            trace,
        };
        (fields, b.build())
    }

    /// The document of `row` for a partition of `format`; `encoded` is the row's protobuf
    /// encoding.
    pub(crate) fn document(
        &self,
        row: &SpanRow,
        encoded: &[u8],
        origins: &[&[u8]],
        format: Format,
    ) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.start, row.start_time_unix_nano);
        doc.add_u64(self.duration, row.duration_ns());
        doc.add_text(self.service, &row.service);
        doc.add_text(self.name, &row.name);
        // Full text covers the span name and its event names, so `exception` finds the span
        // that recorded one.
        doc.add_text(self.text, &row.name);
        for event in &row.events {
            doc.add_text(self.text, &event.name);
        }
        doc.add_text(self.kind, row.kind_name());
        doc.add_text(self.status, crate::text::status_name(row.status_code));
        if !row.scope_name.is_empty() {
            doc.add_text(self.scope, &row.scope_name);
        }
        add_attributes(&mut doc, self.attr, &row.attributes);
        if format < Format::V3 {
            add_attributes(&mut doc, self.resource, &row.resource);
        }
        match format {
            Format::V1 => {
                doc.add_bytes(self.trace_id, &row.trace_id);
                doc.add_bytes(self.span_id, &row.span_id);
                if !row.parent_span_id.is_empty() {
                    doc.add_bytes(self.parent_span_id, &row.parent_span_id);
                }
                if origins.is_empty() {
                    doc.add_bytes(self.source, encoded);
                } else {
                    doc.add_bytes(self.source, &row.encode_to_vec());
                }
            }
            Format::V2 | Format::V3 => {
                let split = rows::split_span(row, encoded, origins);
                if row.trace_id.len() == 16 {
                    doc.add_bytes(self.trace_id, &bucket(&row.trace_id));
                }
                doc.add_bytes(self.trace, &row.trace_id);
                let buckets = format == Format::V2;
                if let Some(span) = split.span_id {
                    if buckets {
                        doc.add_bytes(self.span_id, &bucket(&row.span_id));
                    }
                    doc.add_u64(self.span, span);
                }
                if let Some(parent) = split.parent_span_id {
                    if buckets {
                        doc.add_bytes(self.parent_span_id, &bucket(&row.parent_span_id));
                    }
                    doc.add_u64(self.parent, parent);
                }
                doc.add_bytes(self.origin, &split.origin);
                doc.add_bytes(self.source, &split.kept);
            }
        }
        doc
    }
}

fn add_attributes(doc: &mut TantivyDocument, field: Field, attributes: &[KeyValue]) {
    if attributes.is_empty() {
        return;
    }
    if has_bytes(attributes) {
        doc.add_object(field, attributes_object(attributes));
    } else {
        doc.add_field_value(field, AttributeValue::Object(attributes));
    }
}

/// OTLP attributes as an owned tantivy JSON object, for lists holding bytes values.
fn attributes_object(attributes: &[KeyValue]) -> BTreeMap<String, OwnedValue> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), owned_value(kv.value.as_ref())))
        .collect()
}

fn owned_value(value: Option<&AnyValue>) -> OwnedValue {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => OwnedValue::Str(s.clone()),
        Some(any_value::Value::BoolValue(b)) => OwnedValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => OwnedValue::I64(*i),
        Some(any_value::Value::DoubleValue(d)) => OwnedValue::F64(*d),
        Some(any_value::Value::ArrayValue(a)) => {
            OwnedValue::Array(a.values.iter().map(|v| owned_value(Some(v))).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            OwnedValue::Object(attributes_object(&kv.values).into_iter().collect())
        }
        // Bytes are searchable by their base64 text, as the JSON view shows them.
        Some(any_value::Value::BytesValue(_)) => match any_value_to_json(value) {
            serde_json::Value::String(s) => OwnedValue::Str(s),
            _ => OwnedValue::Null,
        },
        Some(any_value::Value::StringValueStrindex(_)) | None => OwnedValue::Null,
    }
}
