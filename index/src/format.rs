//! Partition formats: which schema a partition was written with, and so how its rows are read.
//!
//! A partition records its format in a file of its own (`weft-format`, a decimal number)
//! written before its index is created. Partitions from before formats were numbered have no
//! such file and are format 1. A partition keeps its format for life: rows added to it later
//! are written in that format, so an hour that began under an older weft stays uniform, and the
//! next hour starts in the current one. Readers handle every format listed here.
//!
//! A format's schema never changes once released: any change to the fields (a new one
//! included) is a new format. [`Format::of_partition`] checks that a partition's schema is
//! exactly its format's, so a document built for one format never meets another's schema.
//!
//! - **1**: every row stored whole in the doc store; trace and span IDs indexed as their full
//!   bytes.
//! - **2**: IDs kept once, in fast columns (a span's trace ID in a dictionary-encoded one),
//!   and indexed only by a 12-bit bucket; time kept once in its range column; service,
//!   resource and scope kept once per segment as one dictionary-encoded "origin" column; the
//!   stored row holds the rest; no field norms (weft never ranks by relevance).
//! - **3**: format 2, with span and parent span IDs kept only in their columns (no bucket
//!   terms: a lookup scans the column, see `ids`); `service`, a log's `event` and resource
//!   attributes not indexed (their filters scan the string and origin columns, see
//!   `query::columns`); a log record's event and severity kept only in their columns, not
//!   again in the stored row.

use std::path::Path;

use tantivy::Directory;
use tantivy::schema::Schema;

use crate::Signal;
use crate::error::IndexError;

/// The field of both signals' schemas whose indexing tells format 3 from format 2.
const SPAN_ID: &str = "span_id";

/// File in a partition directory holding its format number.
const FORMAT_FILE: &str = "weft-format";

/// A partition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// Rows stored whole, IDs as full terms.
    V1 = 1,
    /// IDs, time and origin in columns; IDs indexed by bucket.
    V2 = 2,
    /// Format 2 without span ID buckets, with service, event and resource in columns only.
    V3 = 3,
}

impl Format {
    /// The format new partitions are written in.
    pub const CURRENT: Format = Format::V3;

    /// Every format this weft reads, oldest first.
    pub const ALL: [Format; 3] = [Format::V1, Format::V2, Format::V3];

    /// Its number, as the format file holds it.
    pub fn number(self) -> u32 {
        self as u32
    }

    fn from_number(number: u32) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.number() == number)
    }

    /// The format whose schema `schema` is (same fields of the same types in the same order,
    /// and `span_id` indexed or not alike), if any. Other options are not compared: format 1
    /// partitions written before time and severity lost their terms (weft of 2026-11-21)
    /// index them, and stay format 1.
    pub(crate) fn of_schema(signal: Signal, schema: &Schema) -> Option<Format> {
        let names = |s: &Schema| -> Vec<String> {
            s.fields()
                .map(|(_, entry)| {
                    let indexed = entry.name() == SPAN_ID && entry.is_indexed();
                    format!(
                        "{}:{:?}:{indexed}",
                        entry.name(),
                        entry.field_type().value_type(),
                    )
                })
                .collect()
        };
        let found = names(schema);
        Format::ALL
            .into_iter()
            .find(|f| names(&signal.schema(*f)) == found)
    }

    /// The format of an open partition's searcher or segment, from its schema, which
    /// [`Format::of_partition`] has checked is exactly one format's.
    pub(crate) fn of_checked_schema(schema: &Schema) -> Format {
        if schema.get_field(column::ORIGIN).is_err() {
            return Format::V1;
        }
        // Both signals have a `span_id` field; only format 3 leaves it unindexed.
        let span_id_indexed = schema
            .get_field(SPAN_ID)
            .is_ok_and(|field| schema.get_field_entry(field).is_indexed());
        if span_id_indexed {
            Format::V2
        } else {
            Format::V3
        }
    }

    /// The format declared by the partition in `directory`'s format file, if it has one.
    pub(crate) fn declared(
        directory: &dyn Directory,
        path: &Path,
    ) -> Result<Option<Format>, IndexError> {
        let open_error = |reason: String| IndexError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = match directory.atomic_read(Path::new(FORMAT_FILE)) {
            Ok(bytes) => bytes,
            Err(tantivy::directory::error::OpenReadError::FileDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(open_error(error.to_string())),
        };
        let text = String::from_utf8_lossy(&bytes);
        let number: u32 = text.trim().parse().map_err(|_| {
            open_error(format!(
                "{FORMAT_FILE} holds '{}', not a number",
                text.trim()
            ))
        })?;
        match Format::from_number(number) {
            Some(format) => Ok(Some(format)),
            None if number > Format::CURRENT.number() => Err(open_error(format!(
                "partition format {number} is newer than this weft reads (up to {})",
                Format::CURRENT.number()
            ))),
            None => Err(open_error(format!("{number} is not a partition format"))),
        }
    }

    /// Records `self` as the format of the partition in `directory`. The file is written
    /// atomically (a temporary file, synced, renamed); tantivy syncs the directory before it
    /// writes the index's first `meta.json`, so an index never exists without it.
    pub(crate) fn record(self, directory: &dyn Directory) -> Result<(), IndexError> {
        directory
            .atomic_write(
                Path::new(FORMAT_FILE),
                format!("{}\n", self.number()).as_bytes(),
            )
            .map_err(IndexError::Io)
    }

    /// The format of an existing index: the one its schema is. A declared format must agree;
    /// a missing format file is written (partitions before format numbers have none, and a
    /// file lost to a backup filter or a hand is recoverable from the schema).
    pub(crate) fn of_partition(
        signal: Signal,
        schema: &Schema,
        declared: Option<Format>,
        directory: &dyn Directory,
        path: &Path,
    ) -> Result<Format, IndexError> {
        let open_error = |reason: String| IndexError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let Some(actual) = Format::of_schema(signal, schema) else {
            let fields: Vec<&str> = schema.fields().map(|(_, e)| e.name()).collect();
            return Err(open_error(format!(
                "its schema is none of the partition formats this weft reads (fields: {})",
                fields.join(", ")
            )));
        };
        match declared {
            Some(declared) if declared != actual => Err(open_error(format!(
                "its format file says format {} but its schema is format {}'s",
                declared.number(),
                actual.number()
            ))),
            Some(_) => Ok(actual),
            None => {
                if actual != Format::V1 {
                    tracing::warn!(path = %path.display(), format = actual.number(), "partition format file missing; written again from the schema");
                    actual.record(directory)?;
                }
                Ok(actual)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tantivy::schema::{FAST, FieldEntry, INDEXED};

    use super::*;

    /// Format 1 as weft wrote it before 2026-11-22: time and severity indexed as well as fast.
    fn early_format_1(signal: Signal) -> Schema {
        let mut builder = Schema::builder();
        for (_, entry) in signal.schema(Format::V1).fields() {
            let entry = match entry.name() {
                name @ ("time" | "severity" | "start" | "duration") => {
                    FieldEntry::new_u64(name.to_string(), (INDEXED | FAST).into())
                }
                _ => entry.clone(),
            };
            builder.add_field(entry);
        }
        builder.build()
    }

    #[test]
    fn every_format_is_told_apart_and_early_format_1_stays_format_1() {
        for signal in [Signal::Logs, Signal::Spans] {
            for format in Format::ALL {
                assert_eq!(
                    Format::of_schema(signal, &signal.schema(format)),
                    Some(format)
                );
                assert_eq!(Format::of_checked_schema(&signal.schema(format)), format);
            }
            assert_eq!(
                Format::of_schema(signal, &early_format_1(signal)),
                Some(Format::V1)
            );
        }
    }
}

/// Names of format 2's columns.
pub(crate) mod column {
    /// High 8 bytes of a 16-byte trace ID (big-endian).
    pub const TRACE_HI: &str = "trace_hi";
    /// Low 8 bytes of a 16-byte trace ID.
    pub const TRACE_LO: &str = "trace_lo";
    /// An 8-byte span ID.
    pub const SPAN: &str = "span";
    /// An 8-byte parent span ID (spans).
    pub const PARENT: &str = "parent";
    /// A span's whole trace ID, dictionary-encoded (a trace's spans share one entry); trace
    /// search reads candidate traces from it.
    pub const TRACE: &str = "trace";
    /// Service, resource and scope of a row, encoded; dictionary-encoded per segment, so each
    /// distinct origin is stored once per segment however many rows share it.
    pub const ORIGIN: &str = "origin";
}
