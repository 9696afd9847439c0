//! One time partition: a tantivy index holding one signal's rows for one hour.
//!
//! Each commit stores, in tantivy's commit payload, the write-ahead-log position up to which
//! every row routed to this partition is included. Replay after a crash skips the entries a
//! partition already holds, so each row is indexed exactly once.
//!
//! A span partition also keeps its table of calls between services (`calls`) in a file
//! `calls-<position>.json`, written before the commit of that position: the table in force is
//! the newest file at or below the committed position, so a file written for a commit that
//! never happened is ignored (and deleted), and calls count with the rows that completed them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tantivy::directory::MmapDirectory;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument};

use crate::Signal;
use crate::calls::{Call, CallTable};
use crate::error::IndexError;
use crate::faults::{Faults, FaultyDirectory};
use crate::format::Format;
use crate::merge::merge_policy;
pub(crate) use crate::merge::{MIN_WRITER_MEMORY_BYTES, SEGMENT_MAX_DOCS};
use crate::split::directory::SplitDirectory;

/// Width of a partition.
pub const PARTITION_NANOS: u64 = 3_600 * 1_000_000_000;

/// How a partition's writer writes and merges.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriterSettings {
    /// Memory the writer may fill before it flushes a segment. The arena grows as documents
    /// arrive, so an idle writer costs little.
    pub(crate) memory_bytes: usize,
    /// The most documents a merge makes one segment of.
    pub(crate) max_segment_docs: u32,
}

/// Segments of splits read in place searched at once, across all queries.
const SPLIT_SEARCH_THREADS: usize = 8;

/// The thread pool that searches the segments of splits read in place (one for the process;
/// its threads mostly wait for object storage). Searches run on the calling thread when it
/// cannot be started.
fn split_search_executor() -> tantivy::Executor {
    static EXECUTOR: std::sync::OnceLock<tantivy::Executor> = std::sync::OnceLock::new();
    EXECUTOR
        .get_or_init(|| {
            tantivy::Executor::multi_thread(SPLIT_SEARCH_THREADS, "weft-split-search-")
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "no threads for split searches; searching on one");
                    tantivy::Executor::single_thread()
                })
        })
        .clone()
}

/// Where a partition starts, for a row time.
pub fn partition_start(time_unix_nano: u64) -> u64 {
    time_unix_nano - time_unix_nano % PARTITION_NANOS
}

/// Which partition: a signal's hour, and which part of that hour.
///
/// An hour's rows go to part 0 until it holds the size at which partitions are sealed
/// (`StoreOptions::seal_docs`, with object storage); later rows of that hour go to the next
/// part, so that no split grows past that size whatever an hour receives. Parts of one hour
/// overlap in time; different hours never do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PartitionKey {
    pub(crate) signal: Signal,
    /// The start of its hour.
    pub(crate) start_ns: u64,
    pub(crate) part: u32,
}

impl PartitionKey {
    pub(crate) fn new(signal: Signal, start_ns: u64, part: u32) -> Self {
        PartitionKey {
            signal,
            start_ns,
            part,
        }
    }

    /// Part 0 of the hour starting at `start_ns`.
    pub(crate) fn hour(signal: Signal, start_ns: u64) -> Self {
        Self::new(signal, start_ns, 0)
    }
}

/// Directory name of a partition: its UTC start hour, `2026-11-22T03`, and for parts after
/// the first, the part: `2026-11-22T03.1`.
pub(crate) fn dir_name(start_ns: u64, part: u32) -> String {
    let hour = hour_name(start_ns);
    match part {
        0 => hour,
        n => format!("{hour}.{n}"),
    }
}

fn hour_name(start_ns: u64) -> String {
    let secs = (start_ns / 1_000_000_000) as i64;
    match tantivy::time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour()
        ),
        // Beyond the calendar's range: fall back to the raw hour number, still parseable.
        Err(_) => format!("h{}", start_ns / PARTITION_NANOS),
    }
}

/// Inverse of [`dir_name`]: the hour's start and the part; `None` for names that are not
/// partitions.
pub(crate) fn parse_dir_name(name: &str) -> Option<(u64, u32)> {
    let (hour, part) = match name.split_once('.') {
        Some((hour, part)) if !part.starts_with('0') => (hour, part.parse::<u32>().ok()?),
        Some(_) => return None,
        None => (name, 0),
    };
    Some((parse_hour_name(hour)?, part))
}

fn parse_hour_name(name: &str) -> Option<u64> {
    if let Some(hours) = name.strip_prefix('h') {
        return hours.parse::<u64>().ok()?.checked_mul(PARTITION_NANOS);
    }
    let (date, hour) = name.split_once('T')?;
    let mut parts = date.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let hour: u8 = hour.parse().ok()?;
    let month = tantivy::time::Month::try_from(month).ok()?;
    let date = tantivy::time::Date::from_calendar_date(year, month, day).ok()?;
    let secs = date
        .with_hms(hour, 0, 0)
        .ok()?
        .assume_utc()
        .unix_timestamp();
    u64::try_from(secs).ok().map(|s| s * 1_000_000_000)
}

pub(crate) struct Partition {
    pub(crate) signal: Signal,
    pub(crate) start_ns: u64,
    /// Which part of its hour it is.
    pub(crate) part: u32,
    pub(crate) dir: PathBuf,
    /// The format the partition was created in; its rows are all written in it.
    pub(crate) format: Format,
    index: Index,
    /// The partition's directory outside tantivy's management, for weft's own files.
    raw: Box<dyn tantivy::Directory>,
    reader: IndexReader,
    /// Touched only by the indexing thread; the mutex makes `Partition` shareable with readers.
    writer: Mutex<WriterState>,
    /// How its writer writes and merges.
    writer_settings: WriterSettings,
    /// WAL position through which this partition's rows are committed.
    committed_lsn: AtomicU64,
    /// Calls between services completed by this partition's rows.
    calls: Mutex<PartitionCalls>,
    /// What object storage has of this partition (unused without it).
    pub(crate) publication: Publication,
    /// The split this partition is read from in place; `None` for a local directory.
    split: Option<SplitDirectory>,
}

/// How far a partition's rows are in object storage. Positions are WAL positions; `u64::MAX`
/// means none. The WAL is kept from the least of them on (see `Store::wal_floor`).
pub(crate) struct Publication {
    /// First position of rows added since the last snapshot taken for a split.
    pub(crate) unpublished_from: AtomicU64,
    /// First position of rows in a snapshot being uploaded.
    pub(crate) in_flight_from: AtomicU64,
    /// When rows were last added (unix ns, this process's clock; 0 before any).
    pub(crate) last_write_unix_nano: AtomicU64,
    /// The published split that holds this partition as of its last publication.
    pub(crate) split_id: Mutex<Option<String>>,
}

impl Publication {
    fn new(has_rows: bool) -> Self {
        Publication {
            // Rows committed before this process started are unpublished until the metastore
            // says otherwise; 0 keeps every WAL entry still present for them.
            unpublished_from: AtomicU64::new(if has_rows { 0 } else { u64::MAX }),
            in_flight_from: AtomicU64::new(u64::MAX),
            last_write_unix_nano: AtomicU64::new(0),
            split_id: Mutex::new(None),
        }
    }

    pub(crate) fn note_rows_from(&self, lsn: u64) {
        self.unpublished_from.fetch_min(lsn, Ordering::AcqRel);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.last_write_unix_nano.store(now, Ordering::Release);
    }

    /// The least position this partition still needs kept in the WAL.
    pub(crate) fn floor(&self) -> u64 {
        self.unpublished_from
            .load(Ordering::Acquire)
            .min(self.in_flight_from.load(Ordering::Acquire))
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.floor() == u64::MAX
    }

    pub(crate) fn split_id(&self) -> Option<String> {
        self.split_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_split_id(&self, id: Option<String>) {
        *self.split_id.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }
}

/// A partition's calls: as committed, recorded since, and the position of the file holding
/// the committed table.
#[derive(Default)]
struct PartitionCalls {
    committed: CallTable,
    pending: CallTable,
    file_lsn: Option<u64>,
}

/// `calls-<position>.json`: a partition's calls table as of that commit position.
fn calls_file_name(lsn: u64) -> String {
    format!("calls-{lsn}.json")
}

/// The commit positions of the calls files in `dir`.
fn calls_files(dir: &Path) -> Result<Vec<u64>, IndexError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(calls_positions(&names))
}

/// The commit positions of the calls files among `names`.
fn calls_positions(names: &[String]) -> Vec<u64> {
    names
        .iter()
        .filter_map(|name| {
            name.strip_prefix("calls-")
                .and_then(|rest| rest.strip_suffix(".json"))
                .and_then(|lsn| lsn.parse::<u64>().ok())
        })
        .collect()
}

/// The calls table in force at `committed_lsn`: the newest file at or below it. Files above it
/// were written for a commit that did not happen, older ones were replaced; both are deleted.
/// A table that cannot be read is derived data, not rows: it is logged and started anew.
/// `files` are the positions of the calls files present; a read-only partition keeps the
/// others (`delete_others` false).
fn load_calls(
    dir: &Path,
    raw: &dyn tantivy::Directory,
    committed_lsn: u64,
    files: Vec<u64>,
    delete_others: bool,
) -> Result<(CallTable, Option<u64>), IndexError> {
    let chosen = files.iter().copied().filter(|l| *l <= committed_lsn).max();
    let others = files.into_iter().filter(|l| Some(*l) != chosen);
    for lsn in others.filter(|_| delete_others) {
        if let Err(error) = raw.delete(Path::new(&calls_file_name(lsn))) {
            tracing::warn!(%error, lsn, "cannot delete a stale calls table");
        }
    }
    let Some(lsn) = chosen else {
        return Ok((CallTable::default(), None));
    };
    let table = raw
        .atomic_read(Path::new(&calls_file_name(lsn)))
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice::<CallTable>(&bytes).map_err(|e| e.to_string()));
    match table {
        Ok(table) => Ok((table, Some(lsn))),
        Err(error) => {
            tracing::warn!(%error, path = %dir.display(), "calls table unreadable; starting it anew");
            Ok((CallTable::default(), Some(lsn)))
        }
    }
}

/// Where a partition's files are: a local directory it writes to, or a split read in place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    LocalDirectory,
    Split,
}

#[derive(Default)]
struct WriterState {
    writer: Option<IndexWriter>,
    uncommitted_docs: usize,
    /// Commit rounds since the writer last received a document.
    idle_rounds: u32,
}

impl Partition {
    /// Opens the partition in `dir`, creating it if needed. With `faults`, its files are written
    /// through a directory that fails on demand.
    pub(crate) fn open(
        key: PartitionKey,
        dir: &Path,
        writer_settings: WriterSettings,
        faults: Option<&Arc<Faults>>,
    ) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir)?;
        let mmap = MmapDirectory::open(dir).map_err(|e| IndexError::Open {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let directory: Box<dyn tantivy::Directory> = match faults {
            Some(faults) => Box::new(FaultyDirectory::new(mmap, faults.clone())),
            None => Box::new(mmap),
        };
        let exists = Index::exists(&*directory).map_err(|e| IndexError::Open {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let declared = Format::declared(&*directory, dir)?;
        // weft's own files (format, calls) are written past tantivy's managed directory,
        // which would count them as its own and garbage-collect them.
        let raw = directory.box_clone();
        let (index, format) = if exists {
            let index = Index::open(directory)?;
            let format = Format::of_partition(key.signal, &index.schema(), declared, &*raw, dir)?;
            (index, format)
        } else {
            // The format file first: a directory left with it and no index (a crash, a full
            // disk) becomes a partition of that format on the next attempt.
            let format = declared.unwrap_or(Format::CURRENT);
            if declared.is_none() {
                format.record(&*directory)?;
            }
            // The stored rows are the largest part of the bytes on disk. Once the IDs, time
            // and origin are columns, what remains (bodies, attributes) compresses best with
            // more context: zstd level 5 over 256 KiB blocks keeps them 17 % smaller than
            // level 1 over 64 KiB (42.8 vs 51.6 bytes per record on `weft bench --profile
            // peer`); larger blocks gained nothing more at level 5, and level 9 two bytes at a
            // fifth more CPU. Reading one row decompresses its block, a fraction of a
            // millisecond; the reader caches recent blocks.
            let settings = IndexSettings {
                docstore_compression: Compressor::Zstd(ZstdCompressor {
                    compression_level: Some(5),
                }),
                docstore_blocksize: 262_144,
                ..IndexSettings::default()
            };
            let index = Index::builder()
                .schema(key.signal.schema(format))
                .settings(settings)
                .open_or_create(directory)?;
            (index, format)
        };
        let calls_files = calls_files(dir)?;
        Self::assemble(
            (key, dir),
            (index, format, raw),
            WriterSettings {
                memory_bytes: writer_settings.memory_bytes.max(MIN_WRITER_MEMORY_BYTES),
                ..writer_settings
            },
            calls_files,
            Origin::LocalDirectory,
        )
    }

    /// Opens a sealed partition from its split in object storage, read in place, for
    /// queries: it never gets a writer, and nothing in it is ever written. `dir` is where
    /// its local copy would be, for messages.
    pub(crate) fn open_remote(
        key: PartitionKey,
        dir: &Path,
        directory: SplitDirectory,
    ) -> Result<Self, IndexError> {
        let names = directory.file_names();
        let directory_for_prefetch = directory.clone();
        let raw: Box<dyn tantivy::Directory> = Box::new(directory.clone());
        let declared = Format::declared(&*raw, dir)?;
        let mut index = Index::open(directory)?;
        // A split holds several segments, and each read of one waits for object storage:
        // searches run its segments at once.
        index.set_executor(split_search_executor());
        let schema = index.schema();
        // A split without a format file is from before format numbers; its schema says
        // which it is, and nothing is written back.
        let declared = declared.or_else(|| Format::of_schema(key.signal, &schema));
        let format = Format::of_partition(key.signal, &schema, declared, &*raw, dir)?;
        let mut partition = Self::assemble(
            (key, dir),
            (index, format, raw),
            // Never written: a split read in place has no writer.
            WriterSettings {
                memory_bytes: MIN_WRITER_MEMORY_BYTES,
                max_segment_docs: SEGMENT_MAX_DOCS,
            },
            calls_positions(&names),
            Origin::Split,
        )?;
        partition.split = Some(directory_for_prefetch);
        Ok(partition)
    }

    /// Reads at once, in parallel, what a trace lookup reads of this partition's split
    /// whatever the trace (`SplitFooter::lookup`); nothing for a local partition.
    pub(crate) fn prefetch_for_lookup(
        &self,
        segments: Option<&[String]>,
    ) -> Result<(), IndexError> {
        match &self.split {
            Some(split) => split.prefetch_lookup(segments),
            None => Ok(()),
        }
    }

    /// Whether the partition is a split read in place from object storage.
    pub(crate) fn is_read_in_place(&self) -> bool {
        self.split.is_some()
    }

    /// The partition around an opened index: the WAL position of its last commit, the calls
    /// table in force at it (among the calls files at `calls_files`), a reader.
    fn assemble(
        (key, dir): (PartitionKey, &Path),
        (index, format, raw): (Index, Format, Box<dyn tantivy::Directory>),
        writer_settings: WriterSettings,
        calls_files: Vec<u64>,
        origin: Origin,
    ) -> Result<Self, IndexError> {
        let committed_lsn = index
            .load_metas()?
            .payload
            .and_then(|p| p.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let writable = origin == Origin::LocalDirectory;
        let (calls, file_lsn) = load_calls(dir, &*raw, committed_lsn, calls_files, writable)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Partition {
            signal: key.signal,
            start_ns: key.start_ns,
            part: key.part,
            dir: dir.to_path_buf(),
            format,
            index,
            reader,
            writer: Mutex::new(WriterState::default()),
            writer_settings,
            committed_lsn: AtomicU64::new(committed_lsn),
            // A split read in place is published by definition.
            publication: Publication::new(writable && committed_lsn > 0),
            raw,
            calls: Mutex::new(PartitionCalls {
                committed: calls,
                pending: CallTable::default(),
                file_lsn,
            }),
            split: None,
        })
    }

    fn calls_state(&self) -> MutexGuard<'_, PartitionCalls> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records calls completed by rows being added; they commit with those rows.
    pub(crate) fn record_calls(&self, calls: &[Call]) {
        let mut state = self.calls_state();
        for call in calls {
            state.pending.record(call);
        }
    }

    /// Adds the committed calls of `[start, end)` into `into`, by pair of services.
    pub(crate) fn sum_calls(
        &self,
        start: u64,
        end: u64,
        into: &mut std::collections::BTreeMap<(String, String), crate::calls::CallStats>,
    ) {
        self.calls_state().committed.sum_into(start, end, into);
    }

    /// The writer's state. A panic while it was held leaves nothing this code relies on
    /// half-done (the indexer rolls every writer back after one), so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, WriterState> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a writer (with its threads and arena) is open.
    pub(crate) fn has_writer(&self) -> bool {
        self.state().writer.is_some()
    }

    /// Documents added but not committed.
    pub(crate) fn uncommitted_docs(&self) -> usize {
        self.state().uncommitted_docs
    }

    pub(crate) fn key(&self) -> PartitionKey {
        PartitionKey::new(self.signal, self.start_ns, self.part)
    }

    pub(crate) fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(PARTITION_NANOS)
    }

    pub(crate) fn committed_lsn(&self) -> u64 {
        self.committed_lsn.load(Ordering::Acquire)
    }

    /// The services with committed rows here, sorted: the dictionary of each segment's
    /// service column, no row read.
    pub(crate) fn services(&self) -> Result<Vec<String>, IndexError> {
        let mut services = std::collections::BTreeSet::new();
        for segment in self.searcher().segment_readers() {
            let Some(column) = segment.fast_fields().str("service")? else {
                continue;
            };
            let mut terms = column.dictionary().stream()?;
            while terms.advance() {
                services.insert(String::from_utf8_lossy(terms.key()).into_owned());
            }
        }
        Ok(services.into_iter().collect())
    }

    /// Documents committed.
    pub(crate) fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub(crate) fn searcher(&self) -> tantivy::Searcher {
        self.reader.searcher()
    }

    pub(crate) fn add_documents(
        &self,
        docs: impl Iterator<Item = TantivyDocument>,
    ) -> Result<usize, IndexError> {
        let mut state = self.state();
        if state.writer.is_none() {
            let writer = self
                .index
                .writer_with_num_threads(1, self.writer_settings.memory_bytes)?;
            writer.set_merge_policy(Box::new(merge_policy(
                self.writer_settings.max_segment_docs,
            )));
            state.writer = Some(writer);
        }
        let writer = state.writer.as_ref().expect("writer opened above");
        let mut added = 0;
        for doc in docs {
            writer.add_document(doc)?;
            added += 1;
        }
        state.uncommitted_docs += added;
        state.idle_rounds = 0;
        Ok(added)
    }

    /// Commits pending documents with `lsn` as the position they are complete through, then
    /// makes them visible to searches. Returns how many documents were committed.
    pub(crate) fn commit(&self, lsn: u64) -> Result<usize, IndexError> {
        let mut state = self.state();
        let pending = state.uncommitted_docs;
        if pending == 0 {
            state.idle_rounds = state.idle_rounds.saturating_add(1);
            return Ok(0);
        }
        let writer = state
            .writer
            .as_mut()
            .expect("documents were added, so a writer is open");
        // New calls: the whole table goes to a file of this position, before the commit. The
        // lock is not held across the commit, so queries summing calls do not wait for it;
        // only this thread adds calls, so the pending ones cannot change meanwhile.
        let table = {
            let calls = self.calls_state();
            (!calls.pending.is_empty()).then(|| {
                let mut table = calls.committed.clone();
                table.merge(&calls.pending);
                table
            })
        };
        if let Some(table) = &table {
            let json = serde_json::to_vec(table).map_err(std::io::Error::other)?;
            self.raw
                .atomic_write(Path::new(&calls_file_name(lsn)), &json)?;
        }
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&lsn.to_string());
        prepared.commit()?;
        if let Some(table) = table {
            let mut calls = self.calls_state();
            calls.committed = table;
            calls.pending = CallTable::default();
            if let Some(old) = calls.file_lsn.replace(lsn).filter(|old| *old != lsn)
                && let Err(error) = self.raw.delete(Path::new(&calls_file_name(old)))
            {
                tracing::warn!(%error, lsn = old, "cannot delete a replaced calls table");
            }
        }
        state.uncommitted_docs = 0;
        self.committed_lsn.store(lsn, Ordering::Release);
        drop(state);
        self.reader.reload()?;
        Ok(pending)
    }

    /// Closes the writer if it has nothing pending and has been idle `rounds` commit rounds;
    /// a partition that stops receiving data should not keep threads and memory.
    pub(crate) fn close_writer_if_idle(&self, rounds: u32) {
        let mut state = self.state();
        if state.uncommitted_docs > 0 || state.idle_rounds < rounds {
            return;
        }
        if let Some(writer) = state.writer.take() {
            // Waiting for merges keeps the directory consistent for a later reopen.
            if let Err(error) = writer.wait_merging_threads() {
                tracing::warn!(%error, "waiting for merges of an idle partition failed");
            }
        }
    }

    /// Closes the writer whatever it holds (uncommitted documents are dropped), waiting for its
    /// threads, so that nothing writes into the directory afterwards.
    pub(crate) fn close_writer(&self) {
        let mut state = self.state();
        state.uncommitted_docs = 0;
        self.calls_state().pending = CallTable::default();
        if let Some(writer) = state.writer.take()
            && let Err(error) = writer.wait_merging_threads()
        {
            tracing::warn!(%error, "waiting for merges of a closing partition failed");
        }
    }

    /// Deletes calls files written for a commit that failed: a later commit may not write a
    /// file of its own, and such a file would then pass for the table in force.
    fn delete_uncommitted_calls(&self) {
        let committed = self.committed_lsn();
        match calls_files(&self.dir) {
            Ok(files) => {
                for lsn in files.into_iter().filter(|l| *l > committed) {
                    if let Err(error) = self.raw.delete(Path::new(&calls_file_name(lsn))) {
                        tracing::warn!(%error, lsn, "cannot delete an uncommitted calls table");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list the calls tables"),
        }
    }

    /// Drops the writer and what it holds uncommitted, after a failure: the partition is back
    /// at its last commit, and the rows since then are added again from the WAL.
    pub(crate) fn rollback(&self) {
        let mut state = self.state();
        state.uncommitted_docs = 0;
        self.calls_state().pending = CallTable::default();
        self.delete_uncommitted_calls();
        state.idle_rounds = 0;
        // Dropping a writer discards its uncommitted documents and stops its threads.
        if let Some(writer) = state.writer.take() {
            drop(writer);
            self.collect_garbage();
        }
    }

    /// Deletes the files of segments that were never committed. A failed attempt (a full disk)
    /// leaves its partly written segment behind; without this, every retry would leave another
    /// and the disk would never come back.
    fn collect_garbage(&self) {
        let result = self
            .index
            .writer_with_num_threads::<TantivyDocument>(1, MIN_WRITER_MEMORY_BYTES)
            .map_err(IndexError::from)
            .and_then(|writer| {
                let collected = writer.garbage_collect_files().wait();
                drop(writer);
                collected.map_err(IndexError::from)
            });
        match result {
            Ok(collected) => tracing::debug!(
                dir = %self.dir.display(),
                deleted = collected.deleted_files.len(),
                "uncommitted segment files removed"
            ),
            Err(error) => {
                tracing::warn!(%error, dir = %self.dir.display(), "removing uncommitted segment files failed")
            }
        }
    }

    /// Bytes the partition uses on disk.
    pub(crate) fn disk_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip() {
        for ns in [
            0u64,
            1_763_780_000_123_456_789,
            partition_start(1_800_000_000_000_000_000),
        ] {
            let start = partition_start(ns);
            for part in [0, 1, 12] {
                let name = dir_name(start, part);
                assert_eq!(parse_dir_name(&name), Some((start, part)), "{name}");
            }
        }
        let start = partition_start(1_763_780_000_123_456_789);
        assert_eq!(dir_name(start, 0), "2025-11-22T02");
        assert_eq!(dir_name(start, 3), "2025-11-22T02.3");
        assert_eq!(parse_dir_name("checkpoint"), None);
        assert_eq!(parse_dir_name("2025-13-01T00"), None);
        assert_eq!(parse_dir_name("2025-11-22T02.x"), None);
        assert_eq!(parse_dir_name("2025-11-22T02.01"), None);
        assert_eq!(parse_dir_name("2025-11-22T02.0"), None);
    }
}
