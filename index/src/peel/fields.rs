//! The fields an aggregation can name, and the value each selected document has for one.

use std::fmt;

use tantivy::columnar::Column;
use tantivy::postings::{BlockSegmentPostings, TermInfo};
use tantivy::schema::{Field, IndexRecordOption, Type};
use tantivy::{DocSet, SegmentReader, TERMINATED, Term};

use super::Selected;
use super::columns::{BLOCK, ColumnField, column_field, whole_column_counts};
use crate::aggregate::{BANDS, band_index};
use crate::error::IndexError;
use crate::{Signal, log_fields, span_fields};

/// A field whose values can be counted and grouped by: a fixed field of the signal, or any
/// attribute or resource attribute key, declared or not.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum FieldRef {
    /// `service`.
    Service,
    /// `name`: a span's operation.
    Name,
    /// `kind`: a span's kind (`server`, `client`, …).
    Kind,
    /// `status`: a span's status (`ok`, `error`, `unset`).
    Status,
    /// `severity`: a log record's severity band (`ERROR`, …).
    Severity,
    /// `event`: a log record's event ID.
    Event,
    /// `scope`: the instrumentation scope.
    Scope,
    /// `attr.<key>`.
    Attr(String),
    /// `resource.<key>`.
    Resource(String),
}

/// Longest attribute key an aggregation accepts.
const MAX_KEY_CHARS: usize = 256;

impl FieldRef {
    /// The fixed fields of a signal, in the order the UI lists them.
    pub fn fixed(signal: Signal) -> &'static [FieldRef] {
        match signal {
            Signal::Logs => &[
                FieldRef::Service,
                FieldRef::Severity,
                FieldRef::Event,
                FieldRef::Scope,
            ],
            Signal::Spans => &[
                FieldRef::Service,
                FieldRef::Name,
                FieldRef::Kind,
                FieldRef::Status,
                FieldRef::Scope,
            ],
        }
    }

    /// An error unless the field's key (of `attr.` or `resource.`) has 1 to 256 characters,
    /// as [`FieldRef::parse`] requires. A field that arrives another way (deserialized from
    /// another node's question) is checked with this.
    pub fn check(&self) -> Result<(), String> {
        match self {
            FieldRef::Attr(key) | FieldRef::Resource(key)
                if key.is_empty() || key.chars().count() > MAX_KEY_CHARS =>
            {
                Err(format!(
                    "field '{self}' needs a key of 1 to {MAX_KEY_CHARS} characters"
                ))
            }
            _ => Ok(()),
        }
    }

    /// Parses a field name as the query language writes it (`service`, `attr.http.route`); the
    /// error says what was expected.
    pub fn parse(signal: Signal, text: &str) -> Result<FieldRef, String> {
        let text = text.trim();
        let keyed = |key: &str, make: fn(String) -> FieldRef| {
            let field = make(key.to_string());
            field.check()?;
            Ok(field)
        };
        if let Some(key) = text.strip_prefix("attr.") {
            return keyed(key, FieldRef::Attr);
        }
        if let Some(key) = text.strip_prefix("resource.") {
            return keyed(key, FieldRef::Resource);
        }
        let field = match (signal, text) {
            (_, "service") => FieldRef::Service,
            (_, "scope") => FieldRef::Scope,
            (Signal::Spans, "name" | "operation") => FieldRef::Name,
            (Signal::Spans, "kind") => FieldRef::Kind,
            (Signal::Spans, "status") => FieldRef::Status,
            (Signal::Logs, "severity") => FieldRef::Severity,
            (Signal::Logs, "event") => FieldRef::Event,
            _ => {
                let fixed: Vec<String> =
                    Self::fixed(signal).iter().map(|f| f.to_string()).collect();
                return Err(format!(
                    "cannot aggregate '{text}' for {}; expected one of {}, attr.<key>, resource.<key>",
                    signal.dir_name(),
                    fixed.join(", ")
                ));
            }
        };
        Ok(field)
    }

    /// Where the field's values are: a plain keyword field, a path inside a JSON field, or the
    /// severity column.
    fn source(&self, signal: Signal) -> Source {
        let (attr, resource) = match signal {
            Signal::Logs => (log_fields().attr, log_fields().resource),
            Signal::Spans => (span_fields().attr, span_fields().resource),
        };
        let keyword = |field: Field| Source::Terms {
            field,
            prefix: Vec::new(),
        };
        let json = |field: Field, key: &str| Source::Terms {
            field,
            prefix: Term::from_field_json_path(field, key, true)
                .serialized_value_bytes()
                .to_vec(),
        };
        match (self, signal) {
            (FieldRef::Severity, _) => Source::Severity,
            (FieldRef::Service, Signal::Logs) => keyword(log_fields().service),
            (FieldRef::Service, Signal::Spans) => keyword(span_fields().service),
            (FieldRef::Scope, Signal::Logs) => keyword(log_fields().scope),
            (FieldRef::Scope, Signal::Spans) => keyword(span_fields().scope),
            (FieldRef::Event, _) => keyword(log_fields().event),
            (FieldRef::Name, _) => keyword(span_fields().name),
            (FieldRef::Kind, _) => keyword(span_fields().kind),
            (FieldRef::Status, _) => keyword(span_fields().status),
            (FieldRef::Attr(key), _) => json(attr, key),
            (FieldRef::Resource(key), _) => json(resource, key),
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldRef::Service => f.write_str("service"),
            FieldRef::Name => f.write_str("name"),
            FieldRef::Kind => f.write_str("kind"),
            FieldRef::Status => f.write_str("status"),
            FieldRef::Severity => f.write_str("severity"),
            FieldRef::Event => f.write_str("event"),
            FieldRef::Scope => f.write_str("scope"),
            FieldRef::Attr(key) => write!(f, "attr.{key}"),
            FieldRef::Resource(key) => write!(f, "resource.{key}"),
        }
    }
}

enum Source {
    /// Terms of `field` whose dictionary key starts with `prefix` (a JSON path, or nothing).
    Terms {
        field: Field,
        prefix: Vec<u8>,
    },
    Severity,
}

impl FieldRef {
    /// Whether this segment indexes the field's values (format 3 keeps `service`, `event` and
    /// resource attributes in columns only).
    pub(crate) fn indexed_in(&self, signal: Signal, reader: &SegmentReader) -> bool {
        match self.source(signal) {
            Source::Terms { field, .. } => reader.schema().get_field_entry(field).is_indexed(),
            Source::Severity => true,
        }
    }
}

/// No value for this document.
pub(crate) const NONE: u32 = u32::MAX;

/// The values one field takes in one segment's selection, as indexes into `names` (a document
/// with several, such as an array attribute, counts under its last), [`NONE`] where a document
/// has none: read from a column as asked, or precomputed per document from postings.
pub(crate) struct SegmentValues {
    pub(crate) names: Vec<String>,
    reader: ValueReader,
}

enum ValueReader {
    Column(ColumnField),
    PerDoc(Vec<u32>),
}

impl SegmentValues {
    /// The value of each of `docs` into `out`; `docs` is at most [`BLOCK`] long.
    pub(crate) fn fill(&self, docs: &[u32], out: &mut [u32]) {
        match &self.reader {
            ValueReader::Column(column) => column.fill(docs, out),
            ValueReader::PerDoc(of_doc) => {
                for (doc, slot) in docs.iter().zip(out.iter_mut()) {
                    *slot = of_doc.get(*doc as usize).copied().unwrap_or(NONE);
                }
            }
        }
    }
}

/// When a field has more distinct values than this in one segment, only the first this many
/// are read (in term order) and the answer says it is capped. It keeps a near-unique key
/// (`order.id`) from costing a walk over millions of terms.
pub(crate) const MAX_SEGMENT_VALUES: usize = 50_000;

/// Reads `field` for the selected documents of a segment. The second value is true when the
/// field had more than [`MAX_SEGMENT_VALUES`] values and the rest were skipped.
pub(crate) fn segment_values(
    signal: Signal,
    field: &FieldRef,
    reader: &SegmentReader,
    selected: &Selected,
) -> Result<(SegmentValues, bool), IndexError> {
    let mut names = Vec::new();
    if let Some(column) = column_field(signal, field, reader, selected, &mut names)? {
        let values = SegmentValues {
            names,
            reader: ValueReader::Column(column),
        };
        return Ok((values, false));
    }
    let mut of_doc = vec![NONE; reader.max_doc() as usize];
    let capped = match field.source(signal) {
        Source::Terms { field, prefix } => {
            walk_terms(reader, field, &prefix, selected, |name, docs| {
                let index = names.len() as u32;
                for &doc in docs {
                    of_doc[doc as usize] = index;
                }
                names.push(name);
            })?
        }
        // Served by the severity column above.
        Source::Severity => false,
    };
    let values = SegmentValues {
        names,
        reader: ValueReader::PerDoc(of_doc),
    };
    Ok((values, capped))
}

/// Counts of each value of `field` among a segment's selected documents (a document with
/// several values counts under each when read from postings). Returns true when the field had
/// more than [`MAX_SEGMENT_VALUES`] values.
pub(crate) fn segment_counts(
    signal: Signal,
    field: &FieldRef,
    reader: &SegmentReader,
    selected: &Selected,
    mut found: impl FnMut(&str, u64),
) -> Result<bool, IndexError> {
    let mut names = Vec::new();
    if let Some(column) = column_field(signal, field, reader, selected, &mut names)? {
        let mut counts = vec![0u64; names.len()];
        let mut values = [NONE; BLOCK];
        for block in selected.docs.chunks(BLOCK) {
            let values = &mut values[..block.len()];
            column.fill(block, values);
            for &v in values.iter() {
                if let Some(n) = counts.get_mut(v as usize) {
                    *n += 1;
                }
            }
        }
        for (name, n) in names.iter().zip(counts) {
            if n > 0 {
                found(name, n);
            }
        }
        return Ok(false);
    }
    match field.source(signal) {
        Source::Terms { field, prefix } => {
            walk_terms(reader, field, &prefix, selected, |name, docs| {
                found(&name, docs.len() as u64)
            })
        }
        // Served by the severity column above.
        Source::Severity => Ok(false),
    }
}

/// Severity band counts, reported under the bands' names.
fn report_bands(bands: [u64; 7], mut found: impl FnMut(&str, u64)) {
    for (name, n) in BANDS.iter().zip(bands) {
        if n > 0 {
            found(name, n);
        }
    }
}

/// Counts of every value of `field` over all of a segment's documents, from the term
/// dictionary's document frequencies (or the severity column) without reading postings. Only
/// right for a segment without deleted documents whose rows all fall in the range asked for.
/// Returns true when the field had more than [`MAX_SEGMENT_VALUES`] values.
pub(crate) fn whole_segment_values(
    signal: Signal,
    field: &FieldRef,
    reader: &SegmentReader,
    mut found: impl FnMut(&str, u64),
) -> Result<bool, IndexError> {
    if !field.indexed_in(signal, reader) {
        // Format 3 keeps this field in a column only: count its values there.
        whole_column_counts(signal, field, reader, found)?;
        return Ok(false);
    }
    match field.source(signal) {
        Source::Severity => {
            let column: Column<u64> = reader.fast_fields().u64("severity")?;
            let mut bands = [0u64; 7];
            for doc in 0..reader.max_doc() {
                bands[band_index(column.first(doc).unwrap_or(0))] += 1;
            }
            report_bands(bands, found);
            Ok(false)
        }
        Source::Terms { field, prefix } => {
            let inverted = reader.inverted_index(field)?;
            let mut range = inverted.terms().range();
            if !prefix.is_empty() {
                range = range.ge(&prefix);
                if let Some(end) = prefix_end(&prefix) {
                    range = range.lt(end);
                }
            }
            let mut stream = range.into_stream()?;
            let mut walked = 0;
            while stream.advance() {
                if walked == MAX_SEGMENT_VALUES {
                    return Ok(true);
                }
                walked += 1;
                if let Some(name) = term_text(&stream.key()[prefix.len()..], !prefix.is_empty()) {
                    found(&name, u64::from(stream.value().doc_freq));
                }
            }
            Ok(false)
        }
    }
}

/// Whether every row of a segment falls in `[start, end)` and none is deleted: then "all of
/// the segment" is the selection, and counts come from the term dictionary.
pub(crate) fn segment_within(
    signal: Signal,
    reader: &SegmentReader,
    start: u64,
    end: u64,
) -> Result<bool, IndexError> {
    if reader.num_deleted_docs() > 0 || reader.max_doc() == 0 {
        return Ok(false);
    }
    let name = match signal {
        Signal::Logs => "time",
        Signal::Spans => "start",
    };
    let column: Column<u64> = reader.fast_fields().u64(name)?;
    Ok(column.min_value() >= start && column.max_value() < end)
}

/// Calls `found` with each term under `prefix` (as text) that selected documents hold, and
/// those documents. Returns true when the walk stopped at [`MAX_SEGMENT_VALUES`] terms.
fn walk_terms(
    reader: &SegmentReader,
    field: Field,
    prefix: &[u8],
    selected: &Selected,
    mut found: impl FnMut(String, &[u32]),
) -> Result<bool, IndexError> {
    if !reader.schema().get_field_entry(field).is_indexed() {
        // Format 3's resource field, in a segment without an origin column: no values.
        return Ok(false);
    }
    let inverted = reader.inverted_index(field)?;
    let dictionary = inverted.terms();
    let mut range = dictionary.range();
    if !prefix.is_empty() {
        range = range.ge(prefix);
        if let Some(end) = prefix_end(prefix) {
            range = range.lt(end);
        }
    }
    let mut stream = range.into_stream()?;
    let mut walked = 0;
    let mut block: Option<BlockSegmentPostings> = None;
    let mut docs = Vec::new();
    while stream.advance() {
        if walked == MAX_SEGMENT_VALUES {
            return Ok(true);
        }
        walked += 1;
        let Some(name) = term_text(&stream.key()[prefix.len()..], !prefix.is_empty()) else {
            continue;
        };
        let info = stream.value().clone();
        selected_docs(&inverted, &info, selected, &mut block, &mut docs)?;
        if !docs.is_empty() {
            found(name, &docs);
        }
    }
    Ok(false)
}

/// The selected documents in a term's postings, into `docs`: walking the postings when they are
/// shorter than the selection, seeking each selected document in them otherwise.
fn selected_docs(
    inverted: &tantivy::InvertedIndexReader,
    info: &TermInfo,
    selected: &Selected,
    block: &mut Option<BlockSegmentPostings>,
    docs: &mut Vec<u32>,
) -> Result<(), IndexError> {
    docs.clear();
    if (info.doc_freq as usize) <= selected.docs.len().saturating_mul(4) {
        let postings = match block {
            Some(postings) => {
                inverted.reset_block_postings_from_terminfo(info, postings)?;
                postings
            }
            None => block.insert(
                inverted.read_block_postings_from_terminfo(info, IndexRecordOption::Basic)?,
            ),
        };
        loop {
            let found = postings.docs();
            if found.is_empty() {
                break;
            }
            docs.extend(found.iter().copied().filter(|&d| selected.set.contains(d)));
            postings.advance();
        }
    } else {
        let mut postings = inverted.read_postings_from_terminfo(info, IndexRecordOption::Basic)?;
        for &doc in &selected.docs {
            let at = if postings.doc() < doc {
                postings.seek(doc)
            } else {
                postings.doc()
            };
            if at == TERMINATED {
                break;
            }
            if at == doc {
                docs.push(doc);
            }
        }
    }
    Ok(())
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A term's value as text: a keyword as is; a JSON value (type code then bytes) as the query
/// language would write it, so a facet value clicked becomes a filter that matches it.
fn term_text(bytes: &[u8], json: bool) -> Option<String> {
    if !json {
        return String::from_utf8(bytes.to_vec()).ok();
    }
    let (&code, value) = bytes.split_first()?;
    let fast = || value.try_into().ok().map(u64::from_be_bytes);
    match Type::from_code(code)? {
        Type::Str => String::from_utf8(value.to_vec()).ok(),
        Type::I64 => Some(tantivy::u64_to_i64(fast()?).to_string()),
        Type::U64 => Some(fast()?.to_string()),
        Type::F64 => Some(tantivy::u64_to_f64(fast()?).to_string()),
        Type::Bool => Some((fast()? != 0).to_string()),
        _ => None,
    }
}

/// The attribute keys of a JSON field in one segment, each with its number of distinct values
/// in the segment (read from term ordinals, without walking the values).
pub(crate) fn json_keys(
    reader: &SegmentReader,
    field: Field,
) -> Result<Vec<(String, u64)>, IndexError> {
    let inverted = reader.inverted_index(field)?;
    let dictionary = inverted.terms();
    let mut keys = Vec::new();
    let mut from: Vec<u8> = Vec::new();
    loop {
        let mut stream = dictionary.range().ge(&from).into_stream()?;
        if !stream.advance() {
            break;
        }
        let key = stream.key();
        let Some(end_of_path) = key.iter().position(|&b| b == 0) else {
            break;
        };
        let path = &key[..=end_of_path];
        let first = stream.term_ord();
        let next = prefix_end(path);
        let last = match &next {
            Some(next) => {
                let mut after = dictionary.range().ge(next).into_stream()?;
                if after.advance() {
                    after.term_ord()
                } else {
                    dictionary.num_terms() as u64
                }
            }
            None => dictionary.num_terms() as u64,
        };
        // Paths separate segments with \x01, where the query language writes a dot.
        let name = String::from_utf8_lossy(&path[..end_of_path]).replace('\u{1}', ".");
        keys.push((name, last.saturating_sub(first)));
        match next {
            Some(next) => from = next,
            None => break,
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for text in [
            "service",
            "name",
            "kind",
            "status",
            "scope",
            "attr.http.route",
            "resource.host.name",
        ] {
            let field = FieldRef::parse(Signal::Spans, text).unwrap();
            assert_eq!(field.to_string(), text);
        }
        assert_eq!(
            FieldRef::parse(Signal::Logs, "severity").unwrap(),
            FieldRef::Severity
        );
    }

    #[test]
    fn unknown_fields_name_the_alternatives() {
        let error = FieldRef::parse(Signal::Logs, "name").unwrap_err();
        assert!(error.contains("service, severity, event, scope"), "{error}");
        assert!(FieldRef::parse(Signal::Spans, "attr.").is_err());
    }

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xFF]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
