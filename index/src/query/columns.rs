//! Filters a format 3 partition answers from a dictionary-encoded column instead of postings:
//! `service:` and `event:` from their string columns, `resource.<key>:` from the origin column.
//!
//! Each of these values is shared by many rows (a batch's service and resource, one of a few
//! hundred event names), so format 3 does not index them: their postings cost 1.3–2.3 bytes
//! per row each, while the columns, which facets and catalogs read anyway, hold them for a few
//! bits per row. A filter looks the value up in the segment's dictionary (a handful of distinct
//! entries per segment), then scans the ordinals column for the rows that hold a matching one,
//! a window at a time (`column_scan`). Partitions of older formats, whose fields are indexed,
//! are asked their postings as before: [`ColumnFilter`] decides per partition, from its schema.

use prost::Message;
use tantivy::columnar::BytesColumn;
use tantivy::query::{ConstScorer, EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::Field;
use tantivy::{DocId, DocSet, Score, SegmentReader, TantivyError};

use super::matcher::{attribute_matches, glob_match};
use crate::Signal;
use crate::column_scan::ColumnScan;
use crate::format::column;
use crate::model::{LogRow, SpanRow};

/// Where a filter's values are in a format 3 segment.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ColumnSource {
    /// A string column of that name (`service`, `event`).
    Str(&'static str),
    /// The origin column of that signal's rows (service, resource and scope, encoded).
    Origin(Signal),
}

/// What a row's value must be.
#[derive(Clone, Debug)]
pub(crate) enum ValueTest {
    /// Exactly this text.
    Equals(String),
    /// This pattern, `*` matching any run of characters.
    Glob(String),
    /// A resource attribute `key` with this value, as the live tail's matcher compares it.
    Resource { key: String, value: String },
}

impl ValueTest {
    /// `service:` and `event:`'s test of `value`: a wildcard when it has a `*`.
    pub(crate) fn keyword(value: &str) -> Self {
        if value.contains('*') {
            ValueTest::Glob(value.to_string())
        } else {
            ValueTest::Equals(value.to_string())
        }
    }
}

/// A filter on `field`: its postings where the partition indexes it, its column where not.
#[derive(Debug)]
pub(crate) struct ColumnFilter {
    pub(crate) field: Field,
    pub(crate) indexed: Box<dyn Query>,
    pub(crate) source: ColumnSource,
    pub(crate) test: ValueTest,
}

impl Clone for ColumnFilter {
    fn clone(&self) -> Self {
        ColumnFilter {
            field: self.field,
            indexed: self.indexed.box_clone(),
            source: self.source,
            test: self.test.clone(),
        }
    }
}

impl Query for ColumnFilter {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        // A partition has one format, so one schema for all its segments.
        if scoring.schema().get_field_entry(self.field).is_indexed() {
            return self.indexed.weight(scoring);
        }
        Ok(Box::new(ColumnFilterWeight {
            source: self.source,
            test: self.test.clone(),
        }))
    }
}

struct ColumnFilterWeight {
    source: ColumnSource,
    test: ValueTest,
}

impl ColumnFilterWeight {
    fn column(&self, reader: &SegmentReader) -> tantivy::Result<Option<BytesColumn>> {
        let fast = reader.fast_fields();
        Ok(match self.source {
            ColumnSource::Str(name) => fast.str(name)?.map(|c| BytesColumn::clone(&c)),
            ColumnSource::Origin(_) => fast.bytes(column::ORIGIN)?,
        })
    }

    /// The dictionary ordinals whose value passes the test, in order.
    fn matching_ords(&self, column: &BytesColumn) -> tantivy::Result<Vec<u64>> {
        let dictionary = column.dictionary();
        if let ValueTest::Equals(value) = &self.test {
            return Ok(dictionary.term_ord(value.as_bytes())?.into_iter().collect());
        }
        let mut ords = Vec::new();
        let mut stream = dictionary.stream()?;
        while stream.advance() {
            let passes = match (&self.test, self.source) {
                (ValueTest::Glob(pattern), _) => {
                    std::str::from_utf8(stream.key()).is_ok_and(|text| glob_match(pattern, text))
                }
                (ValueTest::Resource { key, value }, ColumnSource::Origin(signal)) => {
                    origin_resource_matches(signal, stream.key(), key, value)
                }
                _ => false,
            };
            if passes {
                ords.push(stream.term_ord());
            }
        }
        Ok(ords)
    }
}

/// Whether the resource of an encoded origin has `key` with `value`.
fn origin_resource_matches(signal: Signal, origin: &[u8], key: &str, value: &str) -> bool {
    let resource = match signal {
        Signal::Logs => LogRow::decode(origin).map(|row| row.resource),
        Signal::Spans => SpanRow::decode(origin).map(|row| row.resource),
    };
    resource.is_ok_and(|resource| attribute_matches(&resource, key, value))
}

impl Weight for ColumnFilterWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let Some(column) = self.column(reader)? else {
            // No row of the segment has a value.
            return Ok(Box::new(EmptyScorer));
        };
        let ords = self.matching_ords(&column)?;
        let (Some(&low), Some(&high)) = (ords.first(), ords.last()) else {
            return Ok(Box::new(EmptyScorer));
        };
        let scan = if ords.len() == 1 {
            ColumnScan::new(
                column.ords().clone(),
                low..=high,
                move |ord| ord == low,
                reader.max_doc(),
            )
        } else {
            // Ordinals are below the dictionary's size, which bounds this table.
            let mut wanted = vec![false; (high - low + 1) as usize];
            for ord in &ords {
                wanted[(ord - low) as usize] = true;
            }
            ColumnScan::new(
                column.ords().clone(),
                low..=high,
                move |ord| {
                    ord.checked_sub(low)
                        .and_then(|i| wanted.get(usize::try_from(i).ok()?))
                        == Some(&true)
                },
                reader.max_doc(),
            )
        };
        Ok(Box::new(ConstScorer::new(scan, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if self.scorer(reader, 1.0)?.seek(doc) == doc {
            Ok(Explanation::new("column value matches", 1.0))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )))
        }
    }
}
