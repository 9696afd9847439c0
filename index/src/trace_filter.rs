//! A per-partition filter of trace IDs, so that a trace lookup fetches from object storage only
//! the partitions that may hold the trace, and reads only the segments that may hold it.
//!
//! The filter is written when a partition is sealed, and again when its split is packed (the
//! packing merges segments, which renames them); it travels inside its split, and is kept on
//! the local disk when the partition is evicted. It is read in place, never loaded whole: a
//! lookup reads one shard, about 1/256 of the file, with a few small reads.
//!
//! ```text
//! "WEFTTF02" | u32 LE: segments S | S × 32 bytes: segment IDs (hex)
//!            | 257 × u32 LE: start of each shard, in entries
//!            | E × u32 LE fingerprints | E × u8: segment of each entry
//! ```
//! An ID's 64-bit hash picks its shard by its top 8 bits and gives a 32-bit fingerprint from
//! its low bits; each shard holds its (fingerprint, segment) entries sorted and without
//! repeats: a trace with rows in two segments has two entries. About five bytes per distinct
//! trace: a false positive (a fetch for nothing) is about one lookup in 2³² / (traces in the
//! shard), one in 10⁵ for ten million traces an hour; there are no false negatives. A filter
//! of a partition with more than 255 segments names none: a lookup then reads all of them.
//! Filters written before segments were recorded (`"WEFTTF01"`: no segment table, no segment
//! bytes) still answer whether the partition may hold a trace.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use tantivy::Searcher;
use tantivy::columnar::Column;

use crate::error::IndexError;
use crate::format::Format;
use crate::format::column;
use crate::ids::fnv1a;
use crate::{Signal, log_fields, span_fields};

/// The filter's name inside a partition directory (and its split).
pub(crate) const FILE_NAME: &str = "trace-ids.filter";
const MAGIC_V1: &[u8; 8] = b"WEFTTF01";
const MAGIC: &[u8; 8] = b"WEFTTF02";
const SHARDS: usize = 256;
const SHARD_TABLE_BYTES: u64 = 4 * (SHARDS as u64 + 1);
/// Length of a segment ID in the segment table.
const SEGMENT_ID_BYTES: usize = 32;
/// The segment byte of an entry whose segment is not in the table.
const ANY_SEGMENT: u8 = u8::MAX;

/// Where the rows of a trace may be in one partition, by its filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TraceSegments {
    /// Nowhere: the partition does not hold the trace.
    None,
    /// Only in these segments (tantivy segment IDs, as hex).
    Some(Vec<String>),
    /// Anywhere: the filter does not say which segments.
    All,
}

fn shard_and_fingerprint(trace_id: &[u8]) -> (usize, u32) {
    let hash = fnv1a(trace_id);
    ((hash >> 56) as usize, hash as u32)
}

/// Every trace ID of a partition's committed documents, passed to `each`.
fn for_each_trace_id(
    searcher: &Searcher,
    signal: Signal,
    format: Format,
    mut each: impl FnMut(usize, &[u8]),
) -> Result<(), IndexError> {
    for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
        let mut each = |id: &[u8]| each(ordinal, id);
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
            (Format::V2 | Format::V3, Signal::Spans) => {
                // A trace's spans share one dictionary entry: the dictionary is the list.
                if let Some(ids) = segment.fast_fields().bytes(column::TRACE)? {
                    let mut terms = ids.dictionary().stream()?;
                    while terms.advance() {
                        each(terms.key());
                    }
                }
            }
            (Format::V2 | Format::V3, Signal::Logs) => {
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

/// Writes the filter of a partition's committed documents to `path`, fsynced. A file already
/// at `path` (perhaps a link shared with another directory) is replaced, not written through.
pub(crate) fn write(
    searcher: &Searcher,
    signal: Signal,
    format: Format,
    path: &Path,
) -> Result<(), IndexError> {
    let segments: Vec<String> = searcher
        .segment_readers()
        .iter()
        .map(|s| s.segment_id().uuid_string())
        .collect();
    let named = segments.len() < usize::from(ANY_SEGMENT)
        && segments.iter().all(|id| id.len() == SEGMENT_ID_BYTES);
    let mut shards: Vec<Vec<(u32, u8)>> = vec![Vec::new(); SHARDS];
    for_each_trace_id(searcher, signal, format, |ordinal, id| {
        if id.len() == 16 {
            let (shard, fingerprint) = shard_and_fingerprint(id);
            let segment = if named { ordinal as u8 } else { ANY_SEGMENT };
            shards[shard].push((fingerprint, segment));
        }
    })?;
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    let table: &[String] = if named { &segments } else { &[] };
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for id in table {
        out.extend_from_slice(id.as_bytes());
    }
    let mut start = 0u32;
    for shard in &mut shards {
        shard.sort_unstable();
        shard.dedup();
        out.extend_from_slice(&start.to_le_bytes());
        start += shard.len() as u32;
    }
    out.extend_from_slice(&start.to_le_bytes());
    for (fingerprint, _) in shards.iter().flatten() {
        out.extend_from_slice(&fingerprint.to_le_bytes());
    }
    out.extend(shards.iter().flatten().map(|(_, segment)| *segment));
    let tmp = path.with_extension("filter.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&out)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Whether the partition whose filter is at `path` may hold `trace_id`. A filter that cannot
/// be read answers yes: the partition is then searched, which is slower, never wrong.
pub(crate) fn may_contain(path: &Path, trace_id: &[u8]) -> bool {
    segments_holding(path, trace_id) != TraceSegments::None
}

/// The segments of the partition whose filter is at `path` that may hold `trace_id`. A
/// filter that cannot be read answers [`TraceSegments::All`].
pub(crate) fn segments_holding(path: &Path, trace_id: &[u8]) -> TraceSegments {
    lookup(path, trace_id).unwrap_or_else(|error| {
        tracing::warn!(%error, path = %path.display(), "trace filter unreadable; searching the partition");
        TraceSegments::All
    })
}

fn read_u32s(file: &mut File, at: u64, count: u64) -> std::io::Result<Vec<u32>> {
    file.seek(SeekFrom::Start(at))?;
    let mut bytes = vec![0u8; 4 * count as usize];
    file.read_exact(&mut bytes)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

fn lookup(path: &Path, trace_id: &[u8]) -> std::io::Result<TraceSegments> {
    let (shard, fingerprint) = shard_and_fingerprint(trace_id);
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)?;
    let segments: Vec<String> = if &magic == MAGIC {
        let count = read_u32s(&mut file, 8, 1)?[0];
        if u64::from(count) * SEGMENT_ID_BYTES as u64 > size {
            return Err(std::io::Error::other(
                "segment table larger than the filter",
            ));
        }
        let mut table = vec![0u8; count as usize * SEGMENT_ID_BYTES];
        file.read_exact(&mut table)?;
        table
            .chunks_exact(SEGMENT_ID_BYTES)
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .collect()
    } else if &magic == MAGIC_V1 {
        Vec::new()
    } else {
        return Err(std::io::Error::other("not a trace filter"));
    };
    let v2 = &magic == MAGIC;
    let shards_at = 8 + if v2 {
        4 + (segments.len() * SEGMENT_ID_BYTES) as u64
    } else {
        0
    };
    let entries_at = shards_at + SHARD_TABLE_BYTES;
    let bounds = read_u32s(&mut file, shards_at + 4 * shard as u64, 2)?;
    let (start, end) = (u64::from(bounds[0]), u64::from(bounds[1]));
    let total = if v2 {
        u64::from(read_u32s(&mut file, shards_at + 4 * SHARDS as u64, 1)?[0])
    } else {
        end
    };
    let entry_bytes = if v2 { 5 } else { 4 };
    if end < start || end > total || entries_at + entry_bytes * total > size {
        return Err(std::io::Error::other("shard bounds outside the filter"));
    }
    let fingerprints = read_u32s(&mut file, entries_at + 4 * start, end - start)?;
    let first = fingerprints.partition_point(|f| *f < fingerprint);
    let last = fingerprints.partition_point(|f| *f <= fingerprint);
    if first == last {
        return Ok(TraceSegments::None);
    }
    if !v2 {
        return Ok(TraceSegments::All);
    }
    file.seek(SeekFrom::Start(
        entries_at + 4 * total + start + first as u64,
    ))?;
    let mut ordinals = vec![0u8; last - first];
    file.read_exact(&mut ordinals)?;
    let mut holding = Vec::with_capacity(ordinals.len());
    for ordinal in ordinals {
        match segments.get(usize::from(ordinal)) {
            Some(id) => holding.push(id.clone()),
            None => return Ok(TraceSegments::All),
        }
    }
    Ok(TraceSegments::Some(holding))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter as weft wrote them before segments were recorded.
    fn write_v1(path: &Path, ids: &[[u8; 16]]) {
        let mut shards: Vec<Vec<u32>> = vec![Vec::new(); SHARDS];
        for id in ids {
            let (shard, fingerprint) = shard_and_fingerprint(id);
            shards[shard].push(fingerprint);
        }
        let mut out = MAGIC_V1.to_vec();
        let mut start = 0u32;
        for shard in &mut shards {
            shard.sort_unstable();
            out.extend_from_slice(&start.to_le_bytes());
            start += shard.len() as u32;
        }
        out.extend_from_slice(&start.to_le_bytes());
        for fingerprint in shards.iter().flatten() {
            out.extend_from_slice(&fingerprint.to_le_bytes());
        }
        std::fs::write(path, out).expect("written");
    }

    #[test]
    fn a_filter_without_segments_still_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let held = [[7u8; 16], [9u8; 16]];
        write_v1(&path, &held);
        for id in held {
            assert_eq!(segments_holding(&path, &id), TraceSegments::All);
        }
        assert_eq!(segments_holding(&path, &[8u8; 16]), TraceSegments::None);
        assert!(!may_contain(&path, &[8u8; 16]));
    }

    #[test]
    fn a_damaged_filter_rules_nothing_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        write_v1(&path, &[[7u8; 16]]);
        let bytes = std::fs::read(&path).expect("read");
        // A v2 header over v1 contents: a segment table that runs past the file.
        let mut damaged = MAGIC.to_vec();
        damaged.extend_from_slice(&u32::MAX.to_le_bytes());
        damaged.extend_from_slice(&bytes[8..]);
        std::fs::write(&path, damaged).expect("written");
        assert_eq!(segments_holding(&path, &[8u8; 16]), TraceSegments::All);
        std::fs::write(&path, &bytes[..100]).expect("written");
        assert_eq!(segments_holding(&path, &[7u8; 16]), TraceSegments::All);
    }
}
