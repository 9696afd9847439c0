//! All partitions of both signals under one data directory: [`Store`], and what it does by
//! job, one file each.
//!
//! - this file: the store itself, its options, opening it, and what it holds (sizes, counts).
//! - `write`: adding rows and committing. Writing is done by one thread (weft's indexer):
//!   [`Store::index_batch`] routes rows to the partition of their hour, [`Store::commit`]
//!   commits every partition with pending rows and then advances the checkpoint, the WAL
//!   position from which replay must start after a restart. Each open writer has threads and an
//!   arena of its own, and client timestamps choose the partition, so at most
//!   [`StoreOptions::max_open_writers`] writers are open at once: a batch that needs one more
//!   first commits and closes one it no longer needs. After any failure, [`Store::rollback`]
//!   brings every partition back to its last commit; the caller then adds the rows since the
//!   checkpoint again from its log, and the per-partition skip keeps each row once.
//! - `retention`: deleting whole partitions by age and by the disk cap.
//! - `splits`: the life of a partition in object storage: sealed, published, evicted locally,
//!   read in place or fetched back, followed from other nodes.
//! - `read`: which partitions a read opens ([`Scope`]: all, those not yet published, all but
//!   those another node answered for), newest first, local or remote.
//! - `calls`: calls between services, paired as spans are indexed and summed per partition.
//!
//! Searches may run from any thread while the indexer writes. The searches themselves live
//! with their algorithms: `crate::search` (logs), `crate::traces`, `crate::aggregate` and
//! `crate::peel` each add their `impl Store` block of questions.

mod calls;
mod read;
mod retention;
mod splits;
mod write;

pub use crate::split::directory::SplitFetcher;
pub use read::{PartitionRef, Scope, SplitOrigin};
pub use retention::{RemovedPartition, RetentionPolicy};
pub use splits::{Evicted, PublishedSplit, SealedSnapshot};
pub use write::CommitStats;
// The jobs' private items, for one another (each file takes them with `use super::*`).
#[allow(unused_imports)]
use {calls::*, read::*, retention::*, splits::*, write::*};

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
use crate::split::directory::SplitDirectory;
use crate::{RowBatch, Signal, log_fields, span_fields};

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
    /// Each service's clock offset, estimated from the calls and logs indexed.
    clock: Mutex<crate::clock::ClockEstimator>,
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
            clock: Mutex::new(crate::clock::ClockEstimator::default()),
            peak_open_writers: AtomicUsize::new(0),
        })
    }

    /// The WAL position from which entries may not be indexed yet.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Acquire)
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
}
