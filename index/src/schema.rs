//! tantivy schemas for logs and spans, and the documents built from rows.
//!
//! Every field but `source` is index-only: the row itself is stored once, prost-encoded, in the
//! compressed doc store, and answers are rebuilt from it. IDs are indexed as raw bytes (16 / 8),
//! not hex text, which halves their term dictionary.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tantivy::TantivyDocument;
use tantivy::schema::{
    BytesOptions, FAST, Field, IndexRecordOption, JsonObjectOptions, OwnedValue, STRING, Schema,
    TEXT, TextFieldIndexing,
};

use crate::attributes::{AttributeValue, has_bytes};
use crate::model::{LogRow, SpanRow, any_value_to_json};

/// Name of the stored field that holds the encoded row.
const SOURCE: &str = "source";

fn keyword_json_options() -> JsonObjectOptions {
    // `raw` keeps attribute values exact (`attr.http.route:/pay/{id}`); expanding dots makes
    // `http.route` and `{"http":{"route":…}}` the same path, which is what OTLP keys mean.
    JsonObjectOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_expand_dots_enabled()
}

fn id_options() -> BytesOptions {
    BytesOptions::default().set_indexed()
}

/// Fields of the logs schema.
#[derive(Clone, Debug)]
pub struct LogFields {
    pub(crate) schema: Schema,
    pub(crate) time: Field,
    pub(crate) service: Field,
    pub(crate) severity: Field,
    pub(crate) event: Field,
    pub(crate) body: Field,
    pub(crate) trace_id: Field,
    pub(crate) span_id: Field,
    pub(crate) scope: Field,
    pub(crate) attr: Field,
    pub(crate) resource: Field,
    pub(crate) source: Field,
}

impl LogFields {
    pub(crate) fn new() -> Self {
        let mut b = Schema::builder();
        // Time and severity are only ever filtered by range, which tantivy answers from the fast
        // column; indexing them too would add a term per distinct nanosecond timestamp, the
        // largest and busiest part of the term dictionary, for nothing.
        let time = b.add_u64_field("time", FAST);
        let service = b.add_text_field("service", STRING | FAST);
        let severity = b.add_u64_field("severity", FAST);
        let event = b.add_text_field("event", STRING | FAST);
        let body = b.add_text_field("body", TEXT);
        let trace_id = b.add_bytes_field("trace_id", id_options());
        let span_id = b.add_bytes_field("span_id", id_options());
        let scope = b.add_text_field("scope", STRING);
        let attr = b.add_json_field("attr", keyword_json_options());
        let resource = b.add_json_field("resource", keyword_json_options());
        let source = b.add_bytes_field(SOURCE, BytesOptions::default().set_stored());
        LogFields {
            schema: b.build(),
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
        }
    }

    pub(crate) fn document(&self, row: &LogRow, encoded: &[u8]) -> TantivyDocument {
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
        if !row.trace_id.is_empty() {
            doc.add_bytes(self.trace_id, &row.trace_id);
        }
        if !row.span_id.is_empty() {
            doc.add_bytes(self.span_id, &row.span_id);
        }
        if !row.scope_name.is_empty() {
            doc.add_text(self.scope, &row.scope_name);
        }
        add_attributes(&mut doc, self.attr, &row.attributes);
        add_attributes(&mut doc, self.resource, &row.resource);
        doc.add_bytes(self.source, encoded);
        doc
    }
}

/// Fields of the spans schema.
#[derive(Clone, Debug)]
pub struct SpanFields {
    pub(crate) schema: Schema,
    pub(crate) start: Field,
    pub(crate) duration: Field,
    pub(crate) service: Field,
    pub(crate) name: Field,
    pub(crate) text: Field,
    pub(crate) kind: Field,
    pub(crate) status: Field,
    pub(crate) trace_id: Field,
    pub(crate) span_id: Field,
    pub(crate) parent_span_id: Field,
    pub(crate) scope: Field,
    pub(crate) attr: Field,
    pub(crate) resource: Field,
    pub(crate) source: Field,
}

impl SpanFields {
    pub(crate) fn new() -> Self {
        let mut b = Schema::builder();
        // Range-filtered only, from the fast column (see the logs schema).
        let start = b.add_u64_field("start", FAST);
        let duration = b.add_u64_field("duration", FAST);
        let service = b.add_text_field("service", STRING | FAST);
        let name = b.add_text_field("name", STRING | FAST);
        let text = b.add_text_field("text", TEXT);
        let kind = b.add_text_field("kind", STRING | FAST);
        let status = b.add_text_field("status", STRING);
        // Fast as well: trace search reads candidate trace IDs from the column.
        let trace_id = b.add_bytes_field("trace_id", id_options().set_fast());
        let span_id = b.add_bytes_field("span_id", id_options());
        let parent_span_id = b.add_bytes_field("parent_span_id", id_options());
        let scope = b.add_text_field("scope", STRING);
        let attr = b.add_json_field("attr", keyword_json_options());
        let resource = b.add_json_field("resource", keyword_json_options());
        let source = b.add_bytes_field(SOURCE, BytesOptions::default().set_stored());
        SpanFields {
            schema: b.build(),
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
        }
    }

    pub(crate) fn document(&self, row: &SpanRow, encoded: &[u8]) -> TantivyDocument {
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
        let status = match row.status_code {
            1 => "ok",
            2 => "error",
            _ => "unset",
        };
        doc.add_text(self.status, status);
        doc.add_bytes(self.trace_id, &row.trace_id);
        doc.add_bytes(self.span_id, &row.span_id);
        if !row.parent_span_id.is_empty() {
            doc.add_bytes(self.parent_span_id, &row.parent_span_id);
        }
        if !row.scope_name.is_empty() {
            doc.add_text(self.scope, &row.scope_name);
        }
        add_attributes(&mut doc, self.attr, &row.attributes);
        add_attributes(&mut doc, self.resource, &row.resource);
        doc.add_bytes(self.source, encoded);
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
