//! A per-partition filter of trace IDs, so that a trace lookup fetches from object storage only
//! the partitions that may hold the trace.
//!
//! The filter is written when a partition is sealed, travels inside its split, and is kept on
//! the local disk when the partition is evicted. It is read in place, never loaded whole: a
//! lookup reads one shard, about 1/256 of the file, with two small reads.
//!
//! ```text
//! "WEFTTF01" | 257 × u32 LE: start of each shard, in entries | u32 LE fingerprints
//! ```
//! An ID's 64-bit hash picks its shard by its top 8 bits and gives a 32-bit fingerprint from
//! its low bits; each shard holds its fingerprints sorted and without repeats. Four bytes per
//! distinct trace: a false positive (a fetch for nothing) is about one lookup in
//! 2³² / (traces in the shard), one in 10⁵ for ten million traces an hour; there are no false
//! negatives.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use tantivy::Searcher;
use tantivy::columnar::Column;

use crate::error::IndexError;
use crate::format::Format;
use crate::ids::fnv1a;
use crate::schema::column;
use crate::{Signal, log_fields, span_fields};

/// The filter's name inside a partition directory (and its split).
pub(crate) const FILE_NAME: &str = "trace-ids.filter";
const MAGIC: &[u8; 8] = b"WEFTTF01";
const SHARDS: usize = 256;
const HEADER_BYTES: u64 = 8 + 4 * (SHARDS as u64 + 1);

fn shard_and_fingerprint(trace_id: &[u8]) -> (usize, u32) {
    let hash = fnv1a(trace_id);
    ((hash >> 56) as usize, hash as u32)
}

/// Every trace ID of a partition's committed documents, passed to `each`.
fn for_each_trace_id(
    searcher: &Searcher,
    signal: Signal,
    format: Format,
    mut each: impl FnMut(&[u8]),
) -> Result<(), IndexError> {
    for segment in searcher.segment_readers() {
        match (format, signal) {
            (Format::V1, _) => {
                let field = match signal {
                    Signal::Logs => log_fields().trace_id,
                    Signal::Spans => span_fields().trace_id,
                };
                let index = segment.inverted_index(field)?;
                let mut terms = index.terms().stream()?;
                while terms.advance() {
                    each(terms.key());
                }
            }
            (Format::V2, Signal::Spans) => {
                // A trace's spans share one dictionary entry: the dictionary is the list.
                if let Some(ids) = segment.fast_fields().bytes(column::TRACE)? {
                    let mut terms = ids.dictionary().stream()?;
                    while terms.advance() {
                        each(terms.key());
                    }
                }
            }
            (Format::V2, Signal::Logs) => {
                let fast = segment.fast_fields();
                let hi: Option<Column<u64>> = fast.column_opt(column::TRACE_HI)?;
                let lo: Option<Column<u64>> = fast.column_opt(column::TRACE_LO)?;
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    continue;
                };
                let mut id = [0u8; 16];
                for doc in 0..segment.max_doc() {
                    if let (Some(h), Some(l)) = (hi.first(doc), lo.first(doc)) {
                        id[..8].copy_from_slice(&h.to_be_bytes());
                        id[8..].copy_from_slice(&l.to_be_bytes());
                        each(&id);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Writes the filter of a partition's committed documents to `path`, fsynced.
pub(crate) fn write(
    searcher: &Searcher,
    signal: Signal,
    format: Format,
    path: &Path,
) -> Result<(), IndexError> {
    let mut shards: Vec<Vec<u32>> = vec![Vec::new(); SHARDS];
    for_each_trace_id(searcher, signal, format, |id| {
        if id.len() == 16 {
            let (shard, fingerprint) = shard_and_fingerprint(id);
            shards[shard].push(fingerprint);
        }
    })?;
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    let mut start = 0u32;
    for shard in &mut shards {
        shard.sort_unstable();
        shard.dedup();
        out.extend_from_slice(&start.to_le_bytes());
        start += shard.len() as u32;
    }
    out.extend_from_slice(&start.to_le_bytes());
    for fingerprint in shards.iter().flatten() {
        out.extend_from_slice(&fingerprint.to_le_bytes());
    }
    let mut file = File::create(path)?;
    file.write_all(&out)?;
    file.sync_all()?;
    Ok(())
}

/// Whether the partition whose filter is at `path` may hold `trace_id`. A filter that cannot
/// be read answers yes: the partition is then searched, which is slower, never wrong.
pub(crate) fn may_contain(path: &Path, trace_id: &[u8]) -> bool {
    lookup(path, trace_id).unwrap_or_else(|error| {
        tracing::warn!(%error, path = %path.display(), "trace filter unreadable; searching the partition");
        true
    })
}

fn lookup(path: &Path, trace_id: &[u8]) -> std::io::Result<bool> {
    let (shard, fingerprint) = shard_and_fingerprint(trace_id);
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(std::io::Error::other("not a trace filter"));
    }
    file.seek(SeekFrom::Start(8 + 4 * shard as u64))?;
    let mut bounds = [0u8; 8];
    file.read_exact(&mut bounds)?;
    let start = u64::from(u32::from_le_bytes(bounds[..4].try_into().expect("4 bytes")));
    let end = u64::from(u32::from_le_bytes(bounds[4..].try_into().expect("4 bytes")));
    if end < start || HEADER_BYTES + 4 * end > size {
        return Err(std::io::Error::other("shard bounds outside the filter"));
    }
    file.seek(SeekFrom::Start(HEADER_BYTES + 4 * start))?;
    let mut bytes = vec![0u8; 4 * (end - start) as usize];
    file.read_exact(&mut bytes)?;
    let fingerprints: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Ok(fingerprints.binary_search(&fingerprint).is_ok())
}
