//! Splits: a sealed partition packed into one immutable file, the unit weft keeps in object
//! storage.
//!
//! ```text
//! [file 0 bytes][file 1 bytes]…[hot cache][footer: JSON][footer length: u64 LE][magic "WEFTSPL1"]
//! ```
//! The footer names each file with its offset and length, so a reader holding the last 16
//! bytes and the footer can find any file with one ranged read. Files are the partition's
//! directory as of a commit: tantivy's segments and `meta.json`, and weft's own (`weft-format`,
//! the calls table). Unpacking writes them back into a directory that opens as a partition.
//!
//! The hot cache holds copies of the byte ranges tantivy reads to open the partition and look
//! a term up (file footers, term dictionary indexes, column tables; see `hot_cache`), and the
//! small files whole. It sits right before the footer, so one ranged read of a split's end
//! brings both, and a searcher opens a remote split without another request (`directory`).
//! Splits packed before it existed have none and still open, with a few more reads. The footer
//! also lists, without copying them, the ranges a trace lookup reads whatever the trace
//! (`SplitFooter::lookup`), so that a reader asks for them all at once.
//!
//! Files: this one (packing, the footer, unpacking), `hot_cache` (which ranges are copied, and
//! which a lookup reads), `directory` (a tantivy `Directory` over a split read in place).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::IndexError;

pub(crate) mod directory;
pub(crate) mod hot_cache;

/// The last 8 bytes of every split.
const MAGIC: &[u8; 8] = b"WEFTSPL1";
/// Footer length and magic.
pub(crate) const TRAILER_LEN: u64 = 16;
/// A footer larger than this is damage, not a partition (a partition has tens of files).
const MAX_FOOTER_BYTES: u64 = 16 << 20;

/// One file inside a split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFile {
    /// Its name in the partition directory.
    pub name: String,
    /// Where its bytes start in the split.
    pub offset: u64,
    /// How many bytes it has.
    pub len: u64,
}

/// A copy, in the hot cache, of bytes `start..start + len` of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotRange {
    /// The file's name.
    pub file: String,
    /// Where the range starts in the file.
    pub start: u64,
    /// How many bytes it has.
    pub len: u64,
    /// Where its copy starts in the split.
    pub offset: u64,
}

/// Bytes `start..start + len` of one file, read in place (not copied) when a trace is looked
/// up: see [`SplitFooter::lookup`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRange {
    /// The file's name.
    pub file: String,
    /// Where the range starts in the file.
    pub start: u64,
    /// How many bytes it has.
    pub len: u64,
}

/// The table at the end of a split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFooter {
    /// The files, in the order their bytes appear.
    pub files: Vec<SplitFile>,
    /// The hot cache's ranges, in the order their copies appear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hot: Vec<HotRange>,
    /// The ranges every trace lookup reads beyond the hot cache, whatever the trace: the
    /// columns rows are rebuilt from, which tantivy reads whole. A reader asks for them all
    /// at once, in parallel, instead of one after another as tantivy reaches them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookup: Vec<LookupRange>,
}

impl SplitFooter {
    /// Where the hot cache starts in the split (the footer's start when there is none).
    pub fn hot_cache_offset(&self, body_len: u64) -> u64 {
        self.hot.iter().map(|h| h.offset).min().unwrap_or(body_len)
    }
}

fn damaged(path: &Path, reason: impl std::fmt::Display) -> IndexError {
    IndexError::Split {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// A file name a split may carry: a plain name, never a path.
fn acceptable_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.ends_with(".lock")
}

/// Packs every file of `dir` (a partition snapshot) into the split `out`, fsynced, with its
/// segments merged ([`merge_segments`]) and a hot cache of what opening it reads. Returns the split's size
/// in bytes.
pub fn pack(dir: &Path, out: &Path) -> Result<u64, IndexError> {
    merge_segments(dir)?;
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str().filter(|n| acceptable_name(n)) {
            names.push(name.to_string());
        }
    }
    names.sort();
    let mut writer = BufWriter::new(File::create(out)?);
    let mut files = Vec::with_capacity(names.len());
    let mut offset = 0u64;
    for name in names {
        let mut file = File::open(dir.join(&name))?;
        let len = std::io::copy(&mut file, &mut writer)?;
        files.push(SplitFile { name, offset, len });
        offset += len;
    }
    let mut hot = Vec::new();
    for (name, range) in crate::split::hot_cache::ranges(dir, &files) {
        let mut file = File::open(dir.join(&name))?;
        file.seek(SeekFrom::Start(range.start))?;
        let len = range.end - range.start;
        let copied = std::io::copy(&mut (&mut file).take(len), &mut writer)?;
        if copied != len {
            return Err(damaged(out, format!("{name} changed while being packed")));
        }
        hot.push(HotRange {
            file: name,
            start: range.start,
            len,
            offset,
        });
        offset += len;
    }
    let lookup = crate::split::hot_cache::lookup_ranges(dir, &files, &hot)
        .into_iter()
        .map(|(file, range)| LookupRange {
            file,
            start: range.start,
            len: range.end - range.start,
        })
        .collect();
    let footer =
        serde_json::to_vec(&SplitFooter { files, hot, lookup }).map_err(std::io::Error::other)?;
    writer.write_all(&footer)?;
    writer.write_all(&(footer.len() as u64).to_le_bytes())?;
    writer.write_all(MAGIC)?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(offset + footer.len() as u64 + TRAILER_LEN)
}

/// Merges the segments of the index in `dir` (a snapshot of hard links), in place, into as
/// few as hold at most [`SEGMENT_MAX_DOCS`](crate::merge::SEGMENT_MAX_DOCS) documents each,
/// and writes its trace filter again for the segments it now has.
///
/// A partition written by half-second commits holds tens of segments, and every segment costs
/// a query its own reads: term lookup, postings, columns, stored rows. Read from object
/// storage, each is a round trip, so a split has few segments; not one, because a trace
/// lookup reads whole columns of the segments its trace filter names, and those are bounded
/// by the cap. The merge runs here, on the snapshot, not on the partition: the indexing
/// thread never waits for it, and tantivy replaces files by writing new ones (`meta.json`,
/// `.managed.json` by rename; the filter too), so the partition's own links are never
/// touched. The commit payload (the WAL position) is kept. A directory that is not an index
/// is left as it is.
pub fn merge_segments(dir: &Path) -> Result<(), IndexError> {
    use tantivy::directory::MmapDirectory;
    let directory = MmapDirectory::open(dir).map_err(|e| IndexError::Open {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !tantivy::Index::exists(&directory).map_err(tantivy::TantivyError::from)? {
        return Ok(());
    }
    let index = tantivy::Index::open(directory)?;
    let mut segments: Vec<(tantivy::index::SegmentId, u32)> = index
        .searchable_segment_metas()?
        .iter()
        .map(|m| (m.id(), m.num_docs()))
        .collect();
    // Smallest first: each merge takes as many of the smallest left as fit under the cap.
    segments.sort_by_key(|(_, docs)| *docs);
    let mut groups = Vec::new();
    let mut rest = &segments[..];
    while let Some(group) =
        crate::merge::cap_group(rest.iter().copied(), crate::merge::SEGMENT_MAX_DOCS)
    {
        rest = &rest[group.len()..];
        groups.push(group);
    }
    if !groups.is_empty() {
        let mut writer: tantivy::IndexWriter =
            index.writer_with_num_threads(1, crate::merge::MIN_WRITER_MEMORY_BYTES)?;
        writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        for group in groups {
            writer.merge(&group).wait()?;
        }
        writer.garbage_collect_files().wait()?;
        writer.wait_merging_threads()?;
    }
    let (signal, searcher) = crate::split::hot_cache::signal_and_searcher(&index)?;
    crate::trace_filter::write(
        &searcher,
        signal,
        crate::format::Format::of_checked_schema(&index.schema()),
        &dir.join(crate::trace_filter::FILE_NAME),
    )
}

/// The footer's length, from a split's size and its last 16 bytes.
pub(crate) fn footer_len(path: &Path, size: u64, trailer: &[u8]) -> Result<u64, IndexError> {
    if size < TRAILER_LEN || trailer.len() != TRAILER_LEN as usize {
        return Err(damaged(path, "shorter than a split's trailer"));
    }
    if &trailer[8..] != MAGIC {
        return Err(damaged(path, "no split magic at its end"));
    }
    let footer_len = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    if footer_len > MAX_FOOTER_BYTES || footer_len > size - TRAILER_LEN {
        return Err(damaged(
            path,
            format!("footer length {footer_len} out of range"),
        ));
    }
    Ok(footer_len)
}

/// Parses a footer and checks that every file is a plain name inside the first `body_len`
/// bytes, and every hot range a part of its file with its copy inside them too.
pub(crate) fn parse_footer(
    path: &Path,
    footer: &[u8],
    body_len: u64,
) -> Result<SplitFooter, IndexError> {
    let footer: SplitFooter =
        serde_json::from_slice(footer).map_err(|e| damaged(path, format!("footer: {e}")))?;
    for f in &footer.files {
        if !acceptable_name(&f.name) {
            return Err(damaged(
                path,
                format!("file name {:?} is not allowed", f.name),
            ));
        }
        let end = f.offset.checked_add(f.len);
        if end.is_none_or(|end| end > body_len) {
            return Err(damaged(path, format!("{} lies outside the split", f.name)));
        }
    }
    for h in &footer.hot {
        let Some(file) = footer.files.iter().find(|f| f.name == h.file) else {
            return Err(damaged(
                path,
                format!("hot range of unknown file {:?}", h.file),
            ));
        };
        let in_file = h
            .start
            .checked_add(h.len)
            .is_some_and(|end| end <= file.len);
        let in_split = h
            .offset
            .checked_add(h.len)
            .is_some_and(|end| end <= body_len);
        if !in_file || !in_split {
            return Err(damaged(
                path,
                format!("a hot range of {} is out of range", h.file),
            ));
        }
    }
    for l in &footer.lookup {
        let in_file = footer.files.iter().any(|f| {
            f.name == l.file && l.start.checked_add(l.len).is_some_and(|end| end <= f.len)
        });
        if !in_file {
            return Err(damaged(
                path,
                format!("a lookup range of {:?} is out of range", l.file),
            ));
        }
    }
    Ok(footer)
}

/// Reads and checks the footer of the split at `path`.
pub fn read_footer(path: &Path) -> Result<SplitFooter, IndexError> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut trailer = [0u8; TRAILER_LEN as usize];
    if size >= TRAILER_LEN {
        file.seek(SeekFrom::Start(size - TRAILER_LEN))?;
        file.read_exact(&mut trailer)?;
    }
    let footer_len = footer_len(path, size, &trailer)?;
    let body_len = size - TRAILER_LEN - footer_len;
    file.seek(SeekFrom::Start(body_len))?;
    let mut footer = vec![0u8; footer_len as usize];
    file.read_exact(&mut footer)?;
    parse_footer(path, &footer, body_len)
}

/// [`read_footer`] of a split held in memory (fuzzing, tests).
pub fn footer_of(split: &[u8]) -> Result<SplitFooter, IndexError> {
    let path = Path::new("(in memory)");
    let size = split.len() as u64;
    let trailer = &split[split.len().saturating_sub(TRAILER_LEN as usize)..];
    let footer_len = footer_len(path, size, trailer)?;
    let body_len = size - TRAILER_LEN - footer_len;
    parse_footer(
        path,
        &split[body_len as usize..(size - TRAILER_LEN) as usize],
        body_len,
    )
}

/// Writes the files of the split at `path` into the new directory `dest`, fsynced.
/// `dest` must not exist; on failure it is removed again.
pub fn unpack(path: &Path, dest: &Path) -> Result<(), IndexError> {
    let footer = read_footer(path)?;
    std::fs::create_dir(dest)?;
    let result = (|| -> Result<(), IndexError> {
        let mut split = File::open(path)?;
        for f in &footer.files {
            split.seek(SeekFrom::Start(f.offset))?;
            let mut out = File::create(dest.join(&f.name))?;
            let copied = std::io::copy(&mut (&mut split).take(f.len), &mut out)?;
            if copied != f.len {
                return Err(damaged(path, format!("{} is cut short", f.name)));
            }
            out.sync_all()?;
        }
        File::open(dest)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

/// A hard-linked copy of a quiescent partition directory: tantivy never rewrites a file in
/// place, so the links keep this commit's files whatever the partition does afterwards.
pub(crate) fn link_snapshot(dir: &Path, dest: &Path) -> Result<PathBuf, IndexError> {
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name();
        if name.to_str().is_some_and(acceptable_name) {
            std::fs::hard_link(entry.path(), dest.join(&name))?;
        }
    }
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_every_file_and_refuses_damage() -> Result<(), IndexError> {
        // Not an index (no `meta.json`): packed as it is, with no merge and no hot ranges
        // beyond its small files.
        let tmp = tempfile::tempdir()?;
        let src = tmp.path().join("src");
        std::fs::create_dir(&src)?;
        std::fs::write(src.join("notes.json"), b"{\"segments\":[]}")?;
        std::fs::write(src.join("a.idx"), vec![7u8; 10_000])?;
        std::fs::write(src.join("empty"), b"")?;
        std::fs::write(src.join(".tantivy-writer.lock"), b"")?;
        let split = tmp.path().join("x.split");
        let size = pack(&src, &split)?;
        assert_eq!(size, std::fs::metadata(&split)?.len());
        let footer = read_footer(&split)?;
        let names: Vec<&str> = footer.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["a.idx", "empty", "notes.json"],
            "locks are not packed"
        );

        let dest = tmp.path().join("dest");
        unpack(&split, &dest)?;
        assert_eq!(std::fs::read(dest.join("a.idx"))?, vec![7u8; 10_000]);
        assert_eq!(
            std::fs::read(dest.join("notes.json"))?,
            b"{\"segments\":[]}"
        );
        assert_eq!(std::fs::read(dest.join("empty"))?, b"");

        // A split cut short loses its trailer and is refused, leaving no directory behind.
        let bytes = std::fs::read(&split)?;
        let cut = tmp.path().join("cut.split");
        std::fs::write(&cut, &bytes[..bytes.len() - 3])?;
        let dest2 = tmp.path().join("dest2");
        assert!(matches!(
            unpack(&cut, &dest2),
            Err(IndexError::Split { .. })
        ));
        assert!(!dest2.exists());

        // A footer naming a path outside the directory is refused.
        let evil_footer = serde_json::to_vec(&SplitFooter {
            files: vec![SplitFile {
                name: "../escape".into(),
                offset: 0,
                len: 1,
            }],
            hot: Vec::new(),
            lookup: Vec::new(),
        })
        .map_err(std::io::Error::other)?;
        let mut evil = vec![0u8];
        evil.extend_from_slice(&evil_footer);
        evil.extend_from_slice(&(evil_footer.len() as u64).to_le_bytes());
        evil.extend_from_slice(MAGIC);
        let evil_path = tmp.path().join("evil.split");
        std::fs::write(&evil_path, evil)?;
        assert!(matches!(
            read_footer(&evil_path),
            Err(IndexError::Split { .. })
        ));

        // So is a lookup range past the end of its file.
        let footer = serde_json::to_vec(&SplitFooter {
            files: vec![SplitFile {
                name: "a.fast".into(),
                offset: 0,
                len: 1,
            }],
            hot: Vec::new(),
            lookup: vec![LookupRange {
                file: "a.fast".into(),
                start: 0,
                len: 2,
            }],
        })
        .map_err(std::io::Error::other)?;
        let mut split = vec![0u8];
        split.extend_from_slice(&footer);
        split.extend_from_slice(&(footer.len() as u64).to_le_bytes());
        split.extend_from_slice(MAGIC);
        match footer_of(&split) {
            Err(IndexError::Split { reason, .. }) => {
                assert!(reason.contains("lookup range"), "{reason}")
            }
            other => panic!("expected a damaged split, got {other:?}"),
        }
        Ok(())
    }
}
