//! The hot cache of a split: the byte ranges of a partition's files that opening it reads.
//!
//! A searcher over a remote split would otherwise make one request per file footer, per term
//! dictionary index and per column table, tens of round trips before the first posting. So
//! when a split is packed, its partition is opened once through a directory that notes every
//! read ([`RecordingDirectory`]), and each indexed field's term dictionary is opened as a
//! lookup would open it. What was read, and every small file whole, is copied into the split
//! next to its footer (`split::pack`), and served from there (`split_directory`).
//!
//! Large reads stay out: a column or a posting list is read when a query needs it, not when
//! the split opens, and the cache must stay small enough to fetch with the footer. The
//! columns every trace lookup reads are listed instead ([`lookup_ranges`]), found the same
//! way, by looking a trace up through the recording directory.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes, WatchCallback, WatchHandle,
    WritePtr,
};
use tantivy::{Directory, HasLen, Index, ReloadPolicy};

use crate::split::SplitFile;

/// Files this small are kept whole: `meta.json`, `weft-format`, the calls table, tiny segments.
const SMALL_FILE_BYTES: u64 = 16 << 10;
/// A single read larger than this is data, not a table of contents.
const MAX_RANGE_BYTES: u64 = 1 << 20;
/// The most a hot cache holds; past it, the largest ranges are left out.
const MAX_HOT_BYTES: u64 = 8 << 20;

/// Reads noted by a [`RecordingDirectory`]: file and byte range.
type ReadLog = Arc<Mutex<Vec<(PathBuf, Range<u64>)>>>;

/// The ranges of `dir`'s files (listed in `files`) to keep in its split's hot cache, per
/// file in order, without overlaps. A directory that does not open as an index gets its
/// small files only.
pub(crate) fn ranges(dir: &Path, files: &[SplitFile]) -> Vec<(String, Range<u64>)> {
    let mut wanted: BTreeMap<String, Vec<Range<u64>>> = BTreeMap::new();
    for f in files
        .iter()
        .filter(|f| f.len > 0 && f.len <= SMALL_FILE_BYTES)
    {
        wanted.entry(f.name.clone()).or_default().push(0..f.len);
    }
    match record_opening(dir) {
        Ok(reads) => {
            for (path, range) in reads {
                let Some(name) = path.to_str() else { continue };
                let known = files.iter().any(|f| f.name == name && range.end <= f.len);
                if known && range.end > range.start && range.end - range.start <= MAX_RANGE_BYTES {
                    wanted.entry(name.to_string()).or_default().push(range);
                }
            }
        }
        Err(error) => {
            tracing::debug!(%error, dir = %dir.display(), "no hot cache: not an index");
        }
    }
    let merged = merge(wanted);
    // Within the budget, the smallest ranges first: they are the tables of contents.
    let mut by_size: Vec<usize> = (0..merged.len()).collect();
    by_size.sort_by_key(|&i| merged[i].1.end - merged[i].1.start);
    let mut keep = vec![false; merged.len()];
    let mut total = 0u64;
    for i in by_size {
        let len = merged[i].1.end - merged[i].1.start;
        if total + len > MAX_HOT_BYTES {
            break;
        }
        total += len;
        keep[i] = true;
    }
    merged
        .into_iter()
        .zip(keep)
        .filter_map(|(range, keep)| keep.then_some(range))
        .collect()
}

/// The ranges of `dir`'s columns a trace lookup reads whatever the trace, beyond the `hot`
/// ones: lookups of a few traces of each segment, in that segment, are made through a
/// [`RecordingDirectory`], and their reads of `.fast` files (columns, which tantivy reads
/// whole), `.term` and `.idx` files (the trace ID field's term dictionary blocks and postings,
/// small) are kept. Their reads of stored rows depend on the trace and are left out. Per
/// file, in order, without overlaps, within `split_directory::MAX_LOOKUP_BYTES` per segment.
/// Nothing for a directory that does not open as an index, or has no rows.
pub(crate) fn lookup_ranges(
    dir: &Path,
    files: &[SplitFile],
    hot: &[crate::split::HotRange],
) -> Vec<(String, Range<u64>)> {
    let reads = match record_lookup(dir) {
        Ok(reads) => reads,
        Err(error) => {
            tracing::debug!(%error, dir = %dir.display(), "no lookup ranges");
            return Vec::new();
        }
    };
    let mut wanted: BTreeMap<String, Vec<Range<u64>>> = BTreeMap::new();
    for (path, range) in reads {
        // Columns, and the trace ID field's term dictionary blocks and postings; not stored
        // rows, which are the trace's own.
        let listed = |n: &&str| n.ends_with(".fast") || n.ends_with(".term") || n.ends_with(".idx");
        let Some(name) = path.to_str().filter(listed) else {
            continue;
        };
        let known = files.iter().any(|f| f.name == name && range.end <= f.len);
        let in_hot = hot
            .iter()
            .any(|h| h.file == name && h.start <= range.start && range.end <= h.start + h.len);
        if known && !in_hot && range.end > range.start {
            wanted.entry(name.to_string()).or_default().push(range);
        }
    }
    // Ranges a read would round into one are listed as one.
    let mut coalesced: Vec<(String, Range<u64>)> = Vec::new();
    for (name, range) in merge(wanted) {
        match coalesced.last_mut() {
            Some((last, previous))
                if *last == name
                    && range.start - previous.end < crate::split::directory::READ_ALIGN_BYTES =>
            {
                previous.end = range.end;
            }
            _ => coalesced.push((name, range)),
        }
    }
    // Each segment's ranges are read together, so each is bounded on its own.
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut kept = Vec::new();
    for (name, range) in coalesced {
        let total = totals.entry(segment_of(&name).to_string()).or_default();
        *total += range.end - range.start;
        if *total <= crate::split::directory::MAX_LOOKUP_BYTES {
            kept.push((name, range));
        }
    }
    kept
}

/// The signal of a partition's index (spans have a duration), and a searcher over its
/// committed segments.
pub(crate) fn signal_and_searcher(
    index: &Index,
) -> Result<(crate::Signal, tantivy::Searcher), crate::IndexError> {
    let signal = if index.schema().get_field("duration").is_ok() {
        crate::Signal::Spans
    } else {
        crate::Signal::Logs
    };
    let reader: tantivy::IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    Ok((signal, reader.searcher()))
}

/// Traces looked up per segment when packing, to find what every lookup reads.
const LOOKUP_SAMPLES: u64 = 16;

/// Opens the index in `dir` and looks up, in each segment, the traces of a few of its rows,
/// noting every read of the lookups.
fn record_lookup(dir: &Path) -> Result<Vec<(PathBuf, Range<u64>)>, crate::IndexError> {
    let log = ReadLog::default();
    let directory = RecordingDirectory {
        inner: Box::new(MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?),
        log: log.clone(),
    };
    let index = Index::open(directory)?;
    let (signal, searcher) = signal_and_searcher(&index)?;
    if searcher.num_docs() == 0 {
        return Ok(Vec::new());
    }
    // Lookups in each segment alone, of the traces of rows spread over it: together they
    // read the columns of every segment and, with the reads rounded out, most of the trace
    // ID field's term dictionary and postings (a few tens of kilobytes per segment).
    let mut rows = crate::rows::RowReader::new(&searcher);
    let mut reads = Vec::new();
    for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
        let only = [segment.segment_id().uuid_string()];
        let max_doc = segment.max_doc();
        let samples: Vec<u32> = (0..LOOKUP_SAMPLES)
            .map(|i| (u64::from(max_doc) * i / LOOKUP_SAMPLES) as u32)
            .filter(|doc| !segment.is_deleted(*doc))
            .collect();
        for doc in samples {
            let address = tantivy::DocAddress::new(ordinal as u32, doc);
            let trace_id = match signal {
                crate::Signal::Spans => rows.span(address)?.trace_id,
                crate::Signal::Logs => rows.log(address)?.0.trace_id,
            };
            // Reading the row was only the way to a trace ID: only the lookup's reads count.
            log.lock().unwrap_or_else(|p| p.into_inner()).clear();
            crate::lookup::trace_rows_in(&searcher, Some(&only), signal, &trace_id, (16, 16))?;
            reads.append(&mut log.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
    Ok(reads)
}

/// The segment a file of a tantivy index belongs to: its name up to the first dot (segment
/// files are `<segment id>.<kind>`).
pub(crate) fn segment_of(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

/// Per file, its ranges sorted and merged where they touch or overlap.
fn merge(wanted: BTreeMap<String, Vec<Range<u64>>>) -> Vec<(String, Range<u64>)> {
    let mut merged: Vec<(String, Range<u64>)> = Vec::new();
    for (name, mut list) in wanted {
        list.sort_by_key(|r| r.start);
        let mut current: Option<Range<u64>> = None;
        for r in list {
            current = match current {
                Some(c) if r.start <= c.end => Some(c.start..c.end.max(r.end)),
                Some(c) => {
                    merged.push((name.clone(), c));
                    Some(r)
                }
                None => Some(r),
            };
        }
        if let Some(c) = current {
            merged.push((name, c));
        }
    }
    merged
}

/// Opens the index in `dir` as a search would, and each indexed field's term dictionary,
/// noting every read.
fn record_opening(dir: &Path) -> tantivy::Result<Vec<(PathBuf, Range<u64>)>> {
    let log = ReadLog::default();
    let directory = RecordingDirectory {
        inner: Box::new(MmapDirectory::open(dir)?),
        log: log.clone(),
    };
    let index = Index::open(directory)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    let searcher = reader.searcher();
    let schema = index.schema();
    for segment in searcher.segment_readers() {
        for (field, entry) in schema.fields() {
            if entry.is_indexed() {
                segment.inverted_index(field)?;
            }
        }
    }
    drop(searcher);
    drop(reader);
    drop(index);
    let reads = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(reads)
}

/// A directory that passes everything through to `inner` and notes each read.
#[derive(Clone, Debug)]
pub(crate) struct RecordingDirectory {
    inner: Box<dyn Directory>,
    log: ReadLog,
}

impl RecordingDirectory {
    fn note(&self, path: &Path, range: Range<u64>) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path.to_path_buf(), range));
    }
}

#[derive(Debug)]
struct RecordingHandle {
    inner: Arc<dyn FileHandle>,
    path: PathBuf,
    log: ReadLog,
}

impl HasLen for RecordingHandle {
    fn len(&self) -> usize {
        self.inner.len()
    }
}

impl FileHandle for RecordingHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((self.path.clone(), range.start as u64..range.end as u64));
        self.inner.read_bytes(range)
    }
}

impl Directory for RecordingDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        Ok(Arc::new(RecordingHandle {
            inner: self.inner.get_file_handle(path)?,
            path: path.to_path_buf(),
            log: self.log.clone(),
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let bytes = self.inner.atomic_read(path)?;
        self.note(path, 0..bytes.len() as u64);
        Ok(bytes)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}
