//! How a row is kept in a partition: split into columns at write, rebuilt at read.
//!
//! Format 1 stores each row's whole protobuf encoding. Format 2 stores only what is particular
//! to the row (body, attributes, severity, event, …) and keeps the rest once:
//! - time (logs) or start and duration (spans) in the u64 columns queries already use;
//! - trace, span and parent span IDs in u64 columns (a span's trace ID in a dictionary-encoded
//!   column, since a trace's spans share it). They are random, so the doc store could not
//!   compress them, and each was also a term of its own; now a 12-bit bucket is the term and
//!   the column confirms the match (see `ids`);
//! - service, resource and scope (whatever a batch's rows share) as one encoded "origin" in a
//!   dictionary-encoded bytes column: one copy per distinct origin per segment, and a few bits
//!   per row.
//!
//! The split works on the row's encoding field by field, so the parts are the exact bytes
//! `LogRow::encode` wrote: decoding the kept part and merging the origin back gives the same
//! row (protobuf merges concatenated encodings), and nothing is encoded twice at write.

use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint};
use tantivy::columnar::{BytesColumn, Column, StrColumn};
use tantivy::schema::Value;
use tantivy::{DocAddress, DocId, Searcher, SegmentReader, TantivyDocument};

use crate::error::IndexError;
use crate::format::Format;
use crate::format::column;
use crate::ids::{fnv1a, span_number, trace_halves};
use crate::model::{LogRow, SpanRow};
use crate::severity::text_for_number;
use crate::{log_fields, span_fields};

fn trace_bytes(hi: u64, lo: u64) -> Vec<u8> {
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&hi.to_be_bytes());
    id.extend_from_slice(&lo.to_be_bytes());
    id
}

/// The top-level fields of a protobuf encoding, each as its tag and its whole bytes (key
/// included). Stops at the first malformed field, handing back the rest as tag 0.
fn fields(encoded: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut rest = encoded;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let whole = rest;
        let Some(len) = field_len(&mut rest) else {
            rest = &[];
            return Some((0, whole));
        };
        let (field, after) = whole.split_at(len.0);
        rest = after;
        Some((len.1, field))
    })
}

/// Length and tag of the field at the start of `buf`.
fn field_len(buf: &mut &[u8]) -> Option<(usize, u32)> {
    let start = buf.len();
    let (tag, wire_type) = decode_key(buf).ok()?;
    let body = match wire_type {
        WireType::Varint => {
            decode_varint(buf).ok()?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => usize::try_from(decode_varint(buf).ok()?).ok()?,
        WireType::StartGroup | WireType::EndGroup => return None,
    };
    if buf.len() < body {
        return None;
    }
    Some((start - buf.len() + body, tag))
}

/// A log row split for format 2.
pub(crate) struct LogSplit {
    /// The doc store's part.
    pub(crate) kept: Vec<u8>,
    /// Service, resource and scope fields.
    pub(crate) origin: Vec<u8>,
    /// The trace ID, when it left the row for the columns.
    pub(crate) trace_id: Option<(u64, u64)>,
    /// The span ID, likewise.
    pub(crate) span_id: Option<u64>,
}

// Tags of `LogRow` (model.rs).
const LOG_TIME: u32 = 1;
const LOG_SERVICE: u32 = 3;
const LOG_SEVERITY_NUMBER: u32 = 4;
const LOG_SEVERITY_TEXT: u32 = 5;
const LOG_EVENT: u32 = 6;
const LOG_TRACE_ID: u32 = 8;
const LOG_SPAN_ID: u32 = 9;
const LOG_RESOURCE: u32 = 11;
const LOG_SCOPE_NAME: u32 = 12;
const LOG_SCOPE_VERSION: u32 = 13;
const LOG_SCOPE_ATTRIBUTES: u32 = 16;
const LOG_ORIGIN: u32 = 17;

/// Splits `row` for a partition of `format` (2 or later). Format 3 also leaves out the event
/// (its column holds it) and, when the severity text is the one its number names (`INFO` for
/// 9, as weft fills it in when a client sends none), both: the `severity` column holds the
/// number, and the text follows from it. Any other severity (a text of the client's own, none
/// at all, a number outside 1–24) stays in the row as it is.
///
/// `origins` are the origins of a packed WAL entry ([`crate::RowBatch::encode_packed`]): a row
/// that names one (`origin`) takes its bytes from there, exactly those it left out.
pub(crate) fn split_log(
    row: &LogRow,
    encoded: &[u8],
    origins: &[&[u8]],
    format: Format,
) -> LogSplit {
    let trace_id = trace_halves(&row.trace_id);
    let span_id = span_number(&row.span_id);
    let v3 = format >= Format::V3;
    let severity_in_column = v3
        && (1..=24).contains(&row.severity_number)
        && row.severity_text == text_for_number(row.severity_number);
    let mut kept = Vec::with_capacity(encoded.len());
    let mut origin = Vec::new();
    for (tag, bytes) in fields(encoded) {
        match tag {
            LOG_TIME => {}
            LOG_SEVERITY_NUMBER | LOG_SEVERITY_TEXT if severity_in_column => {}
            LOG_EVENT if v3 => {}
            LOG_TRACE_ID if trace_id.is_some() => {}
            LOG_SPAN_ID if span_id.is_some() => {}
            LOG_SERVICE | LOG_RESOURCE | LOG_SCOPE_NAME | LOG_SCOPE_VERSION
            | LOG_SCOPE_ATTRIBUTES => origin.extend_from_slice(bytes),
            LOG_ORIGIN => origin.extend_from_slice(named_origin(bytes, origins)),
            _ => kept.extend_from_slice(bytes),
        }
    }
    LogSplit {
        kept,
        origin,
        trace_id,
        span_id,
    }
}

/// A span row split for format 2.
pub(crate) struct SpanSplit {
    /// The doc store's part.
    pub(crate) kept: Vec<u8>,
    /// Service, resource and scope fields.
    pub(crate) origin: Vec<u8>,
    /// The span ID, when it left the row for its column.
    pub(crate) span_id: Option<u64>,
    /// The parent span ID, likewise.
    pub(crate) parent_span_id: Option<u64>,
}

// Tags of `SpanRow` (model.rs).
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_PARENT_SPAN_ID: u32 = 3;
const SPAN_SERVICE: u32 = 7;
const SPAN_START: u32 = 8;
const SPAN_END: u32 = 9;
const SPAN_RESOURCE: u32 = 11;
const SPAN_SCOPE_NAME: u32 = 12;
const SPAN_SCOPE_VERSION: u32 = 13;
const SPAN_SCOPE_ATTRIBUTES: u32 = 19;
const SPAN_ORIGIN: u32 = 21;

/// Splits a span row as [`split_log`] does a log row.
pub(crate) fn split_span(row: &SpanRow, encoded: &[u8], origins: &[&[u8]]) -> SpanSplit {
    let trace_in_column = row.trace_id.len() == 16;
    let span_id = span_number(&row.span_id);
    let parent_span_id = span_number(&row.parent_span_id);
    // The end is rebuilt as start + duration, which holds only when it is not before the start.
    let end_in_columns = row.end_time_unix_nano >= row.start_time_unix_nano;
    let mut kept = Vec::with_capacity(encoded.len());
    let mut origin = Vec::new();
    for (tag, bytes) in fields(encoded) {
        match tag {
            SPAN_START => {}
            SPAN_END if end_in_columns => {}
            SPAN_TRACE_ID if trace_in_column => {}
            SPAN_SPAN_ID if span_id.is_some() => {}
            SPAN_PARENT_SPAN_ID if parent_span_id.is_some() => {}
            SPAN_SERVICE
            | SPAN_RESOURCE
            | SPAN_SCOPE_NAME
            | SPAN_SCOPE_VERSION
            | SPAN_SCOPE_ATTRIBUTES => origin.extend_from_slice(bytes),
            SPAN_ORIGIN => origin.extend_from_slice(named_origin(bytes, origins)),
            _ => kept.extend_from_slice(bytes),
        }
    }
    SpanSplit {
        kept,
        origin,
        span_id,
        parent_span_id,
    }
}

/// The origin a row's `origin` field (`field`, key included) names among `origins`. The
/// batch's encoding and its rows come from one `encode_packed`, so every name is in range; a
/// name that is not (never written) stands for no origin.
fn named_origin<'a>(field: &[u8], origins: &[&'a [u8]]) -> &'a [u8] {
    let mut rest = field;
    let index = decode_key(&mut rest)
        .ok()
        .and_then(|_| decode_varint(&mut rest).ok())
        .and_then(|n| usize::try_from(n).ok())
        .and_then(|n| n.checked_sub(1));
    index.and_then(|i| origins.get(i).copied()).unwrap_or(&[])
}

/// Format 2 and 3 columns of one segment of a logs partition.
struct LogColumns {
    time: Option<Column<u64>>,
    severity: Option<Column<u64>>,
    event: Option<StrColumn>,
    trace_hi: Option<Column<u64>>,
    trace_lo: Option<Column<u64>>,
    span: Option<Column<u64>>,
    origin: Option<BytesColumn>,
}

impl LogColumns {
    fn open(reader: &SegmentReader) -> Result<Self, IndexError> {
        let fast = reader.fast_fields();
        Ok(LogColumns {
            time: fast.column_opt("time")?,
            severity: fast.column_opt("severity")?,
            event: fast.str("event")?,
            trace_hi: fast.column_opt(column::TRACE_HI)?,
            trace_lo: fast.column_opt(column::TRACE_LO)?,
            span: fast.column_opt(column::SPAN)?,
            origin: fast.bytes(column::ORIGIN)?,
        })
    }

    fn restore(&self, doc: DocId, row: &mut LogRow, buf: &mut Vec<u8>) -> Result<(), IndexError> {
        merge_origin(self.origin.as_ref(), doc, row, buf)?;
        row.time_unix_nano = first(&self.time, doc).unwrap_or(0);
        // Format 3 keeps these in columns only (see `split_log`); a row that kept its own, as
        // every row of format 2 does, has a nonzero number or is of severity 0.
        if row.severity_number == 0 {
            let severity = first(&self.severity, doc).unwrap_or(0);
            row.severity_number = i32::try_from(severity).unwrap_or(0);
            if row.severity_number != 0 && row.severity_text.is_empty() {
                row.severity_text = text_for_number(row.severity_number);
            }
        }
        if row.event.is_empty()
            && let Some(column) = &self.event
            && let Some(ord) = column.term_ords(doc).next()
        {
            column.ord_to_str(ord, &mut row.event)?;
        }
        if let (Some(hi), Some(lo)) = (first(&self.trace_hi, doc), first(&self.trace_lo, doc)) {
            row.trace_id = trace_bytes(hi, lo);
        }
        if let Some(span) = first(&self.span, doc) {
            row.span_id = span.to_be_bytes().to_vec();
        }
        Ok(())
    }
}

/// Format 2 columns of one segment of a spans partition.
struct SpanColumns {
    start: Option<Column<u64>>,
    duration: Option<Column<u64>>,
    trace_id: Option<BytesColumn>,
    span: Option<Column<u64>>,
    parent: Option<Column<u64>>,
    origin: Option<BytesColumn>,
}

impl SpanColumns {
    fn open(reader: &SegmentReader) -> Result<Self, IndexError> {
        let fast = reader.fast_fields();
        Ok(SpanColumns {
            start: fast.column_opt("start")?,
            duration: fast.column_opt("duration")?,
            trace_id: fast.bytes(column::TRACE)?,
            span: fast.column_opt(column::SPAN)?,
            parent: fast.column_opt(column::PARENT)?,
            origin: fast.bytes(column::ORIGIN)?,
        })
    }

    /// `row` is decoded from the kept part, so a field it has is one the split left in it.
    fn restore(&self, doc: DocId, row: &mut SpanRow, buf: &mut Vec<u8>) -> Result<(), IndexError> {
        merge_origin(self.origin.as_ref(), doc, row, buf)?;
        let start = first(&self.start, doc).unwrap_or(0);
        row.start_time_unix_nano = start;
        // An end the split kept (one before its start) decodes as nonzero; normalization
        // never lets a span end before its start, so an end of 0 is never kept.
        if row.end_time_unix_nano == 0 {
            row.end_time_unix_nano = start.saturating_add(first(&self.duration, doc).unwrap_or(0));
        }
        if row.trace_id.is_empty()
            && let Some(column) = &self.trace_id
            && let Some(ord) = column.term_ords(doc).next()
        {
            buf.clear();
            if column.ord_to_bytes(ord, buf)? {
                row.trace_id = buf.clone();
            }
        }
        if let Some(span) = first(&self.span, doc) {
            row.span_id = span.to_be_bytes().to_vec();
        }
        if let Some(parent) = first(&self.parent, doc) {
            row.parent_span_id = parent.to_be_bytes().to_vec();
        }
        Ok(())
    }
}

fn first(column: &Option<Column<u64>>, doc: DocId) -> Option<u64> {
    column.as_ref().and_then(|c| c.first(doc))
}

fn merge_origin<M: Message>(
    column: Option<&BytesColumn>,
    doc: DocId,
    row: &mut M,
    buf: &mut Vec<u8>,
) -> Result<(), IndexError> {
    let Some(column) = column else {
        return Ok(());
    };
    let Some(ord) = column.term_ords(doc).next() else {
        return Ok(());
    };
    buf.clear();
    if column.ord_to_bytes(ord, buf)? {
        row.merge(buf.as_slice())?;
    }
    Ok(())
}

/// Reads rows back from one searcher, whichever format its partition has, opening each
/// segment's columns once.
pub(crate) struct RowReader<'s> {
    searcher: &'s Searcher,
    /// Whether the partition keeps parts of rows in columns (format 2).
    columnar: bool,
    logs: Vec<Option<LogColumns>>,
    spans: Vec<Option<SpanColumns>>,
    buf: Vec<u8>,
}

impl<'s> RowReader<'s> {
    pub(crate) fn new(searcher: &'s Searcher) -> Self {
        let segments = searcher.segment_readers().len();
        RowReader {
            searcher,
            columnar: Format::of_checked_schema(searcher.schema()) >= Format::V2,
            logs: (0..segments).map(|_| None).collect(),
            spans: (0..segments).map(|_| None).collect(),
            buf: Vec::new(),
        }
    }

    fn stored(
        &self,
        field: tantivy::schema::Field,
        address: DocAddress,
    ) -> Result<Vec<u8>, IndexError> {
        let doc: TantivyDocument = self.searcher.doc(address)?;
        Ok(doc
            .get_first(field)
            .and_then(|v| v.as_bytes())
            .map(<[u8]>::to_vec)
            .unwrap_or_default())
    }

    /// The log row at `address`, and a stable hash of it (the tiebreak of log cursors): of
    /// its whole encoding, which is what format 1 stores, so a row hashes the same in both.
    pub(crate) fn log(&mut self, address: DocAddress) -> Result<(LogRow, u64), IndexError> {
        let stored = self.stored(log_fields().source, address)?;
        let mut row = LogRow::decode(stored.as_slice())?;
        if !self.columnar {
            return Ok((row, fnv1a(&stored)));
        }
        {
            let segment = address.segment_ord as usize;
            if self.logs[segment].is_none() {
                self.logs[segment] = Some(LogColumns::open(
                    self.searcher.segment_reader(address.segment_ord),
                )?);
            }
            if let Some(columns) = &self.logs[segment] {
                columns.restore(address.doc_id, &mut row, &mut self.buf)?;
            }
        }
        let hash = row_hash(&row);
        Ok((row, hash))
    }

    /// The span row at `address`.
    pub(crate) fn span(&mut self, address: DocAddress) -> Result<SpanRow, IndexError> {
        let stored = self.stored(span_fields().source, address)?;
        let mut row = SpanRow::decode(stored.as_slice())?;
        if self.columnar {
            let segment = address.segment_ord as usize;
            if self.spans[segment].is_none() {
                self.spans[segment] = Some(SpanColumns::open(
                    self.searcher.segment_reader(address.segment_ord),
                )?);
            }
            if let Some(columns) = &self.spans[segment] {
                columns.restore(address.doc_id, &mut row, &mut self.buf)?;
            }
        }
        Ok(row)
    }
}

/// The tiebreak of a log row in cursors: a hash of its whole encoding.
pub(crate) fn row_hash(row: &LogRow) -> u64 {
    fnv1a(&row.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

    /// The tag constants name the fields `model.rs` declares: a row with only that field set
    /// encodes as one field of that tag.
    #[test]
    fn tag_constants_match_the_row_messages() {
        let id = |n: u8| vec![n; 8];
        let kv = vec![opentelemetry_proto::tonic::common::v1::KeyValue {
            key: "k".into(),
            ..Default::default()
        }];
        let logs: [(u32, LogRow); 12] = [
            (
                LOG_TIME,
                LogRow {
                    time_unix_nano: 1,
                    ..Default::default()
                },
            ),
            (
                LOG_SEVERITY_NUMBER,
                LogRow {
                    severity_number: 9,
                    ..Default::default()
                },
            ),
            (
                LOG_SEVERITY_TEXT,
                LogRow {
                    severity_text: "INFO".into(),
                    ..Default::default()
                },
            ),
            (
                LOG_EVENT,
                LogRow {
                    event: "e".into(),
                    ..Default::default()
                },
            ),
            (
                LOG_SERVICE,
                LogRow {
                    service: "s".into(),
                    ..Default::default()
                },
            ),
            (
                LOG_TRACE_ID,
                LogRow {
                    trace_id: vec![1; 16],
                    ..Default::default()
                },
            ),
            (
                LOG_SPAN_ID,
                LogRow {
                    span_id: id(2),
                    ..Default::default()
                },
            ),
            (
                LOG_RESOURCE,
                LogRow {
                    resource: kv.clone().into(),
                    ..Default::default()
                },
            ),
            (
                LOG_SCOPE_NAME,
                LogRow {
                    scope_name: "n".into(),
                    ..Default::default()
                },
            ),
            (
                LOG_SCOPE_VERSION,
                LogRow {
                    scope_version: "v".into(),
                    ..Default::default()
                },
            ),
            (
                LOG_SCOPE_ATTRIBUTES,
                LogRow {
                    scope_attributes: kv.clone().into(),
                    ..Default::default()
                },
            ),
            (
                LOG_ORIGIN,
                LogRow {
                    origin: 1,
                    ..Default::default()
                },
            ),
        ];
        for (tag, row) in logs {
            let tags: Vec<u32> = fields(&row.encode_to_vec()).map(|(t, _)| t).collect();
            assert_eq!(tags, vec![tag], "{row:?}");
        }
        let spans: [(u32, SpanRow); 11] = [
            (
                SPAN_TRACE_ID,
                SpanRow {
                    trace_id: vec![1; 16],
                    ..Default::default()
                },
            ),
            (
                SPAN_SPAN_ID,
                SpanRow {
                    span_id: id(2),
                    ..Default::default()
                },
            ),
            (
                SPAN_PARENT_SPAN_ID,
                SpanRow {
                    parent_span_id: id(3),
                    ..Default::default()
                },
            ),
            (
                SPAN_SERVICE,
                SpanRow {
                    service: "s".into(),
                    ..Default::default()
                },
            ),
            (
                SPAN_START,
                SpanRow {
                    start_time_unix_nano: 1,
                    ..Default::default()
                },
            ),
            (
                SPAN_END,
                SpanRow {
                    end_time_unix_nano: 1,
                    ..Default::default()
                },
            ),
            (
                SPAN_RESOURCE,
                SpanRow {
                    resource: kv.clone().into(),
                    ..Default::default()
                },
            ),
            (
                SPAN_SCOPE_NAME,
                SpanRow {
                    scope_name: "n".into(),
                    ..Default::default()
                },
            ),
            (
                SPAN_SCOPE_VERSION,
                SpanRow {
                    scope_version: "v".into(),
                    ..Default::default()
                },
            ),
            (
                SPAN_SCOPE_ATTRIBUTES,
                SpanRow {
                    scope_attributes: kv.clone().into(),
                    ..Default::default()
                },
            ),
            (
                SPAN_ORIGIN,
                SpanRow {
                    origin: 1,
                    ..Default::default()
                },
            ),
        ];
        for (tag, row) in spans {
            let tags: Vec<u32> = fields(&row.encode_to_vec()).map(|(t, _)| t).collect();
            assert_eq!(tags, vec![tag], "{row:?}");
        }
    }

    #[test]
    fn a_packed_row_splits_into_the_bytes_its_plain_encoding_does() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let resource = |host: &str| -> crate::model::SharedAttributes {
            vec![kv("service.name", "checkout"), kv("host.name", host)].into()
        };
        let (a, b) = (resource("a1"), resource("b2"));
        let scope: crate::model::SharedAttributes = vec![kv("scope.kind", "test")].into();
        let log = |body: &str, resource: &crate::model::SharedAttributes| LogRow {
            time_unix_nano: 5,
            service: "checkout".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.into())),
            }),
            trace_id: vec![1; 16],
            attributes: vec![kv("order.id", body)],
            resource: resource.clone(),
            scope_name: "io.weft".into(),
            scope_attributes: scope.clone(),
            ..Default::default()
        };
        let span = |name: &str, resource: &crate::model::SharedAttributes| SpanRow {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: name.into(),
            service: "checkout".into(),
            start_time_unix_nano: 5,
            end_time_unix_nano: 9,
            resource: resource.clone(),
            scope_version: "1.0".into(),
            ..Default::default()
        };
        let mut batch = crate::RowBatch {
            logs: vec![log("x", &a), log("y", &a), log("z", &b), log("w", &a)],
            spans: vec![span("p", &b), span("q", &b), span("r", &a)],
        };
        let plain = batch.encode_to_vec();
        let packed = batch.encode_packed();
        assert!(
            packed.len() < plain.len(),
            "{} < {}",
            packed.len(),
            plain.len()
        );
        let plain_rows = batch.row_encodings(&plain).unwrap();
        let packed_rows = batch.row_encodings(&packed).unwrap();
        assert!(plain_rows.log_origins.is_empty());
        assert_eq!(packed_rows.log_origins.len(), 3, "runs a, b, a");
        assert_eq!(packed_rows.span_origins.len(), 2, "runs b, a");
        for (i, row) in batch.logs.iter().enumerate() {
            for format in [Format::V2, Format::V3] {
                let want = split_log(row, plain_rows.logs[i], &[], format);
                let got = split_log(row, packed_rows.logs[i], &packed_rows.log_origins, format);
                assert_eq!(got.kept, want.kept, "log {i}");
                assert_eq!(got.origin, want.origin, "log {i}");
                assert!(!got.origin.is_empty());
            }
        }
        for (i, row) in batch.spans.iter().enumerate() {
            let want = split_span(row, plain_rows.spans[i], &[]);
            let got = split_span(row, packed_rows.spans[i], &packed_rows.span_origins);
            assert_eq!(got.kept, want.kept, "span {i}");
            assert_eq!(got.origin, want.origin, "span {i}");
        }
    }

    #[test]
    fn ids_of_other_lengths_stay_in_the_row() {
        let row = LogRow {
            time_unix_nano: 5,
            trace_id: vec![1; 15],
            span_id: vec![2; 8],
            service: "s".into(),
            ..Default::default()
        };
        let encoded = row.encode_to_vec();
        let split = split_log(&row, &encoded, &[], Format::V2);
        assert_eq!(split.trace_id, None);
        assert_eq!(split.span_id, Some(u64::from_be_bytes([2; 8])));
        let kept = LogRow::decode(split.kept.as_slice()).unwrap();
        assert_eq!(kept.trace_id, vec![1; 15]);
        assert!(kept.span_id.is_empty() && kept.service.is_empty() && kept.time_unix_nano == 0);
        let origin = LogRow::decode(split.origin.as_slice()).unwrap();
        assert_eq!(origin.service, "s");
    }

    #[test]
    fn format_3_leaves_event_and_a_named_severity_to_the_columns_and_keeps_any_other() {
        let row = |severity_number, text: &str| LogRow {
            severity_number,
            severity_text: text.into(),
            event: "order.placed".into(),
            ..Default::default()
        };
        // (number, text, what the kept row holds of them)
        for (number, text, kept) in [
            (9, "INFO", (0, "")),
            (10, "INFO2", (0, "")),
            (9, "Information", (9, "Information")),
            (9, "", (9, "")),
            (-3, "INFO", (-3, "INFO")),
            (0, "", (0, "")),
            (0, "custom", (0, "custom")),
        ] {
            let row = row(number, text);
            let encoded = row.encode_to_vec();
            let v3 =
                LogRow::decode(split_log(&row, &encoded, &[], Format::V3).kept.as_slice()).unwrap();
            assert_eq!(
                (v3.severity_number, v3.severity_text.as_str()),
                kept,
                "{row:?}"
            );
            assert!(v3.event.is_empty());
            let v2 =
                LogRow::decode(split_log(&row, &encoded, &[], Format::V2).kept.as_slice()).unwrap();
            assert_eq!(
                (
                    v2.severity_number,
                    v2.severity_text.as_str(),
                    v2.event.as_str()
                ),
                (number, text, "order.placed")
            );
        }
    }

    #[test]
    fn a_span_ending_before_it_starts_keeps_its_end_in_the_row() {
        let row = SpanRow {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            start_time_unix_nano: 10,
            end_time_unix_nano: 4,
            ..Default::default()
        };
        let encoded = row.encode_to_vec();
        let kept = SpanRow::decode(split_span(&row, &encoded, &[]).kept.as_slice()).unwrap();
        assert_eq!(kept.end_time_unix_nano, 4);
        assert_eq!(kept.start_time_unix_nano, 0);
        assert!(kept.trace_id.is_empty() && kept.span_id.is_empty());
    }

    #[test]
    fn fields_walks_every_wire_type_and_hands_back_a_malformed_rest() {
        let row = LogRow {
            time_unix_nano: 1,            // fixed64
            severity_number: 9,           // varint
            flags: 3,                     // fixed32
            severity_text: "INFO".into(), // length-delimited
            ..Default::default()
        };
        let encoded = row.encode_to_vec();
        let tags: Vec<u32> = fields(&encoded).map(|(tag, _)| tag).collect();
        assert_eq!(tags, vec![1, 4, 5, 14]);
        let total: usize = fields(&encoded).map(|(_, bytes)| bytes.len()).sum();
        assert_eq!(total, encoded.len());
        // A length running past the end.
        let broken = [0x2a, 0x7f, b'x'];
        assert_eq!(fields(&broken).collect::<Vec<_>>(), vec![(0, &broken[..])]);
    }
}
