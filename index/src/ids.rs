//! Finding rows by trace, span or parent span ID, in partitions of either format.
//!
//! Format 1 indexes each ID as its full bytes: one term per distinct ID, which for random IDs
//! means a term (key and postings entry, 20–34 bytes) per row. Format 2 indexes only a 12-bit
//! bucket of the ID and keeps the ID itself in a u64 column (see `rows`): a lookup reads the
//! bucket's postings (about one row in 4,096 of a segment) and keeps the rows whose column
//! holds the ID. A span's trace ID, shared by its trace's spans, is checked against its
//! dictionary-encoded column by ordinal. Format 3 keeps the buckets of trace IDs only: span
//! and parent span IDs are looked up by scanning their column (`column_scan`), which reads up
//! to 8 bytes per row of each segment searched, where their buckets cost 2–2.5 bytes per row
//! on disk. Only queries make such lookups: a user's `span_id:`, and the UI's link from a span
//! to its logs (`trace_id:… span_id:…`). [`IdQuery`] does each, per segment, from the
//! segment's own schema.

use tantivy::query::{ConstScorer, EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED, TantivyError, Term};

use crate::column_scan::ColumnScan;
use crate::format::Format;
use crate::format::column;
use crate::{Signal, log_fields, span_fields};

/// Bits of an ID's hash that its format 2 term keeps.
///
/// Fewer bits make fewer, longer postings lists: each row costs about `BUCKET_BITS` bits of
/// postings, and each bucket a term. A lookup checks the column of every row in its bucket,
/// one in 4,096 of a segment: 2,400 rows at 10 M, a few tens of microseconds. At 16 bits the
/// terms alone cost 2.4 bytes per row at a million rows (measured), for lookups that were
/// already fast.
pub(crate) const BUCKET_BITS: u32 = 12;

/// The bucket an ID is indexed under in format 2: [`BUCKET_BITS`] of a hash, so IDs whose
/// leading or trailing bytes are not random (a timestamp, a counter) still spread over every
/// bucket.
pub(crate) fn bucket(id: &[u8]) -> [u8; 2] {
    let hash = fnv1a(id);
    let folded = (hash ^ (hash >> 32)) as u32;
    ((folded ^ (folded >> 16)) as u16 & ((1 << BUCKET_BITS) - 1)).to_be_bytes()
}

/// FNV-1a: a cheap, stable hash (ID buckets, log cursors' tiebreak).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A 16-byte trace ID as two big-endian halves.
pub(crate) fn trace_halves(id: &[u8]) -> Option<(u64, u64)> {
    let id: &[u8; 16] = id.try_into().ok()?;
    let (hi, lo) = id.split_at(8);
    Some((
        u64::from_be_bytes(hi.try_into().ok()?),
        u64::from_be_bytes(lo.try_into().ok()?),
    ))
}

/// An 8-byte span ID as a big-endian number.
pub(crate) fn span_number(id: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// Which ID a lookup is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdKind {
    /// A 16-byte trace ID.
    Trace,
    /// An 8-byte span ID.
    Span,
    /// An 8-byte parent span ID (spans only; log records have none, and match no such query).
    Parent,
}

/// Rows of one signal whose `kind` of ID is `id`.
#[derive(Clone, Debug)]
pub(crate) struct IdQuery {
    signal: Signal,
    kind: IdKind,
    id: Vec<u8>,
}

impl IdQuery {
    /// A query for `id`, which must be 16 bytes for a trace and 8 for a span.
    pub(crate) fn new(signal: Signal, kind: IdKind, id: &[u8]) -> Self {
        IdQuery {
            signal,
            kind,
            id: id.to_vec(),
        }
    }

    /// The term field (full ID in format 1, bucket in format 2) and the format 2 column that
    /// holds the whole ID.
    fn layout(&self) -> Option<(Field, IdColumn)> {
        Some(match (self.signal, self.kind) {
            (Signal::Logs, IdKind::Trace) => (
                log_fields().trace_id,
                IdColumn::Numbers(&[column::TRACE_HI, column::TRACE_LO]),
            ),
            (Signal::Logs, IdKind::Span) => {
                (log_fields().span_id, IdColumn::Numbers(&[column::SPAN]))
            }
            (Signal::Logs, IdKind::Parent) => return None,
            (Signal::Spans, IdKind::Trace) => {
                (span_fields().trace_id, IdColumn::Bytes(column::TRACE))
            }
            (Signal::Spans, IdKind::Span) => {
                (span_fields().span_id, IdColumn::Numbers(&[column::SPAN]))
            }
            (Signal::Spans, IdKind::Parent) => (
                span_fields().parent_span_id,
                IdColumn::Numbers(&[column::PARENT]),
            ),
        })
    }

    /// The column values a row must hold to match, in the order of `layout`'s columns.
    fn column_values(&self) -> Option<Vec<u64>> {
        match self.kind {
            IdKind::Trace => trace_halves(&self.id).map(|(hi, lo)| vec![hi, lo]),
            IdKind::Span | IdKind::Parent => span_number(&self.id).map(|n| vec![n]),
        }
    }
}

/// Where format 2 keeps an ID whole.
#[derive(Clone, Copy)]
enum IdColumn {
    /// u64 columns, big-endian pieces of the ID.
    Numbers(&'static [&'static str]),
    /// A dictionary-encoded bytes column.
    Bytes(&'static str),
}

impl Query for IdQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(IdWeight(self.clone())))
    }
}

struct IdWeight(IdQuery);

impl IdWeight {
    /// The matching documents of one segment, in order.
    fn matches(&self, reader: &SegmentReader) -> tantivy::Result<Vec<DocId>> {
        let query = &self.0;
        let Some((field, id_column)) = query.layout() else {
            return Ok(Vec::new());
        };
        if Format::of_checked_schema(reader.schema()) == Format::V1 {
            // The term is the whole ID.
            return term_matches(reader, Term::from_field_bytes(field, &query.id));
        }
        let candidates = || term_matches(reader, Term::from_field_bytes(field, &bucket(&query.id)));
        match id_column {
            IdColumn::Numbers(names) => {
                let Some(want) = query.column_values() else {
                    return Ok(Vec::new());
                };
                let mut columns = Vec::with_capacity(names.len());
                for name in names {
                    match reader.fast_fields().column_opt::<u64>(name)? {
                        Some(column) => columns.push(column),
                        // No row of the segment has this kind of ID.
                        None => return Ok(Vec::new()),
                    }
                }
                Ok(candidates()?
                    .into_iter()
                    .filter(|&doc| {
                        columns
                            .iter()
                            .zip(&want)
                            .all(|(column, want)| column.first(doc) == Some(*want))
                    })
                    .collect())
            }
            IdColumn::Bytes(name) => {
                let Some(column) = reader.fast_fields().bytes(name)? else {
                    return Ok(Vec::new());
                };
                // The ID's place in the segment's dictionary; rows holding it hold that ord.
                let Some(ord) = column.dictionary().term_ord(&query.id)? else {
                    return Ok(Vec::new());
                };
                Ok(candidates()?
                    .into_iter()
                    .filter(|&doc| column.term_ords(doc).next() == Some(ord))
                    .collect())
            }
        }
    }
}

fn term_matches(reader: &SegmentReader, term: Term) -> tantivy::Result<Vec<DocId>> {
    let Some(mut postings) = reader
        .inverted_index(term.field())?
        .read_postings(&term, IndexRecordOption::Basic)?
    else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    let mut doc = postings.doc();
    while doc != TERMINATED {
        docs.push(doc);
        doc = postings.advance();
    }
    Ok(docs)
}

impl IdWeight {
    /// The rows of a format 3 segment holding a span or parent span ID, found by scanning its
    /// column; `None` for the lookups that go through a bucket's postings.
    fn column_scan(
        &self,
        reader: &SegmentReader,
        boost: Score,
    ) -> tantivy::Result<Option<Box<dyn Scorer>>> {
        let query = &self.0;
        if query.kind == IdKind::Trace || Format::of_checked_schema(reader.schema()) != Format::V3 {
            return Ok(None);
        }
        let (Some((_, IdColumn::Numbers([name]))), Some(want)) =
            (query.layout(), span_number(&query.id))
        else {
            return Ok(Some(Box::new(EmptyScorer)));
        };
        Ok(Some(
            match reader.fast_fields().column_opt::<u64>(name)? {
                Some(column) => Box::new(ConstScorer::new(
                    ColumnScan::new(
                        column,
                        want..=want,
                        move |value| value == want,
                        reader.max_doc(),
                    ),
                    boost,
                )),
                None => Box::new(EmptyScorer),
            },
        ))
    }
}

impl Weight for IdWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        if let Some(scan) = self.column_scan(reader, boost)? {
            return Ok(scan);
        }
        let docs = self.matches(reader)?;
        if docs.is_empty() {
            return Ok(Box::new(EmptyScorer));
        }
        Ok(Box::new(ConstScorer::new(Docs { docs, at: 0 }, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let found = match self.column_scan(reader, 1.0)? {
            Some(mut scan) => scan.seek(doc) == doc,
            None => self.matches(reader)?.contains(&doc),
        };
        if found {
            Ok(Explanation::new("id matches", 1.0))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not have this ID"
            )))
        }
    }
}

/// Documents already found, in order.
struct Docs {
    docs: Vec<DocId>,
    at: usize,
}

impl DocSet for Docs {
    fn advance(&mut self) -> DocId {
        self.at += 1;
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.docs.get(self.at).copied().unwrap_or(TERMINATED)
    }

    fn size_hint(&self) -> u32 {
        u32::try_from(self.docs.len() - self.at.min(self.docs.len())).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_in_range_and_spread_sequential_ids() {
        let mut seen = std::collections::HashSet::new();
        for n in 0u64..20_000 {
            let b = u16::from_be_bytes(bucket(&n.to_be_bytes()));
            assert!(b < 1 << BUCKET_BITS);
            seen.insert(b);
        }
        // 20,000 counters over 4,096 buckets leave almost none empty.
        assert!(seen.len() > 4_000, "{} buckets used", seen.len());
    }
}
