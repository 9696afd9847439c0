//! The indexer thread: adds each durable WAL entry to its partitions, commits every
//! `commit_interval` (moving the checkpoint over exactly what was committed), and between
//! commits runs what removes data from the index (`super::retention`).
//!
//! Recovery is one mechanism for every failure, at start-up and later alike: roll every
//! partition back to its last commit, add every WAL entry from the checkpoint through the last
//! entry taken again (partitions skip what they already hold), and commit. While that fails the
//! indexer retries with backoff and [`Condition::IndexFailing`] refuses new data; when it
//! succeeds the condition clears. A panic in the index code is caught and treated the same way.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use weft_index::RowBatch;
use weft_index::faults::Fault;
use weft_index::model::PackedBatchError;

use super::health::{Condition, DeathWatch};
use super::wal::{WalError, read_range};

/// Why indexing failed, in words: for weft's log, `/readyz` and the retry loop.
#[derive(Clone, Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<WalError> for Failure {
    fn from(e: WalError) -> Self {
        Failure(e.to_string())
    }
}

impl From<weft_index::IndexError> for Failure {
    fn from(e: weft_index::IndexError) -> Self {
        Failure(e.to_string())
    }
}
use super::{IndexJob, Shared};
use crate::clock::now_unix_nano;

/// First wait before retrying after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// While catching up, commit after this many WAL bytes, so a long replay makes progress that
/// a second failure does not undo.
const CATCH_UP_COMMIT_BYTES: u64 = 64 << 20;
/// While free space is low, retention runs this often (it may free space).
const LOW_DISK_RETENTION_EVERY: Duration = Duration::from_secs(5);

struct Indexer {
    shared: Arc<Shared>,
    /// End of the last WAL entry taken into the index (committed or not).
    taken_through: u64,
    /// When the oldest uncommitted row was added.
    first_pending: Option<Instant>,
    next_retention: Instant,
    /// When partitions are next checked for sealing and eviction (with object storage).
    next_seal: Instant,
}

/// How often the indexer looks for partitions to seal and copies to evict.
const SEAL_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs the indexer. It first catches up from the checkpoint through `recover_through` (the
/// WAL's end when it was opened) and reports the first attempt's outcome on `caught_up`.
pub(super) fn run(
    shared: Arc<Shared>,
    rx: Receiver<IndexJob>,
    recover_through: u64,
    caught_up: std_mpsc::Sender<Result<(), String>>,
) {
    let health = shared.health.clone();
    let _watch = DeathWatch::new(&health, Condition::IndexerDead, "indexer");
    let mut indexer = Indexer {
        taken_through: recover_through.max(shared.store.checkpoint()),
        first_pending: None,
        next_retention: Instant::now(),
        next_seal: Instant::now(),
        shared,
    };
    let started = Instant::now();
    let first = indexer.attempt(|i| i.catch_up());
    let _ = caught_up.send(first.clone().map_err(|f| f.0));
    match first {
        Ok(()) => tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            checkpoint = indexer.shared.store.checkpoint(),
            "write-ahead log replayed"
        ),
        Err(reason) => indexer.recover(reason),
    }
    indexer.serve(rx);
    tracing::debug!("indexer thread stopped");
}

impl Indexer {
    fn serve(&mut self, rx: Receiver<IndexJob>) {
        let config = self.shared.config.clone();
        loop {
            let timeout = match self.first_pending {
                Some(since) => {
                    (since + config.commit_interval).saturating_duration_since(Instant::now())
                }
                None => config.retention_interval.min(Duration::from_secs(1)),
            };
            let disconnected = match rx.recv_timeout(timeout) {
                Ok(job) => {
                    self.take(job);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let commit_due = self
                .first_pending
                .is_some_and(|since| since.elapsed() >= config.commit_interval);
            if disconnected && self.shared.abandon.load(Ordering::SeqCst) {
                return;
            }
            if (commit_due || (disconnected && self.first_pending.is_some()))
                && let Err(reason) = self.attempt(|i| i.commit())
            {
                if disconnected {
                    tracing::error!(%reason, "final commit failed; the WAL replays it at the next start");
                    return;
                }
                self.recover(reason);
            }
            if self.first_pending.is_none() && Instant::now() >= self.next_seal {
                super::retention::seal_and_evict(&self.shared);
                self.next_seal = Instant::now() + SEAL_CHECK_EVERY;
            }
            let disk_low = self.shared.health.is_set(Condition::DiskLow);
            if Instant::now() >= self.next_retention {
                super::retention::apply_retention(&self.shared);
                self.next_retention = Instant::now()
                    + if disk_low {
                        LOW_DISK_RETENTION_EVERY.min(config.retention_interval)
                    } else {
                        config.retention_interval
                    };
            } else if disk_low {
                self.next_retention = self
                    .next_retention
                    .min(Instant::now() + LOW_DISK_RETENTION_EVERY);
            }
            if disconnected {
                return;
            }
        }
    }

    /// Runs `work` with the busy mark set (for stall detection), turning a panic into an error.
    fn attempt(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        self.shared.health.indexer_busy(Some(now_unix_nano()));
        let result = catch_unwind(AssertUnwindSafe(|| work(self))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Err(Failure(format!("indexing panicked: {what}")))
        });
        self.shared.health.indexer_busy(None);
        result
    }

    /// Adds one durable entry; on failure, recovers before taking the next.
    fn take(&mut self, job: IndexJob) {
        self.taken_through = job.lsn_end;
        let result = self.attempt(|i| i.add(&job));
        // The reservation goes back once the rows are in the index (or in the WAL only).
        drop(job);
        if let Err(reason) = result {
            self.recover(reason);
        }
    }

    fn add(&mut self, job: &IndexJob) -> Result<(), Failure> {
        let faults = self.shared.config.faults.as_ref();
        if faults.is_some_and(|f| f.take(Fault::IndexerPanic)) {
            panic!("injected indexer panic");
        }
        // A stalled indexer ignores everything, shutdown included, as one stuck in a
        // filesystem call would.
        while faults.is_some_and(|f| f.is_on(Fault::IndexerStall)) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let rows = self.shared.store.index_encoded_batch(
            job.lsn_start,
            job.lsn_end,
            &job.batch,
            &job.payload,
        )?;
        let metrics = &self.shared.metrics;
        metrics
            .rows_indexed
            .fetch_add(rows as u64, Ordering::Relaxed);
        metrics.open_writers_peak.store(
            self.shared.store.peak_open_writers() as u64,
            Ordering::Relaxed,
        );
        self.first_pending.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Commits everything taken, moving the checkpoint to the end of the last entry taken.
    fn commit(&mut self) -> Result<(), Failure> {
        let started = Instant::now();
        let stats = self.shared.store.commit(self.taken_through)?;
        self.first_pending = None;
        let metrics = &self.shared.metrics;
        let micros = started.elapsed().as_micros() as u64;
        metrics.commits.fetch_add(1, Ordering::Relaxed);
        metrics
            .commit_micros_total
            .fetch_add(micros, Ordering::Relaxed);
        metrics.last_commit_micros.store(micros, Ordering::Relaxed);
        metrics
            .index_checkpoint
            .store(self.shared.store.checkpoint(), Ordering::Relaxed);
        metrics
            .oldest_unindexed_unix_nano
            .store(0, Ordering::Relaxed);
        metrics
            .open_writers
            .store(self.shared.store.open_writers() as u64, Ordering::Relaxed);
        tracing::debug!(documents = stats.documents, micros, "rows searchable");
        Ok(())
    }

    /// Rolls the index back to its last commit, adds every entry since the checkpoint again,
    /// and commits them.
    fn catch_up(&mut self) -> Result<(), Failure> {
        let store = self.shared.store.clone();
        store.rollback();
        self.first_pending = None;
        let from = store.checkpoint();
        let through = self.taken_through;
        if from < through {
            let wal_dir = self.shared.data_dir.join("wal");
            let mut since_commit = 0u64;
            let mut rows_total = 0usize;
            let entries = read_range(&wal_dir, from, through, |start, end, payload| {
                self.shared.health.indexer_busy(Some(now_unix_nano()));
                match RowBatch::decode_packed(payload.as_slice()) {
                    Ok(batch) => {
                        rows_total += store.index_encoded_batch(start, end, &batch, &payload)?;
                    }
                    Err(error) => self.quarantine(start, &payload, &error).map_err(|e| {
                        Failure(format!("cannot copy an undecodable WAL entry aside: {e}"))
                    })?,
                }
                since_commit += end - start;
                if since_commit >= CATCH_UP_COMMIT_BYTES {
                    store.commit(end)?;
                    since_commit = 0;
                }
                Ok::<(), Failure>(())
            })?;
            self.shared
                .metrics
                .rows_indexed
                .fetch_add(rows_total as u64, Ordering::Relaxed);
            tracing::info!(
                from,
                through,
                entries,
                rows = rows_total,
                "entries since the checkpoint added from the write-ahead log"
            );
        }
        self.commit()
    }

    /// An entry whose checksum is right but whose rows do not decode cannot be indexed by this
    /// version of weft; it is copied aside (the WAL segment may be deleted later) and skipped.
    fn quarantine(
        &self,
        lsn: u64,
        payload: &[u8],
        error: &PackedBatchError,
    ) -> std::io::Result<()> {
        let dir = self.shared.data_dir.join("wal-quarantine");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{lsn:020}.entry"));
        std::fs::write(&path, payload)?;
        std::fs::File::open(&path)?.sync_all()?;
        self.shared
            .metrics
            .wal_entries_quarantined
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(%error, lsn, path = %path.display(), "WAL entry does not decode; copied aside and skipped");
        Ok(())
    }

    /// Retries [`Indexer::catch_up`] with backoff until it succeeds or weft stops, refusing new
    /// data meanwhile.
    fn recover(&mut self, first_reason: Failure) {
        let health = self.shared.health.clone();
        let metrics = self.shared.metrics.clone();
        metrics.index_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(reason = %first_reason, "indexing failed; rolling back and retrying from the write-ahead log");
        health.set(Condition::IndexFailing, first_reason.0);
        let mut backoff = FIRST_BACKOFF;
        loop {
            if !self.pause(backoff) {
                tracing::warn!(
                    "stopping while the index is failing; the WAL replays at the next start"
                );
                return;
            }
            match self.attempt(|i| i.catch_up()) {
                Ok(()) => {
                    health.clear(Condition::IndexFailing);
                    tracing::info!("indexing recovered");
                    return;
                }
                Err(reason) => {
                    metrics.index_errors.fetch_add(1, Ordering::Relaxed);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(%reason, retry_in_ms = backoff.as_millis() as u64, "index still failing");
                    health.set(Condition::IndexFailing, reason.0);
                }
            }
        }
    }

    /// Sleeps `how_long` unless weft stops first; returns whether to go on.
    fn pause(&self, how_long: Duration) -> bool {
        let how_long = match &self.shared.config.faults {
            Some(faults) => faults.retry_wait(how_long),
            None => how_long,
        };
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            if self.shared.health.is_set(Condition::Stopping) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10).min(how_long));
        }
        !self.shared.health.is_set(Condition::Stopping)
    }
}
