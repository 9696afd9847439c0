//! All partitions of both signals under one data directory.
//!
//! Writing is done by one thread (weft's indexer): [`Store::index_batch`] routes rows to the
//! partition of their hour, [`Store::commit`] commits every partition with pending rows and then
//! advances the checkpoint, the WAL position from which replay must start after a restart.
//! Searches may run from any thread at the same time.
//!
//! Each open writer has threads and an arena of its own, and client timestamps choose the
//! partition, so at most [`StoreOptions::max_open_writers`] writers are open at once: a batch
//! that needs one more first commits and closes one it no longer needs. After any failure,
//! [`Store::rollback`] brings every partition back to its last commit; the caller then adds the
//! rows since the checkpoint again from its log, and the per-partition skip keeps each row once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::calls::{CallTracker, ServiceCall};
use crate::error::IndexError;
use crate::faults::Faults;
use crate::partition::{self, MIN_WRITER_MEMORY_BYTES, Partition, PartitionKey, partition_start};
use crate::split_directory::SplitDirectory;
use crate::{RowBatch, Signal, log_fields, span_fields};

/// File under the data root holding the checkpoint as a decimal WAL position.
const CHECKPOINT_FILE: &str = "checkpoint";

/// Commit rounds a writer may stay idle before it is closed.
const IDLE_WRITER_ROUNDS: u32 = 120;

/// Positions in a batch of the rows bound for one partition.
#[derive(Default)]
struct PartitionRows {
    logs: Vec<usize>,
    spans: Vec<usize>,
}

/// Where partitions fetched back from object storage are unpacked before they move into place.
const FETCH_DIR: &str = "fetching";

/// Reads splits from object storage; weft's storage layer implements it. Each error says
/// why it could not.
pub trait SplitFetcher: Send + Sync {
    /// Writes the split `id` to the file `dest`: a late row for a partition kept only in
    /// object storage brings the whole of it back.
    fn fetch(&self, id: &str, dest: &Path) -> Result<(), String>;
    /// Bytes `range` of split `id`: queries read splits in place.
    fn read_range(&self, id: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, String>;
    /// The last `len` bytes of split `id` (all of it, when it is shorter), and its size.
    fn read_tail(&self, id: &str, len: u64) -> Result<(Vec<u8>, u64), String>;
}

/// Remote partitions kept open for queries at once, and the memory their reads may hold
/// (hot caches and ranges read); past either, the least recently used are closed.
const OPEN_REMOTE_MAX: usize = 256;
const OPEN_REMOTE_BYTES: u64 = 256 << 20;

/// Where the trace filters of partitions kept only in object storage stay, one per split.
const FILTER_DIR: &str = "filters";

/// A partition of one node, as the nodes of a cluster name it to each other.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionRef {
    /// Which signal.
    pub signal: Signal,
    /// The start of its hour.
    pub start_unix_nano: u64,
    /// Which part of that hour.
    pub part: u32,
}

/// A partition of a named node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SplitOrigin {
    /// The node (`node_id`) that publishes it.
    pub node: String,
    /// Its partition there.
    pub partition: PartitionRef,
}

/// Which partitions a query reads.
#[derive(Clone, Debug, Default)]
pub enum Scope {
    /// All of them: one node on its own.
    #[default]
    All,
    /// Only local partitions holding rows not yet in a published split (or not yet known to
    /// be): what an ingest node answers a search node for.
    Unpublished,
    /// All but the followed splits of these partitions, whose nodes answered for them with
    /// their unpublished rows: a search node's own part of a query.
    Except(std::collections::HashSet<SplitOrigin>),
    /// Only these local partitions: [`Store::unpublished_scope`], fixed once for an answer
    /// that lists partitions several times, so that every listing is the same.
    Only(std::collections::HashSet<PartitionRef>),
}

/// A partition whose only copy is a published split.
#[derive(Clone, Debug)]
struct RemoteSplit {
    id: String,
    /// Which node's partition it is, for a search node following other nodes' splits.
    origin: Option<SplitOrigin>,
    /// The WAL position its partition was committed through.
    committed_lsn: u64,
    /// Documents in it.
    docs: u64,
    /// Its trace filter on the local disk; without one, a trace lookup opens the split.
    filter: Option<PathBuf>,
    /// The services with rows in it, when known: a query for other services skips it.
    services: Option<Vec<String>>,
}

/// A remote partition open for reading in place.
struct OpenRemote {
    key: PartitionKey,
    split_id: String,
    partition: Arc<Partition>,
    directory: SplitDirectory,
}

/// A published split, as the metastore lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedSplit {
    /// Its ID (also its object's name).
    pub id: String,
    /// Which signal it holds.
    pub signal: Signal,
    /// The start of its partition's hour.
    pub start_unix_nano: u64,
    /// Which part of that hour.
    pub part: u32,
    /// The WAL position its partition was committed through.
    pub committed_lsn: u64,
    /// Documents in it.
    pub docs: u64,
    /// The node that published it, when known.
    pub node: Option<String>,
    /// The services with rows in it; `None` when the metastore does not know.
    pub services: Option<Vec<String>>,
}

/// A consistent copy of a sealed partition, ready to be packed and uploaded.
#[derive(Clone, Debug)]
pub struct SealedSnapshot {
    /// Which signal.
    pub signal: Signal,
    /// The start of its hour.
    pub start_unix_nano: u64,
    /// Which part of that hour.
    pub part: u32,
    /// The WAL position it is committed through.
    pub committed_lsn: u64,
    /// Documents in it.
    pub docs: u64,
    /// A directory of hard links to its files, the caller's to pack and delete.
    pub dir: PathBuf,
    /// The published split this one replaces (rows arrived after it was published).
    pub replaces: Option<String>,
    /// The services with rows in it, sorted.
    pub services: Vec<String>,
}

impl SealedSnapshot {
    fn key(&self) -> PartitionKey {
        PartitionKey::new(self.signal, self.start_unix_nano, self.part)
    }
}

/// What one eviction round removed from the local disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Partitions whose local copy was deleted.
    pub partitions: usize,
    /// Bytes freed.
    pub bytes: u64,
}

/// The partitions of both signals, and the checkpoint.
pub struct Store {
    root: PathBuf,
    partitions: RwLock<BTreeMap<PartitionKey, Arc<Partition>>>,
    /// Partitions kept only in object storage; fetched into `partitions` when a query or a
    /// late row needs them.
    remote: RwLock<BTreeMap<PartitionKey, RemoteSplit>>,
    fetcher: RwLock<Option<Arc<dyn SplitFetcher>>>,
    /// Remote partitions opened for queries, read in place, least recently used first.
    open_remote: Mutex<Vec<OpenRemote>>,
    /// Remote partitions queries read since the last [`Store::fill_cache`].
    read_remote: Mutex<std::collections::BTreeSet<PartitionKey>>,
    /// Followed splits found to have no trace filter (written before filters were), so that
    /// they are not read again for one.
    without_filter: Mutex<std::collections::HashSet<String>>,
    /// One fetch at a time, so that two queries never download the same split twice.
    fetch_lock: Mutex<()>,
    checkpoint: AtomicU64,
    options: StoreOptions,
    /// Pairs spans with their parents across batches, finding calls between services.
    calls: Mutex<CallTracker>,
    /// The most writers ever open at once, read right after each one opens (so a batch that
    /// went over the cap midway shows it, even if it closed writers before returning).
    peak_open_writers: AtomicUsize,
}

/// How the store bounds its writers, and the faults it injects (tests only).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Partition writers open at once; each has an indexing thread, merge threads and an arena.
    pub max_open_writers: usize,
    /// Memory all open writers may fill together before they flush segments; each writer gets
    /// an equal share (at least the 15 MB tantivy needs).
    pub writer_memory_bytes: usize,
    /// Faults to inject into partition directories and the checkpoint file.
    pub faults: Option<Arc<Faults>>,
    /// Partitions go to object storage: the WAL is kept until they are published there
    /// ([`Store::wal_floor`]), and merges stop at segments of
    /// [`SEGMENT_MAX_DOCS`](crate::SEGMENT_MAX_DOCS) rows.
    pub object_storage: bool,
    /// Rows at which a partition is full: it is sealed without waiting for its hour to end,
    /// and its hour's later rows go to a new part. `None`: an hour is one partition.
    pub seal_docs: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_open_writers: 4,
            writer_memory_bytes: 256 << 20,
            faults: None,
            object_storage: false,
            seal_docs: None,
        }
    }
}

impl StoreOptions {
    /// Each writer's share of the memory; merges capped at [`partition::SEGMENT_MAX_DOCS`]
    /// with object storage (splits are read a segment at a time), not without.
    fn writer_settings(&self) -> partition::WriterSettings {
        partition::WriterSettings {
            memory_bytes: (self.writer_memory_bytes / self.max_open_writers.max(1))
                .max(MIN_WRITER_MEMORY_BYTES),
            max_segment_docs: if self.object_storage {
                partition::SEGMENT_MAX_DOCS
            } else {
                u32::MAX
            },
        }
    }
}

/// What one commit round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Partitions committed.
    pub partitions: usize,
    /// Documents made searchable.
    pub documents: usize,
}

/// What retention keeps.
#[derive(Clone, Debug)]
pub struct RetentionPolicy {
    /// Partitions that end before this time are deleted.
    pub min_time_unix_nano: u64,
    /// When the partitions use more than this, the oldest are deleted until they fit.
    /// The newest partition of each signal is always kept.
    pub max_disk_bytes: Option<u64>,
}

/// One partition removed by retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedPartition {
    /// Which signal it held.
    pub signal: Signal,
    /// Its start time.
    pub start_unix_nano: u64,
    /// Bytes it used on the local disk.
    pub bytes: u64,
    /// Its published split, to be deleted from object storage too.
    pub split_id: Option<String>,
}

impl Store {
    /// Opens (or creates) the store under `root`, loading every partition found there.
    pub fn open(root: &Path) -> Result<Self, IndexError> {
        Self::open_with(root, StoreOptions::default())
    }

    /// [`Store::open`] with explicit bounds (and faults, for tests).
    pub fn open_with(root: &Path, options: StoreOptions) -> Result<Self, IndexError> {
        let options = StoreOptions {
            max_open_writers: options.max_open_writers.max(1),
            ..options
        };
        let mut partitions = BTreeMap::new();
        for signal in [Signal::Logs, Signal::Spans] {
            let dir = root.join(signal.dir_name());
            std::fs::create_dir_all(&dir)?;
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let Some((start, part)) = name.to_str().and_then(partition::parse_dir_name) else {
                    continue;
                };
                let key = PartitionKey::new(signal, start, part);
                let partition = Partition::open(
                    key,
                    &entry.path(),
                    options.writer_settings(),
                    options.faults.as_ref(),
                )?;
                partitions.insert(key, Arc::new(partition));
            }
        }
        // A fetch cut short by a crash leaves only a partial copy here.
        let fetching = root.join(FETCH_DIR);
        if fetching.exists() {
            std::fs::remove_dir_all(&fetching)?;
        }
        let checkpoint = read_checkpoint(&root.join(CHECKPOINT_FILE))?;
        tracing::info!(
            partitions = partitions.len(),
            checkpoint,
            "index store opened"
        );
        Ok(Store {
            root: root.to_path_buf(),
            partitions: RwLock::new(partitions),
            remote: RwLock::new(BTreeMap::new()),
            fetcher: RwLock::new(None),
            open_remote: Mutex::new(Vec::new()),
            read_remote: Mutex::new(std::collections::BTreeSet::new()),
            without_filter: Mutex::new(std::collections::HashSet::new()),
            fetch_lock: Mutex::new(()),
            checkpoint: AtomicU64::new(checkpoint),
            options,
            calls: Mutex::new(CallTracker::default()),
            peak_open_writers: AtomicUsize::new(0),
        })
    }

    /// The WAL position from which entries may not be indexed yet.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Acquire)
    }

    /// Indexes the rows of the WAL entry that spans `[lsn_start, lsn_end)`. Rows of an hour
    /// whose partitions already committed past `lsn_start` are skipped: they are in one of
    /// them already.
    /// A writer closed to make room for another is committed through `lsn_end`.
    /// Returns how many rows were added. The rows are encoded as the WAL holds them (packed).
    pub fn index_batch(
        &self,
        lsn_start: u64,
        lsn_end: u64,
        batch: &RowBatch,
    ) -> Result<usize, IndexError> {
        let payload = batch.clone().encode_packed();
        self.index_encoded_batch(lsn_start, lsn_end, batch, &payload)
    }

    /// [`Store::index_batch`] for a batch whose encoding is at hand: the WAL entry, packed
    /// ([`RowBatch::encode_packed`]) or not, and `batch` the rows it decodes to. Each row's
    /// stored part is sliced from `payload` rather than encoded again, its origin taken from
    /// the entry's origins when it names one (a format 1 partition, which stores whole rows,
    /// encodes a packed row again).
    pub fn index_encoded_batch(
        &self,
        lsn_start: u64,
        lsn_end: u64,
        batch: &RowBatch,
        payload: &[u8],
    ) -> Result<usize, IndexError> {
        debug_assert!(lsn_start < lsn_end, "an entry has a length");
        let sources = batch
            .row_encodings(payload)
            .ok_or(IndexError::BatchEncoding)?;
        // Rows first go to their hour, then to its partition; documents are built for the
        // partition's format.
        let mut by_partition: BTreeMap<PartitionKey, PartitionRows> = BTreeMap::new();
        for (i, row) in batch.logs.iter().enumerate() {
            by_partition
                .entry(PartitionKey::hour(
                    Signal::Logs,
                    partition_start(row.time_unix_nano),
                ))
                .or_default()
                .logs
                .push(i);
        }
        for (i, row) in batch.spans.iter().enumerate() {
            by_partition
                .entry(PartitionKey::hour(
                    Signal::Spans,
                    partition_start(row.start_time_unix_nano),
                ))
                .or_default()
                .spans
                .push(i);
        }
        let mut groups = Vec::with_capacity(by_partition.len());
        for (hour, rows) in by_partition {
            let (partition, committed_lsn) = self.part_for_write(hour, lsn_start)?;
            if committed_lsn > lsn_start {
                continue;
            }
            partition.publication.note_rows_from(lsn_start);
            if !rows.spans.is_empty() {
                let mut tracker = self.tracker();
                let mut calls = Vec::new();
                for &i in &rows.spans {
                    tracker.observe(&batch.spans[i], &mut calls);
                }
                partition.record_calls(&calls);
            }
            let format = partition.format;
            let mut docs = Vec::with_capacity(rows.logs.len() + rows.spans.len());
            docs.extend(rows.logs.into_iter().map(|i| {
                log_fields().document(
                    &batch.logs[i],
                    sources.logs[i],
                    &sources.log_origins,
                    format,
                )
            }));
            docs.extend(rows.spans.into_iter().map(|i| {
                span_fields().document(
                    &batch.spans[i],
                    sources.spans[i],
                    &sources.span_origins,
                    format,
                )
            }));
            groups.push((partition, docs));
        }
        // Partitions whose writer is open go first, so that when one more writer is needed,
        // every open writer has taken all of this entry's rows (or has none of them) and may
        // be committed through the entry's end and closed.
        groups.sort_by_key(|(p, _)| !p.has_writer());
        let mut added = 0;
        for i in 0..groups.len() {
            let opens_a_writer = !groups[i].0.has_writer();
            if opens_a_writer {
                let still_needed: Vec<Arc<Partition>> =
                    groups[i..].iter().map(|(p, _)| p.clone()).collect();
                self.make_room_for_writer(&still_needed, lsn_end)?;
            }
            let docs = std::mem::take(&mut groups[i].1);
            added += groups[i].0.add_documents(docs.into_iter())?;
            if opens_a_writer {
                self.peak_open_writers
                    .fetch_max(self.open_writers(), Ordering::Relaxed);
            }
        }
        Ok(added)
    }

    /// Closes writers until one more may open, committing what they hold through `lsn` (the
    /// end of the entry being indexed). Writers of `still_needed` partitions are kept.
    fn make_room_for_writer(
        &self,
        still_needed: &[Arc<Partition>],
        lsn: u64,
    ) -> Result<(), IndexError> {
        let open: Vec<Arc<Partition>> = self
            .all_partitions()
            .into_iter()
            .filter(|p| p.has_writer())
            .collect();
        if open.len() < self.options.max_open_writers {
            return Ok(());
        }
        let mut candidates: Vec<Arc<Partition>> = open
            .into_iter()
            .filter(|p| !still_needed.iter().any(|n| Arc::ptr_eq(n, p)))
            .collect();
        // Idle writers first (nothing to commit), then the oldest partitions.
        candidates.sort_by_key(|p| (p.uncommitted_docs() > 0, p.start_ns));
        let excess = self.open_writers() + 1 - self.options.max_open_writers;
        for partition in candidates.into_iter().take(excess) {
            let committed = partition.commit(lsn)?;
            partition.close_writer();
            tracing::debug!(
                signal = partition.signal.dir_name(),
                start_unix_nano = partition.start_ns,
                committed,
                "partition writer closed to stay within the open-writer limit"
            );
        }
        Ok(())
    }

    /// The most partition writers open at once since the store was opened.
    pub fn peak_open_writers(&self) -> usize {
        self.peak_open_writers.load(Ordering::Relaxed)
    }

    /// Partition writers open now.
    pub fn open_writers(&self) -> usize {
        self.all_partitions()
            .iter()
            .filter(|p| p.has_writer())
            .count()
    }

    /// Discards every uncommitted document and closes every writer: each partition is back at
    /// its last commit. Call it after a failure, then add the rows since [`Store::checkpoint`]
    /// again.
    pub fn rollback(&self) {
        for partition in self.all_partitions() {
            partition.rollback();
        }
        self.tracker().reset();
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, CallTracker> {
        // Only the indexing thread takes it; a panic there is followed by a rollback, which
        // resets the tracker.
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Calls between services whose called span started in `[start, end)`, summed per pair of
    /// services, from the committed calls tables of the span partitions: no stored row is read.
    pub fn calls(&self, start: u64, end: u64) -> Result<Vec<ServiceCall>, IndexError> {
        let mut sums = BTreeMap::new();
        let local = self.all_partitions();
        // A call is kept with the partition of the span that completed its pair and timed by
        // the child's start: the same hour, or a neighbour when a pair straddles an hour's
        // end. Local partitions are all read; remote ones within that margin.
        let mut remote = Vec::new();
        for partition in self.partitions_overlapping(
            Signal::Spans,
            start.saturating_sub(crate::PARTITION_NANOS),
            end.saturating_add(crate::PARTITION_NANOS),
        )? {
            let partition = partition?;
            if !local.iter().any(|l| Arc::ptr_eq(l, &partition)) {
                remote.push(partition);
            }
        }
        for partition in local.iter().cloned().chain(remote) {
            if partition.signal == Signal::Spans {
                partition.sum_calls(start, end, &mut sums);
            }
        }
        Ok(service_calls(sums))
    }

    /// [`Store::calls`] from the span partitions `scope` reads, and the local ones read: every
    /// local one (a call is kept with the span that completed its pair, whenever that came),
    /// and remote ones within an hour of the range, as [`Store::calls`] reads them.
    pub fn calls_in(
        &self,
        start: u64,
        end: u64,
        scope: &Scope,
    ) -> Result<(Vec<ServiceCall>, Vec<PartitionRef>), IndexError> {
        if let Scope::All = scope {
            return Ok((self.calls(start, end)?, Vec::new()));
        }
        // Local partitions are all read, as by `calls`; a search node's splits within the
        // margin.
        let (from, to) = match scope {
            Scope::Except(_) => (
                start.saturating_sub(crate::PARTITION_NANOS),
                end.saturating_add(crate::PARTITION_NANOS),
            ),
            _ => (0, u64::MAX),
        };
        let mut sums = BTreeMap::new();
        let partitions = self.partitions_matching_in(Signal::Spans, from, to, None, scope)?;
        let read = partitions.local_refs();
        for partition in partitions {
            partition?.sum_calls(start, end, &mut sums);
        }
        Ok((service_calls(sums), read))
    }

    /// Every local partition holding rows not yet in a published split, as a scope fixed
    /// now ([`Scope::Only`]), and the list of them: what an ingest node reads and names
    /// when one answer lists partitions several times (per trace, per span kind).
    pub fn unpublished_scope(&self) -> (Scope, Vec<PartitionRef>) {
        let refs: Vec<PartitionRef> = self
            .partitions
            .read()
            .expect("lock poisoned")
            .iter()
            .filter(|(_, p)| !p.publication.is_clean())
            .map(|(key, _)| PartitionRef {
                signal: key.signal,
                start_unix_nano: key.start_ns,
                part: key.part,
            })
            .collect();
        (Scope::Only(refs.iter().cloned().collect()), refs)
    }

    /// The partition the rows of `hour` (part 0 of it) from the entry at `lsn_start` go to,
    /// and the WAL position through which that hour is committed: its newest part, or a
    /// new part once that one is full ([`StoreOptions::seal_docs`]).
    ///
    /// Parts fill one after the other: a full part is committed through `lsn_start` before
    /// the next one takes rows, and never takes rows again. So every row of the hour from
    /// an entry before the greatest position any of its parts committed through is in one
    /// of them, which is what replay skips by.
    fn part_for_write(
        &self,
        hour: PartitionKey,
        lsn_start: u64,
    ) -> Result<(Arc<Partition>, u64), IndexError> {
        let parts = PartitionKey::new(hour.signal, hour.start_ns, 0)
            ..=PartitionKey::new(hour.signal, hour.start_ns, u32::MAX);
        // The newest part: (part, documents, its local copy).
        let mut newest: Option<(u32, u64, Option<Arc<Partition>>)> = None;
        let mut committed_lsn = 0;
        {
            let map = self.partitions.read().expect("lock poisoned");
            let remote = self.remote.read().expect("lock poisoned");
            for (key, p) in map.range(parts.clone()) {
                committed_lsn = committed_lsn.max(p.committed_lsn());
                if newest.as_ref().is_none_or(|(part, _, _)| key.part > *part) {
                    let docs = match self.options.seal_docs {
                        Some(_) => p.num_docs() + p.uncommitted_docs() as u64,
                        None => 0,
                    };
                    newest = Some((key.part, docs, Some(p.clone())));
                }
            }
            for (key, r) in remote.range(parts) {
                committed_lsn = committed_lsn.max(r.committed_lsn);
                if newest.as_ref().is_none_or(|(part, _, _)| key.part > *part) {
                    newest = Some((key.part, r.docs, None));
                }
            }
        }
        let full = |docs: u64| self.options.seal_docs.is_some_and(|max| docs >= max);
        let key = match newest {
            None => hour,
            Some((part, docs, local)) if full(docs) => {
                if let Some(full_part) = local {
                    // Through the entry before this one: the rows of this hour from here on
                    // are the next part's.
                    full_part.commit(lsn_start)?;
                }
                PartitionKey {
                    part: part.saturating_add(1),
                    ..hour
                }
            }
            Some((part, _, _)) => PartitionKey { part, ..hour },
        };
        Ok((self.partition_for_write(key)?, committed_lsn))
    }

    fn partition_for_write(&self, key: PartitionKey) -> Result<Arc<Partition>, IndexError> {
        if let Some(p) = self.partitions.read().expect("lock poisoned").get(&key) {
            return Ok(p.clone());
        }
        // A late row for an hour kept only in object storage: fetch it back and add to it;
        // its next split replaces the published one.
        if let Some(p) = self.fetch_remote(key)? {
            return Ok(p);
        }
        let partition = self.open_partition(key)?;
        self.partitions
            .write()
            .expect("lock poisoned")
            .insert(key, partition.clone());
        Ok(partition)
    }

    /// Commits every partition with pending rows, recording `lsn` (the end of the last WAL entry
    /// indexed) in each, then durably advances the checkpoint to `lsn`.
    pub fn commit(&self, lsn: u64) -> Result<CommitStats, IndexError> {
        let started = Instant::now();
        let mut stats = CommitStats::default();
        for partition in self.all_partitions() {
            let committed = partition.commit(lsn)?;
            if committed > 0 {
                stats.partitions += 1;
                stats.documents += committed;
            }
            partition.close_writer_if_idle(IDLE_WRITER_ROUNDS);
        }
        if lsn > self.checkpoint() {
            write_checkpoint(&self.root, lsn, self.options.faults.as_deref())?;
            self.checkpoint.store(lsn, Ordering::Release);
        }
        if stats.documents > 0 {
            tracing::debug!(
                partitions = stats.partitions,
                documents = stats.documents,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "index committed"
            );
        }
        Ok(stats)
    }

    /// Deletes whole partitions the policy no longer keeps, oldest first.
    /// Call it between commits, from the thread that writes.
    pub fn apply_retention(
        &self,
        policy: &RetentionPolicy,
    ) -> Result<Vec<RemovedPartition>, IndexError> {
        let mut doomed: Vec<Arc<Partition>> = Vec::new();
        let mut survivors: Vec<(Arc<Partition>, u64)> = Vec::new();
        for p in self.all_partitions() {
            if p.end_ns() <= policy.min_time_unix_nano {
                doomed.push(p);
            } else {
                let bytes = p.disk_bytes();
                survivors.push((p, bytes));
            }
        }
        if let Some(max) = policy.max_disk_bytes {
            survivors.sort_by_key(|(p, _)| p.key());
            let mut total: u64 = survivors.iter().map(|(_, b)| b).sum();
            let newest: BTreeMap<Signal, PartitionKey> =
                survivors.iter().fold(BTreeMap::new(), |mut m, (p, _)| {
                    let e = m.entry(p.signal).or_insert(p.key());
                    *e = (*e).max(p.key());
                    m
                });
            for (p, bytes) in &survivors {
                if total <= max {
                    break;
                }
                if newest.get(&p.signal) == Some(&p.key()) {
                    continue;
                }
                total = total.saturating_sub(*bytes);
                doomed.push(p.clone());
            }
        }
        let mut removed = Vec::new();
        let expired_remote: Vec<(PartitionKey, RemoteSplit)> = {
            let mut remote = self.remote.write().expect("lock poisoned");
            let keys: Vec<PartitionKey> = remote
                .keys()
                .filter(|key| {
                    key.start_ns.saturating_add(crate::PARTITION_NANOS) <= policy.min_time_unix_nano
                })
                .copied()
                .collect();
            keys.into_iter()
                .filter_map(|k| remote.remove(&k).map(|r| (k, r)))
                .collect()
        };
        for (key, split) in expired_remote {
            self.forget_open_remote(key);
            if let Some(filter) = &split.filter {
                std::fs::remove_file(filter)?;
            }
            removed.push(RemovedPartition {
                signal: key.signal,
                start_unix_nano: key.start_ns,
                bytes: 0,
                split_id: Some(split.id),
            });
        }
        for p in doomed {
            let bytes = p.disk_bytes();
            self.partitions
                .write()
                .expect("lock poisoned")
                .remove(&p.key());
            // Its writer may be flushing into the directory; stop it first. Searches holding
            // the partition keep their open files; the space comes back when they finish.
            p.close_writer();
            std::fs::remove_dir_all(&p.dir)?;
            tracing::info!(
                signal = p.signal.dir_name(),
                start_unix_nano = p.start_ns,
                bytes,
                "partition deleted by retention"
            );
            removed.push(RemovedPartition {
                signal: p.signal,
                start_unix_nano: p.start_ns,
                bytes,
                split_id: p.publication.split_id(),
            });
        }
        Ok(removed)
    }

    /// Sets where partitions kept only in object storage are fetched from.
    pub fn set_fetcher(&self, fetcher: Arc<dyn SplitFetcher>) {
        *self.fetcher.write().expect("lock poisoned") = Some(fetcher);
    }

    /// Takes in what the metastore has published, once at start. A local partition committed
    /// exactly through its split is clean (nothing to upload); one with rows beyond it will be
    /// sealed again and replace it; a split with no local copy, or with more than the local
    /// copy (a stale disk), is served from object storage.
    pub fn adopt_published(&self, splits: &[PublishedSplit]) -> Result<(), IndexError> {
        for split in splits {
            let key = PartitionKey::new(split.signal, split.start_unix_nano, split.part);
            let local = self
                .partitions
                .read()
                .expect("lock poisoned")
                .get(&key)
                .cloned();
            match local {
                Some(p) if p.committed_lsn() == split.committed_lsn => {
                    p.publication
                        .unpublished_from
                        .store(u64::MAX, Ordering::Release);
                    p.publication.set_split_id(Some(split.id.clone()));
                }
                Some(p) if p.committed_lsn() > split.committed_lsn => {
                    p.publication.set_split_id(Some(split.id.clone()));
                }
                local => {
                    if let Some(p) = local {
                        tracing::warn!(
                            dir = %p.dir.display(),
                            local_lsn = p.committed_lsn(),
                            split_lsn = split.committed_lsn,
                            "local partition is behind its published split; using the split"
                        );
                        self.partitions.write().expect("lock poisoned").remove(&key);
                        p.close_writer();
                        std::fs::remove_dir_all(&p.dir)?;
                    }
                    let remote = self.remote_split(split);
                    self.remote
                        .write()
                        .expect("lock poisoned")
                        .insert(key, remote);
                }
            }
        }
        Ok(())
    }

    /// For a node that only reads (a search node, which has no partitions of its own): makes
    /// the remote partitions exactly `splits`, the published splits of every node. Parts are
    /// numbered anew within each hour, since several nodes publish parts of one hour under
    /// the same numbers. Returns how many splits are new since the last call.
    pub fn follow_published(&self, splits: &[PublishedSplit]) -> usize {
        let mut sorted: Vec<&PublishedSplit> = splits.iter().collect();
        sorted.sort_by(|a, b| {
            (a.signal, a.start_unix_nano, a.part, &a.id).cmp(&(
                b.signal,
                b.start_unix_nano,
                b.part,
                &b.id,
            ))
        });
        let mut remote = self.remote.write().expect("lock poisoned");
        let known: std::collections::HashSet<&str> =
            remote.values().map(|r| r.id.as_str()).collect();
        let added = sorted
            .iter()
            .filter(|s| !known.contains(s.id.as_str()))
            .count();
        let mut followed = BTreeMap::new();
        let mut key: Option<PartitionKey> = None;
        for split in sorted {
            let next = match key {
                Some(k) if k.signal == split.signal && k.start_ns == split.start_unix_nano => {
                    PartitionKey {
                        part: k.part.saturating_add(1),
                        ..k
                    }
                }
                _ => PartitionKey::hour(split.signal, split.start_unix_nano),
            };
            key = Some(next);
            followed.insert(next, self.remote_split(split));
        }
        // The filters of splits no longer listed (deleted by their node) go too.
        let listed: std::collections::HashSet<&str> =
            followed.values().map(|r| r.id.as_str()).collect();
        for gone in remote.values().filter(|r| !listed.contains(r.id.as_str())) {
            if let Some(filter) = &gone.filter {
                let _ = std::fs::remove_file(filter);
            }
        }
        drop(listed);
        *remote = followed;
        added
    }

    /// Brings to the local disk the trace filters of remote partitions that have none kept
    /// (a search node's, whose splits other nodes published), at most `max` of them: one
    /// read of each split's end and one of its filter. Without it, a trace lookup opens
    /// every such split. Returns how many were brought; a split that cannot be read now is
    /// tried again on the next call.
    pub fn fetch_missing_filters(&self, max: usize) -> Result<usize, IndexError> {
        let missing: Vec<(PartitionKey, String)> = {
            let without = self
                .without_filter
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.remote
                .read()
                .expect("lock poisoned")
                .iter()
                .filter(|(_, r)| r.filter.is_none() && !without.contains(&r.id))
                .map(|(k, r)| (*k, r.id.clone()))
                .take(max)
                .collect()
        };
        let mut fetched = 0;
        for (key, id) in missing {
            let directory = SplitDirectory::open(self.fetcher_for(&id)?, &id)?;
            let Some(bytes) = directory.read_file(crate::trace_filter::FILE_NAME)? else {
                self.without_filter
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id);
                continue;
            };
            let path = self.filter_path(&id);
            std::fs::create_dir_all(self.root.join(FILTER_DIR))?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)?;
            if let Some(remote) = self.remote.write().expect("lock poisoned").get_mut(&key)
                && remote.id == id
            {
                remote.filter = Some(path);
            }
            fetched += 1;
        }
        Ok(fetched)
    }

    /// A published split kept only in object storage, with its trace filter if one is kept.
    fn remote_split(&self, split: &PublishedSplit) -> RemoteSplit {
        let filter = self.filter_path(&split.id);
        RemoteSplit {
            id: split.id.clone(),
            origin: split.node.as_ref().map(|node| SplitOrigin {
                node: node.clone(),
                partition: PartitionRef {
                    signal: split.signal,
                    start_unix_nano: split.start_unix_nano,
                    part: split.part,
                },
            }),
            committed_lsn: split.committed_lsn,
            docs: split.docs,
            filter: filter.exists().then_some(filter),
            services: split.services.clone(),
        }
    }

    /// Seals the partitions that hold rows not yet in object storage and are either full
    /// ([`StoreOptions::seal_docs`]: no row goes to them any more) or of an hour that ended
    /// before `sealed_before` (a wall-clock time) with no rows received after it: closes
    /// their writer and links their files into a directory under `staging`, one per
    /// partition. Call it right after a commit, from the thread that writes. Until
    /// [`Store::mark_published`], the WAL is kept from their first new row on.
    pub fn seal(
        &self,
        sealed_before: u64,
        staging: &Path,
    ) -> Result<Vec<SealedSnapshot>, IndexError> {
        let mut sealed = Vec::new();
        for p in self.all_partitions() {
            let publication = &p.publication;
            let unpublished_from = publication.unpublished_from.load(Ordering::Acquire);
            // Its hour must be over and it must have had no rows for the grace period: a
            // trickle of late rows is sealed once it stops, not once a second.
            let last_write = publication.last_write_unix_nano.load(Ordering::Acquire);
            let full = self
                .options
                .seal_docs
                .is_some_and(|max| p.num_docs() >= max);
            if (!full && (p.end_ns() > sealed_before || last_write > sealed_before))
                || unpublished_from == u64::MAX
                || publication.in_flight_from.load(Ordering::Acquire) != u64::MAX
                || p.uncommitted_docs() > 0
            {
                continue;
            }
            // Merges finish and the directory stops changing before it is linked.
            p.close_writer();
            let committed_lsn = p.committed_lsn();
            let docs = p.num_docs();
            if docs == 0 {
                publication
                    .unpublished_from
                    .store(u64::MAX, Ordering::Release);
                continue;
            }
            crate::trace_filter::write(
                &p.searcher(),
                p.signal,
                p.format,
                &p.dir.join(crate::trace_filter::FILE_NAME),
            )?;
            let name = format!(
                "{}-{}-{committed_lsn}",
                p.signal.dir_name(),
                partition::dir_name(p.start_ns, p.part)
            );
            let dir = crate::split::link_snapshot(&p.dir, &staging.join(name))?;
            publication
                .in_flight_from
                .store(unpublished_from, Ordering::Release);
            publication
                .unpublished_from
                .store(u64::MAX, Ordering::Release);
            sealed.push(SealedSnapshot {
                signal: p.signal,
                start_unix_nano: p.start_ns,
                part: p.part,
                committed_lsn,
                docs,
                dir,
                replaces: publication.split_id(),
                services: p.services()?,
            });
        }
        Ok(sealed)
    }

    /// Takes the trace filter of a packed snapshot (written again by [`crate::split::pack`]
    /// for the segments the split has) as the partition's own, so that once the partition is
    /// evicted, its filter names the split's segments. Call it before
    /// [`Store::mark_published`], while the snapshot is there; without it, a lookup in the
    /// split reads every segment of it.
    pub fn keep_split_filter(&self, snapshot: &SealedSnapshot) -> Result<(), IndexError> {
        let source = snapshot.dir.join(crate::trace_filter::FILE_NAME);
        let dir = {
            let map = self.partitions.read().expect("lock poisoned");
            match map.get(&snapshot.key()) {
                Some(p) => p.dir.clone(),
                None => return Ok(()),
            }
        };
        if !source.exists() {
            return Ok(());
        }
        let dest = dir.join(crate::trace_filter::FILE_NAME);
        let tmp = dir.join(format!("{}.tmp", crate::trace_filter::FILE_NAME));
        std::fs::copy(&source, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        Ok(())
    }

    /// Records that `snapshot` of a partition is published as split `id`: the WAL behind it
    /// may go, and the local copy may be evicted.
    pub fn mark_published(&self, snapshot: &SealedSnapshot, id: &str) {
        let map = self.partitions.read().expect("lock poisoned");
        if let Some(p) = map.get(&snapshot.key()) {
            p.publication.set_split_id(Some(id.to_string()));
            p.publication
                .in_flight_from
                .store(u64::MAX, Ordering::Release);
        }
    }

    /// The WAL position before which no entry is needed any more: the checkpoint, or, with
    /// object storage, the first row of any partition not yet published.
    pub fn wal_floor(&self) -> u64 {
        let checkpoint = self.checkpoint();
        if !self.options.object_storage {
            return checkpoint;
        }
        self.all_partitions()
            .iter()
            .map(|p| p.publication.floor())
            .fold(checkpoint, u64::min)
    }

    /// Deletes the local copies of published partitions, oldest first, until the partitions on
    /// disk take at most `max_local_bytes`. Their splits serve them from then on. Call it
    /// from the thread that writes.
    pub fn evict(&self, max_local_bytes: u64) -> Result<Evicted, IndexError> {
        let all = self.all_partitions();
        let mut total: u64 = all.iter().map(|p| p.disk_bytes()).sum();
        let mut candidates: Vec<Arc<Partition>> = all
            .into_iter()
            .filter(|p| p.publication.is_clean() && !p.has_writer())
            .collect();
        candidates.sort_by_key(|p| p.key());
        let mut evicted = Evicted::default();
        for p in candidates {
            if total <= max_local_bytes {
                break;
            }
            let Some(id) = p.publication.split_id() else {
                continue;
            };
            let key = p.key();
            let bytes = p.disk_bytes();
            // The trace filter and the services outlive the local copy.
            let filter = self.keep_filter(&p.dir, &id)?;
            let services = Some(p.services()?);
            {
                let mut map = self.partitions.write().expect("lock poisoned");
                // A late row may have opened its writer since the candidates were listed.
                if p.has_writer() || !p.publication.is_clean() {
                    continue;
                }
                map.remove(&key);
                self.remote.write().expect("lock poisoned").insert(
                    key,
                    RemoteSplit {
                        id,
                        origin: None,
                        committed_lsn: p.committed_lsn(),
                        docs: p.num_docs(),
                        filter,
                        services,
                    },
                );
            }
            // Searches holding the partition keep their open files until they finish.
            std::fs::remove_dir_all(&p.dir)?;
            total = total.saturating_sub(bytes);
            evicted.partitions += 1;
            evicted.bytes += bytes;
        }
        Ok(evicted)
    }

    fn filter_path(&self, split_id: &str) -> PathBuf {
        self.root
            .join(FILTER_DIR)
            .join(format!("{split_id}.filter"))
    }

    /// Links the trace filter of the partition in `dir` to where remote partitions keep
    /// theirs; `None` when the partition has none (sealed by a weft without filters).
    fn keep_filter(&self, dir: &Path, split_id: &str) -> Result<Option<PathBuf>, IndexError> {
        let source = dir.join(crate::trace_filter::FILE_NAME);
        if !source.exists() {
            return Ok(None);
        }
        let kept = self.filter_path(split_id);
        std::fs::create_dir_all(self.root.join(FILTER_DIR))?;
        if kept.exists() {
            std::fs::remove_file(&kept)?;
        }
        std::fs::hard_link(&source, &kept)?;
        Ok(Some(kept))
    }

    fn partition_dir(&self, key: PartitionKey) -> PathBuf {
        self.root
            .join(key.signal.dir_name())
            .join(partition::dir_name(key.start_ns, key.part))
    }

    /// Opens (or creates) the partition of `key` in its directory.
    fn open_partition(&self, key: PartitionKey) -> Result<Arc<Partition>, IndexError> {
        Ok(Arc::new(Partition::open(
            key,
            &self.partition_dir(key),
            self.options.writer_settings(),
            self.options.faults.as_ref(),
        )?))
    }

    /// Partitions kept only in object storage.
    pub fn remote_count(&self) -> usize {
        self.remote.read().expect("lock poisoned").len()
    }

    /// The partition of `key`: local, or brought back from object storage and opened.
    /// `None` when it is neither.
    fn fetch_remote(&self, key: PartitionKey) -> Result<Option<Arc<Partition>>, IndexError> {
        {
            let map = self.partitions.read().expect("lock poisoned");
            if let Some(p) = map.get(&key) {
                return Ok(Some(p.clone()));
            }
            if !self
                .remote
                .read()
                .expect("lock poisoned")
                .contains_key(&key)
            {
                return Ok(None);
            }
        }
        let _one_at_a_time = self.fetch_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = self.partitions.read().expect("lock poisoned").get(&key) {
            return Ok(Some(p.clone()));
        }
        let Some(remote) = self
            .remote
            .read()
            .expect("lock poisoned")
            .get(&key)
            .cloned()
        else {
            return Ok(None);
        };
        let signal = key.signal;
        let fetcher = self.fetcher_for(&remote.id)?;
        let staging = self.root.join(FETCH_DIR);
        std::fs::create_dir_all(&staging)?;
        let file = staging.join(format!("{}.split", remote.id));
        let unpacked = staging.join(&remote.id);
        if unpacked.exists() {
            std::fs::remove_dir_all(&unpacked)?;
        }
        fetcher
            .fetch(&remote.id, &file)
            .map_err(|reason| unreadable(key, reason))?;
        let unpacked_result = crate::split::unpack(&file, &unpacked);
        let _ = std::fs::remove_file(&file);
        unpacked_result?;
        let dir = self.partition_dir(key);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(&unpacked, &dir)?;
        std::fs::File::open(self.root.join(signal.dir_name()))?.sync_all()?;
        let partition = self.open_partition(key)?;
        partition
            .publication
            .unpublished_from
            .store(u64::MAX, Ordering::Release);
        partition.publication.set_split_id(Some(remote.id.clone()));
        {
            // Moved under the partitions lock, as eviction moves the other way. The kept
            // filter goes first: once the partition is in the map, eviction may link a new
            // one under the same name, which must not then be deleted here.
            let mut map = self.partitions.write().expect("lock poisoned");
            if let Some(filter) = &remote.filter {
                let _ = std::fs::remove_file(filter);
            }
            map.insert(key, partition.clone());
            self.remote.write().expect("lock poisoned").remove(&key);
        }
        self.forget_open_remote(key);
        tracing::info!(split = %remote.id, "partition fetched from object storage");
        Ok(Some(partition))
    }

    /// The partition of `key` for a query: local, or read in place from its split. `None`
    /// when it is neither.
    fn partition_to_read(&self, key: PartitionKey) -> Result<Option<Arc<Partition>>, IndexError> {
        let remote = {
            let map = self.partitions.read().expect("lock poisoned");
            if let Some(p) = map.get(&key) {
                return Ok(Some(p.clone()));
            }
            let remote = self.remote.read().expect("lock poisoned");
            match remote.get(&key) {
                Some(r) => r.clone(),
                None => return Ok(None),
            }
        };
        {
            let mut open = self.open_remote.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = open
                .iter()
                .position(|o| o.key == key && o.split_id == remote.id)
            {
                let entry = open.remove(i);
                let partition = entry.partition.clone();
                open.push(entry);
                self.note_remote_read(key);
                return Ok(Some(partition));
            }
        }
        let fetcher = self.fetcher_for(&remote.id)?;
        let opened = SplitDirectory::open(fetcher, &remote.id).and_then(|directory| {
            let partition =
                Partition::open_remote(key, &self.partition_dir(key), directory.clone())?;
            Ok((Arc::new(partition), directory))
        });
        let (partition, directory) = match opened {
            Ok(opened) => opened,
            Err(IndexError::Remote(reason)) => return Err(unreadable(key, reason)),
            Err(other) => return Err(other),
        };
        let mut open = self.open_remote.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|o| o.key != key);
        open.push(OpenRemote {
            key,
            split_id: remote.id,
            partition: partition.clone(),
            directory,
        });
        let mut held: u64 = open.iter().map(|o| o.directory.memory_bytes()).sum();
        while open.len() > 1 && (open.len() > OPEN_REMOTE_MAX || held > OPEN_REMOTE_BYTES) {
            held = held.saturating_sub(open.remove(0).directory.memory_bytes());
        }
        drop(open);
        self.note_remote_read(key);
        Ok(Some(partition))
    }

    /// What reads splits, or why there is nothing to.
    fn fetcher_for(&self, split_id: &str) -> Result<Arc<dyn SplitFetcher>, IndexError> {
        self.fetcher
            .read()
            .expect("lock poisoned")
            .clone()
            .ok_or_else(|| {
                IndexError::Remote(format!(
                    "split {split_id} is in object storage, which is not configured"
                ))
            })
    }

    fn note_remote_read(&self, key: PartitionKey) {
        self.read_remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
    }

    /// Downloads whole, into the local cache, the remote partitions that queries read since
    /// the last call, newest first, as long as the local partitions stay within
    /// `max_local_bytes`: an hour asked about once is likely asked about again, and a local
    /// copy answers as fast as data never evicted. Call it from a thread of its own (a
    /// download takes as long as the split is large), never the writing thread. Returns how
    /// many were brought back.
    pub fn fill_cache(&self, max_local_bytes: u64) -> Result<usize, IndexError> {
        let wanted =
            std::mem::take(&mut *self.read_remote.lock().unwrap_or_else(|p| p.into_inner()));
        let mut local = self.disk_bytes();
        let mut filled = 0;
        for key in wanted.into_iter().rev() {
            let size = {
                let open = self.open_remote.lock().unwrap_or_else(|p| p.into_inner());
                match open.iter().find(|o| o.key == key) {
                    Some(o) => o.directory.split_bytes(),
                    None => continue,
                }
            };
            if local.saturating_add(size) > max_local_bytes {
                continue;
            }
            if self.fetch_remote(key)?.is_some() {
                local = local.saturating_add(size);
                filled += 1;
            }
        }
        Ok(filled)
    }

    /// Drops the open remote copy of `key`: it became local, or its split was deleted.
    fn forget_open_remote(&self, key: PartitionKey) {
        self.open_remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|o| o.key != key);
    }

    /// Bytes all partitions use on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.all_partitions().iter().map(|p| p.disk_bytes()).sum()
    }

    /// Number of partitions of a signal.
    pub fn partition_count(&self, signal: Signal) -> usize {
        self.partitions
            .read()
            .expect("lock poisoned")
            .keys()
            .filter(|key| key.signal == signal)
            .count()
    }

    /// The format of each partition, oldest first (logs, then spans).
    pub fn partition_formats(&self) -> Vec<crate::Format> {
        self.all_partitions().iter().map(|p| p.format).collect()
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Every partition of `signal` that may hold `trace_id`, newest first: all local ones, and
    /// those kept only in object storage whose trace filter (or lack of one) does not rule
    /// the trace out.
    pub(crate) fn partitions_for_trace(
        &self,
        signal: Signal,
        trace_id: &[u8],
        scope: &Scope,
    ) -> Result<Partitions<'_>, IndexError> {
        let all = PartitionKey::new(signal, 0, 0)..=PartitionKey::new(signal, u64::MAX, u32::MAX);
        self.partitions_in(all, scope, |remote| {
            remote
                .filter
                .as_deref()
                .is_none_or(|f| crate::trace_filter::may_contain(f, trace_id))
        })
    }

    /// The segments of `partition` (whose searcher is `searcher`) that may hold `trace_id`, by
    /// its trace filter: only a partition read in place from object storage is worth
    /// narrowing down (a local one is read from the disk, and a fetched one is searched
    /// whole). A filter naming segments the index does not have is of another version of the
    /// partition (one not packed yet): all of them, then.
    pub(crate) fn trace_segments(
        &self,
        partition: &Partition,
        searcher: &tantivy::Searcher,
        trace_id: &[u8],
    ) -> crate::trace_filter::TraceSegments {
        use crate::trace_filter::TraceSegments;
        if !partition.is_read_in_place() {
            return TraceSegments::All;
        }
        let filter = self
            .remote
            .read()
            .expect("lock poisoned")
            .get(&partition.key())
            .and_then(|remote| remote.filter.clone());
        let have = |id: &String| {
            searcher
                .segment_readers()
                .iter()
                .any(|s| s.segment_id().uuid_string() == *id)
        };
        match filter.map(|path| crate::trace_filter::segments_holding(&path, trace_id)) {
            Some(TraceSegments::Some(named)) if !named.iter().all(have) => TraceSegments::All,
            Some(found) => found,
            None => TraceSegments::All,
        }
    }

    /// Partitions of `signal` overlapping `[start, end)`, newest first. Partitions kept only
    /// in object storage are opened as the caller reaches them; when that fails, so does
    /// the query, with [`IndexError::Remote`].
    pub(crate) fn partitions_overlapping(
        &self,
        signal: Signal,
        start: u64,
        end: u64,
    ) -> Result<Partitions<'_>, IndexError> {
        self.partitions_matching(signal, start, end, None)
    }

    /// [`Store::partitions_overlapping`] without the remote partitions `query` cannot match
    /// because it asks for services they have no rows of.
    pub(crate) fn partitions_matching(
        &self,
        signal: Signal,
        start: u64,
        end: u64,
        query: Option<&crate::query::Expr>,
    ) -> Result<Partitions<'_>, IndexError> {
        self.partitions_matching_in(signal, start, end, query, &Scope::All)
    }

    /// [`Store::partitions_matching`] among the partitions `scope` reads.
    pub(crate) fn partitions_matching_in(
        &self,
        signal: Signal,
        start: u64,
        end: u64,
        query: Option<&crate::query::Expr>,
        scope: &Scope,
    ) -> Result<Partitions<'_>, IndexError> {
        if end == 0 {
            return Ok(Partitions::empty(self));
        }
        let hours = PartitionKey::new(signal, partition_start(start), 0)
            ..=PartitionKey::new(signal, end - 1, u32::MAX);
        self.partitions_in(hours, scope, |remote| match (query, &remote.services) {
            (Some(query), Some(services)) => crate::query::may_match_services(query, services),
            _ => true,
        })
    }

    /// The partitions with keys in `keys` that `scope` reads, newest first: the local ones,
    /// and the remote ones `wanted` keeps, opened as the caller reaches them. Both maps are read under the
    /// partitions lock (which eviction and fetching hold while moving a key between them),
    /// so no partition is missed while it moves; the list holds each local partition it
    /// names, even one evicted meanwhile.
    fn partitions_in(
        &self,
        keys: std::ops::RangeInclusive<PartitionKey>,
        scope: &Scope,
        wanted: impl Fn(&RemoteSplit) -> bool,
    ) -> Result<Partitions<'_>, IndexError> {
        let in_scope = |remote: &RemoteSplit| match scope {
            Scope::All => true,
            Scope::Unpublished | Scope::Only(_) => false,
            Scope::Except(answered) => remote.origin.as_ref().is_none_or(|o| !answered.contains(o)),
        };
        let local_in_scope = |key: &PartitionKey, p: &Partition| match scope {
            Scope::All | Scope::Except(_) => true,
            Scope::Unpublished => !p.publication.is_clean(),
            Scope::Only(refs) => refs.contains(&PartitionRef {
                signal: key.signal,
                start_unix_nano: key.start_ns,
                part: key.part,
            }),
        };
        if keys.start() > keys.end() {
            return Ok(Partitions::empty(self));
        }
        let mut listed: Vec<(PartitionKey, Option<Arc<Partition>>)> = {
            let map = self.partitions.read().expect("lock poisoned");
            let remote = self.remote.read().expect("lock poisoned");
            map.range(keys.clone())
                .filter(|(k, p)| local_in_scope(k, p))
                .map(|(k, p)| (*k, Some(p.clone())))
                .chain(
                    remote
                        .range(keys)
                        .filter(|(k, r)| !map.contains_key(k) && in_scope(r) && wanted(r))
                        .map(|(k, _)| (*k, None)),
                )
                .collect()
        };
        listed.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
        Ok(Partitions {
            store: self,
            listed: listed.into_iter(),
        })
    }
}

/// Partitions a query walks, newest first: local ones held, remote ones opened (read in
/// place) only when reached, so that a query that stops early opens no more than it reads.
pub(crate) struct Partitions<'a> {
    store: &'a Store,
    listed: std::vec::IntoIter<(PartitionKey, Option<Arc<Partition>>)>,
}

/// How many remote partitions one query opens and reads at once. Each waits on object
/// storage most of the time, so a lookup that needs several remote hours takes about as long
/// as the slowest of them, not their sum.
const REMOTE_READERS: usize = 8;

/// What reading the listed partition at an index gave: `None` when it was gone by then.
type ReadOutcome<T> = (usize, Result<Option<T>, IndexError>);

impl<'a> Partitions<'a> {
    fn empty(store: &'a Store) -> Self {
        Partitions {
            store,
            listed: Vec::new().into_iter(),
        }
    }

    /// The local partitions listed, as other nodes name them.
    pub(crate) fn local_refs(&self) -> Vec<PartitionRef> {
        self.listed
            .as_slice()
            .iter()
            .filter(|(_, local)| local.is_some())
            .map(|(key, _)| PartitionRef {
                signal: key.signal,
                start_unix_nano: key.start_ns,
                part: key.part,
            })
            .collect()
    }

    /// Whether the next partition listed has a copy on the local disk (opening it reads
    /// nothing from object storage).
    pub(crate) fn next_is_local(&self) -> bool {
        self.listed
            .as_slice()
            .first()
            .is_some_and(|(_, local)| local.is_some())
    }

    /// The hour of the next partition listed.
    pub(crate) fn next_hour(&self) -> Option<u64> {
        self.listed.as_slice().first().map(|(key, _)| key.start_ns)
    }

    /// Both lists, this one first.
    pub(crate) fn chain(self, other: Partitions<'a>) -> Partitions<'a> {
        let listed: Vec<_> = self.listed.chain(other.listed).collect();
        Partitions {
            store: self.store,
            listed: listed.into_iter(),
        }
    }

    /// `read` applied to every partition listed, in list order. Local partitions are read on
    /// the calling thread; remote ones are opened and read on up to [`REMOTE_READERS`]
    /// threads at once. For queries that read every partition they list (a trace lookup),
    /// not for those that stop early.
    pub(crate) fn read_all<T: Send>(
        self,
        read: impl Fn(&Partition) -> Result<T, IndexError> + Sync,
    ) -> Result<Vec<T>, IndexError> {
        let store = self.store;
        let listed: Vec<_> = self.listed.collect();
        let mut results: Vec<Option<T>> = Vec::with_capacity(listed.len());
        let mut remote = Vec::new();
        for (i, (key, local)) in listed.into_iter().enumerate() {
            results.push(None);
            match local {
                Some(partition) => results[i] = Some(read(&partition)?),
                None => remote.push((i, key)),
            }
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done: Mutex<Vec<ReadOutcome<T>>> = Mutex::new(Vec::new());
        let work = || {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, key)) = remote.get(n) else {
                    return;
                };
                let result = store
                    .partition_to_read(key)
                    .and_then(|p| p.map(|p| read(&p)).transpose());
                let failed = result.is_err();
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, result));
                if failed {
                    // The query fails anyway: leave the rest unread.
                    next.store(remote.len(), Ordering::Relaxed);
                }
            }
        };
        match remote.len() {
            0 => {}
            1 => work(),
            n => std::thread::scope(|scope| {
                for _ in 0..n.min(REMOTE_READERS) {
                    scope.spawn(work);
                }
            }),
        }
        for (i, result) in done.into_inner().unwrap_or_else(|p| p.into_inner()) {
            results[i] = result?;
        }
        Ok(results.into_iter().flatten().collect())
    }
}

impl Iterator for Partitions<'_> {
    type Item = Result<Arc<Partition>, IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, local) = self.listed.next()?;
            if let Some(p) = local {
                return Some(Ok(p));
            }
            // `None`: retention removed it since it was listed; it holds nothing to find.
            match self.store.partition_to_read(key) {
                Ok(Some(p)) => return Some(Ok(p)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The answer to a query that needs the remote partition `key` while object storage fails.
fn unreadable(key: PartitionKey, reason: String) -> IndexError {
    IndexError::Remote(format!(
        "data of {} from {} is in object storage, which cannot be read now: {reason}",
        key.signal.dir_name(),
        partition::dir_name(key.start_ns, key.part)
    ))
}

fn read_checkpoint(path: &Path) -> Result<u64, IndexError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            IndexError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a WAL position", path.display()),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the checkpoint atomically: write a temporary file, fsync, rename, fsync the dir.
fn write_checkpoint(root: &Path, lsn: u64, faults: Option<&Faults>) -> Result<(), IndexError> {
    let tmp = root.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    let text = lsn.to_string();
    match faults {
        Some(faults) => faults.write_all(&mut file, text.as_bytes())?,
        None => file.write_all(text.as_bytes())?,
    }
    file.sync_all()?;
    std::fs::rename(&tmp, root.join(CHECKPOINT_FILE))?;
    std::fs::File::open(root)?.sync_all()?;
    Ok(())
}

/// Summed call statistics as a list of calls, by calling then called service.
fn service_calls(sums: BTreeMap<(String, String), crate::calls::CallStats>) -> Vec<ServiceCall> {
    sums.into_iter()
        .map(|((parent, child), stats)| ServiceCall {
            parent,
            child,
            stats,
        })
        .collect()
}
