//! Field values read from columns, one lookup per selected document: the severity column, the
//! dictionary-encoded string columns (`service`, `name`, `kind`, `event`) and, in format 2,
//! the origin column, which holds each distinct service + resource + scope of a segment once
//! (so `resource.<key>` and `scope` cost a column read per row and a decode per distinct
//! origin). For a large selection this beats intersecting every value's postings with it.

use std::collections::{BTreeMap, BTreeSet};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tantivy::columnar::{BytesColumn, Column};
use tantivy::{DocId, SegmentReader};

use super::Selected;
use super::fields::{FieldRef, MAX_SEGMENT_VALUES, NONE};
use crate::Signal;
use crate::error::IndexError;
use crate::format::column;
use crate::model::{LogRow, SpanRow, any_value_to_json};
use crate::severity::band_name;

/// A column serving one field in one segment: each document's column value (a severity number,
/// or a dictionary ordinal) maps through `table` to an index into the field's names.
pub(crate) struct ColumnField {
    column: Column<u64>,
    table: Vec<u32>,
}

impl ColumnField {
    /// The value index of each of `docs` into `out` ([`NONE`] where there is none); `docs` is
    /// at most [`BLOCK`] long.
    pub(crate) fn fill(&self, docs: &[DocId], out: &mut [u32]) {
        let mut raw = [None; BLOCK];
        let raw = &mut raw[..docs.len()];
        self.column.first_vals(docs, raw);
        for (value, slot) in raw.iter().zip(out.iter_mut()) {
            *slot = value
                .and_then(|v| self.table.get(v as usize))
                .copied()
                .unwrap_or(NONE);
        }
    }
}

/// Entries of the severity column's table: numbers 0 to 24, then one for every larger number
/// (not a severity OTLP defines: unspecified).
const SEVERITIES: usize = 26;

/// The column serving `field` in this segment, with `names` filled with the values the
/// selection holds; `None` when no column does (the caller then reads postings).
pub(crate) fn column_field(
    signal: Signal,
    field: &FieldRef,
    reader: &SegmentReader,
    selected: &Selected,
    names: &mut Vec<String>,
) -> Result<Option<ColumnField>, IndexError> {
    let fast = reader.fast_fields();
    if *field == FieldRef::Severity {
        let column: Column<u64> = fast.u64("severity")?;
        let mut used = [false; SEVERITIES];
        for_each_value(&column, &selected.docs, |v| {
            used[(v as usize).min(SEVERITIES - 1)] = true
        });
        // One name per band: numbers of one band share its index.
        let mut table = vec![NONE; SEVERITIES];
        let mut bands: Vec<(&str, u32)> = Vec::new();
        for number in (0..SEVERITIES).filter(|&n| used[n]) {
            let name = band_name(if number <= 24 { number as i32 } else { 0 });
            let index = match bands.iter().find(|(b, _)| *b == name) {
                Some((_, index)) => *index,
                None => {
                    names.push(name.to_string());
                    bands.push((name, (names.len() - 1) as u32));
                    (names.len() - 1) as u32
                }
            };
            table[number] = index;
        }
        return Ok(Some(ColumnField { column, table }));
    }
    let Some((column, from_origin)) = dictionary_column(signal, field, reader)? else {
        return Ok(None);
    };
    // The ordinals the selection uses, then their values from the column's dictionary in one
    // sorted sweep (reading them one by one would open a compressed dictionary block per value).
    let mut used = vec![false; column.num_terms()];
    for_each_value(column.ords(), &selected.docs, |ord| {
        if let Some(slot) = used.get_mut(ord as usize) {
            *slot = true;
        }
    });
    let wanted: Vec<u64> = (0..used.len() as u64)
        .filter(|&o| used[o as usize])
        .collect();
    let mut table = vec![NONE; used.len()];
    let mut next = wanted.iter();
    column
        .dictionary()
        .sorted_ords_to_term_cb(&wanted, |bytes| {
            let Some(&ord) = next.next() else { return };
            let value = if from_origin {
                origin_value(signal, field, bytes)
            } else {
                String::from_utf8(bytes.to_vec()).ok()
            };
            if let Some(value) = value {
                names.push(value);
                table[ord as usize] = (names.len() - 1) as u32;
            }
        })?;
    Ok(Some(ColumnField {
        column: column.ords().clone(),
        table,
    }))
}

/// The dictionary-encoded column holding `field` in this segment, and whether it is the origin
/// column (whose entries are decoded for the field's value) rather than the field's own.
fn dictionary_column(
    signal: Signal,
    field: &FieldRef,
    reader: &SegmentReader,
) -> Result<Option<(BytesColumn, bool)>, IndexError> {
    let fast = reader.fast_fields();
    let string_column = match (signal, field) {
        (_, FieldRef::Service) => Some("service"),
        (Signal::Spans, FieldRef::Name) => Some("name"),
        (Signal::Spans, FieldRef::Kind) => Some("kind"),
        (Signal::Logs, FieldRef::Event) => Some("event"),
        _ => None,
    };
    Ok(match string_column {
        Some(name) => fast
            .str(name)?
            .map(|column| (BytesColumn::clone(&column), false)),
        None if matches!(field, FieldRef::Scope | FieldRef::Resource(_)) => {
            fast.bytes(column::ORIGIN)?.map(|column| (column, true))
        }
        None => None,
    })
}

/// Counts of every value of `field` over all of a segment's rows, from its dictionary-encoded
/// column: one pass over the ordinals, no list of documents. Format 3 reads `service`, `event`
/// and resource attributes so where earlier formats read their terms' document frequencies.
/// Only right for a segment without deleted documents. Returns false when no column holds the
/// field.
pub(crate) fn whole_column_counts(
    signal: Signal,
    field: &FieldRef,
    reader: &SegmentReader,
    mut found: impl FnMut(&str, u64),
) -> Result<bool, IndexError> {
    let Some((column, from_origin)) = dictionary_column(signal, field, reader)? else {
        return Ok(false);
    };
    let mut counts = vec![0u64; column.num_terms()];
    // Every row's ordinal, decoded a block at a time (a bitpacked column unpacks a range far
    // faster than value by value).
    let values = &column.ords().values;
    let mut block = [0u64; BLOCK];
    let mut start = 0u32;
    while start < values.num_vals() {
        let n = ((values.num_vals() - start) as usize).min(BLOCK);
        values.get_range(u64::from(start), &mut block[..n]);
        for &ord in &block[..n] {
            if let Some(count) = counts.get_mut(ord as usize) {
                *count += 1;
            }
        }
        start += n as u32;
    }
    let used: Vec<u64> = (0..counts.len() as u64)
        .filter(|&ord| counts[ord as usize] > 0)
        .collect();
    let mut next = used.iter();
    column.dictionary().sorted_ords_to_term_cb(&used, |bytes| {
        let Some(&ord) = next.next() else { return };
        let value = if from_origin {
            origin_value(signal, field, bytes)
        } else {
            String::from_utf8(bytes.to_vec()).ok()
        };
        if let Some(value) = value {
            found(&value, counts[ord as usize]);
        }
    })?;
    Ok(true)
}

/// Documents whose column values are read at once: several times faster than one by one.
pub(crate) const BLOCK: usize = 512;

/// Calls `f` with the first value in `column` of each of `docs` that has one.
fn for_each_value(column: &Column<u64>, docs: &[DocId], mut f: impl FnMut(u64)) {
    let mut buffer = [None; BLOCK];
    for block in docs.chunks(BLOCK) {
        let values = &mut buffer[..block.len()];
        column.first_vals(block, values);
        for value in values.iter().flatten() {
            f(*value);
        }
    }
}

/// The resource attribute keys of a segment's origins (nested lists as dotted paths, as the
/// JSON index expands them), each with its number of distinct values: format 3's list of
/// `resource.<key>` fields, which earlier formats read from the resource field's terms. Stops
/// after [`MAX_SEGMENT_VALUES`] origins.
pub(crate) fn origin_resource_keys(
    signal: Signal,
    reader: &SegmentReader,
) -> Result<Vec<(String, u64)>, IndexError> {
    let Some(column) = reader.fast_fields().bytes(column::ORIGIN)? else {
        return Ok(Vec::new());
    };
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stream = column.dictionary().stream()?;
    let mut walked = 0;
    while stream.advance() && walked < MAX_SEGMENT_VALUES {
        walked += 1;
        let resource = match signal {
            Signal::Logs => LogRow::decode(stream.key()).map(|row| row.resource),
            Signal::Spans => SpanRow::decode(stream.key()).map(|row| row.resource),
        };
        if let Ok(resource) = resource {
            collect_paths("", &resource, &mut values);
        }
    }
    Ok(values
        .into_iter()
        .map(|(key, distinct)| (key, distinct.len() as u64))
        .collect())
}

/// Each attribute's dotted path under `prefix`, with its value's text.
fn collect_paths(
    prefix: &str,
    attributes: &[KeyValue],
    into: &mut BTreeMap<String, BTreeSet<String>>,
) {
    for kv in attributes {
        let path = if prefix.is_empty() {
            kv.key.clone()
        } else {
            format!("{prefix}.{}", kv.key)
        };
        match kv.value.as_ref() {
            Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(list)),
            }) => collect_paths(&path, &list.values, into),
            Some(value) => {
                if let Some(text) = value_text(value) {
                    into.entry(path).or_default().insert(text);
                }
            }
            None => {}
        }
    }
}

/// The value of a scope or resource field in an encoded origin, written as the index writes it.
fn origin_value(signal: Signal, field: &FieldRef, origin: &[u8]) -> Option<String> {
    let (scope, resource) = match signal {
        Signal::Logs => {
            let row = LogRow::decode(origin).ok()?;
            (row.scope_name, row.resource)
        }
        Signal::Spans => {
            let row = SpanRow::decode(origin).ok()?;
            (row.scope_name, row.resource)
        }
    };
    match field {
        FieldRef::Scope => Some(scope).filter(|s| !s.is_empty()),
        FieldRef::Resource(key) => attribute_text(&resource, key),
        _ => None,
    }
}

/// The text of attribute `key` (a dotted path into nested lists too, as the JSON index expands
/// it), as a term of the index reads: strings as they are, numbers and booleans as written,
/// bytes in base64; the first element of an array.
fn attribute_text(attributes: &[KeyValue], key: &str) -> Option<String> {
    for kv in attributes {
        if kv.key == key {
            return value_text(kv.value.as_ref()?);
        }
        if let Some(rest) = key
            .strip_prefix(kv.key.as_str())
            .and_then(|r| r.strip_prefix('.'))
            && let Some(any_value::Value::KvlistValue(list)) =
                kv.value.as_ref().and_then(|v| v.value.as_ref())
            && let Some(text) = attribute_text(&list.values, rest)
        {
            return Some(text);
        }
    }
    None
}

fn value_text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        any_value::Value::ArrayValue(a) => a.values.first().and_then(value_text),
        any_value::Value::BytesValue(_) => match any_value_to_json(Some(value)) {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        },
        any_value::Value::KvlistValue(_) | any_value::Value::StringValueStrindex(_) => None,
    }
}
