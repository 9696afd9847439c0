//! Partition formats: which schema a partition was written with, and so how its rows are read.
//!
//! A partition records its format in a file of its own (`weft-format`, a decimal number)
//! written before its index is created. Partitions from before formats were numbered have no
//! such file and are format 1. A partition keeps its format for life: rows added to it later
//! are written in that format, so an hour that began under an older weft stays uniform, and the
//! next hour starts in the current one. Readers handle every format listed here.
//!
//! - **1**: every row stored whole in the doc store; trace and span IDs indexed as their full
//!   bytes.
//! - **2**: IDs kept once, in fast columns, and indexed only by a 12-bit bucket; time, service,
//!   resource and scope kept once in columns (resource and scope dictionary-encoded per
//!   segment) and left out of the stored row; no field norms (weft never ranks by relevance).

use std::path::Path;

use tantivy::Directory;

use crate::error::IndexError;

/// File in a partition directory holding its format number.
const FORMAT_FILE: &str = "weft-format";

/// A partition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// Rows stored whole, IDs as full terms.
    V1 = 1,
    /// IDs, time, resource and scope in columns; IDs indexed by bucket.
    V2 = 2,
}

impl Format {
    /// The format new partitions are written in.
    pub const CURRENT: Format = Format::V2;

    /// Its number, as the format file holds it.
    pub fn number(self) -> u32 {
        self as u32
    }

    fn from_number(number: u32) -> Option<Format> {
        match number {
            1 => Some(Format::V1),
            2 => Some(Format::V2),
            _ => None,
        }
    }

    /// The format of the partition in `directory`. An index without a format file is format 1;
    /// a directory with neither is new, and gets the current format (its file is written here,
    /// durably, before the index is created).
    pub(crate) fn of_partition(
        directory: &dyn Directory,
        index_exists: bool,
        path: &Path,
    ) -> Result<Format, IndexError> {
        let file = Path::new(FORMAT_FILE);
        let open_error = |reason: String| IndexError::Open {
            path: path.to_path_buf(),
            reason,
        };
        match directory.atomic_read(file) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let number: u32 = text.trim().parse().map_err(|_| {
                    open_error(format!(
                        "{FORMAT_FILE} holds '{}', not a number",
                        text.trim()
                    ))
                })?;
                Format::from_number(number).ok_or_else(|| {
                    open_error(format!(
                        "partition format {number} is newer than this weft reads (up to {})",
                        Format::CURRENT.number()
                    ))
                })
            }
            Err(tantivy::directory::error::OpenReadError::FileDoesNotExist(_)) => {
                if index_exists {
                    return Ok(Format::V1);
                }
                let current = Format::CURRENT;
                directory
                    .atomic_write(file, format!("{}\n", current.number()).as_bytes())
                    .map_err(IndexError::Io)?;
                Ok(current)
            }
            Err(error) => Err(open_error(error.to_string())),
        }
    }
}
