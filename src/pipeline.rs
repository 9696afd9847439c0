//! From accepted rows to searchable rows.
//!
//! ```text
//! handler ──try_send──> WAL thread ──(append all waiting, one fsync, reply)──> indexer thread
//!   ^  await reply        group commit                                          add to partitions,
//!   └── ack after fsync                                                         commit every interval
//! ```
//! Memory is bounded by a byte budget taken when a request enters and released once its rows are
//! indexed; when the budget or the WAL queue is exhausted the request is refused at once
//! (`Saturated`), which the ingest layers turn into 503 / UNAVAILABLE with a retry hint.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};
use weft_index::{LogRow, RetentionPolicy, RowBatch, Store};

use crate::metrics::Metrics;
use crate::wal::{Wal, WalError};

/// Entries the WAL thread writes under one fsync at most.
const MAX_GROUP_ENTRIES: usize = 4096;
/// Budget unit: permits count KiB so that a 64 MiB request fits a u32 permit count.
const BUDGET_UNIT: usize = 1024;

/// Why rows could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Too much is in flight; try again shortly.
    #[error("weft is saturated; retry later")]
    Saturated,
    /// weft is stopping.
    #[error("weft is shutting down")]
    ShuttingDown,
    /// The write-ahead log failed; the rows are not acknowledged.
    #[error("write-ahead log failure: {0}")]
    Wal(String),
}

/// Settings of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// How long rows may wait before an index commit makes them searchable.
    pub commit_interval: Duration,
    /// Size at which the WAL starts a new segment.
    pub wal_segment_bytes: u64,
    /// Bytes of requests that may be in flight between arrival and indexing.
    pub inflight_bytes: usize,
    /// Entries that may wait for the WAL thread.
    pub wal_queue: usize,
    /// Batches that may wait for the indexer.
    pub index_queue: usize,
    /// How long data is kept.
    pub retention: Duration,
    /// Disk cap for index partitions.
    pub max_disk_bytes: Option<u64>,
    /// How often retention runs.
    pub retention_interval: Duration,
}

struct AppendRequest {
    payload: Vec<u8>,
    batch: RowBatch,
    permit: OwnedSemaphorePermit,
    arrived_unix_nano: u64,
    reply: oneshot::Sender<Result<(), PipelineError>>,
}

enum WalMessage {
    Append(AppendRequest),
    Shutdown,
}

struct IndexJob {
    lsn_start: u64,
    lsn_end: u64,
    batch: RowBatch,
    /// The batch as written to the WAL; the index stores each row's slice of it.
    payload: Vec<u8>,
    /// Held until the rows are indexed, so the budget covers the whole path.
    _permit: OwnedSemaphorePermit,
}

/// Log rows as they are acknowledged, for live tail. `first_seq` numbers the first row in the
/// stream of all acknowledged log rows, so a subscriber that fell behind knows how many it
/// missed.
#[derive(Clone, Debug)]
pub struct TailBatch {
    /// Sequence number of `rows[0]`.
    pub first_seq: u64,
    /// The rows.
    pub rows: Arc<Vec<LogRow>>,
}

/// Batches the tail broadcast holds for its slowest subscriber.
const TAIL_BUFFER_BATCHES: usize = 256;

/// Handle shared by the ingest layers.
pub struct Pipeline {
    wal_tx: mpsc::Sender<WalMessage>,
    tail: broadcast::Sender<TailBatch>,
    budget: Arc<Semaphore>,
    budget_units: usize,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Current time as unix nanoseconds.
pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Pipeline {
    /// Recovers from the WAL (replaying what the index has not committed), then starts the WAL
    /// and indexer threads.
    pub fn start(
        data_dir: &Path,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        config: PipelineConfig,
    ) -> Result<Arc<Self>, WalError> {
        let wal = recover(data_dir, &store, &config, &metrics)?;
        let budget_units = (config.inflight_bytes / BUDGET_UNIT).max(1);
        let (wal_tx, wal_rx) = mpsc::channel(config.wal_queue.max(1));
        let (index_tx, index_rx) = std_mpsc::sync_channel(config.index_queue.max(1));
        let (tail, _) = broadcast::channel(TAIL_BUFFER_BATCHES);

        let wal_thread = {
            let metrics = metrics.clone();
            let store = store.clone();
            let tail = tail.clone();
            std::thread::Builder::new()
                .name("weft-wal".into())
                .spawn(move || wal_loop(wal, wal_rx, index_tx, store, metrics, tail))
                .expect("spawning the WAL thread")
        };
        let indexer_thread = {
            std::thread::Builder::new()
                .name("weft-indexer".into())
                .spawn(move || indexer_loop(store, index_rx, metrics, config))
                .expect("spawning the indexer thread")
        };
        Ok(Arc::new(Pipeline {
            wal_tx,
            tail,
            budget: Arc::new(Semaphore::new(budget_units)),
            budget_units,
            threads: std::sync::Mutex::new(vec![wal_thread, indexer_thread]),
        }))
    }

    /// Makes `batch` durable; returns once it is fsynced in the WAL. `payload` is the batch's
    /// encoding, made by the caller off the async runtime.
    pub async fn submit(&self, batch: RowBatch, payload: Vec<u8>) -> Result<(), PipelineError> {
        let units = payload
            .len()
            .div_ceil(BUDGET_UNIT)
            .clamp(1, self.budget_units);
        let permit = self
            .budget
            .clone()
            .try_acquire_many_owned(units as u32)
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::Closed => PipelineError::ShuttingDown,
                tokio::sync::TryAcquireError::NoPermits => PipelineError::Saturated,
            })?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            payload,
            batch,
            permit,
            arrived_unix_nano: now_unix_nano(),
            reply,
        };
        self.wal_tx
            .try_send(WalMessage::Append(request))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PipelineError::Saturated,
                mpsc::error::TrySendError::Closed(_) => PipelineError::ShuttingDown,
            })?;
        answer.await.unwrap_or(Err(PipelineError::ShuttingDown))
    }

    /// A live feed of acknowledged log rows. Subscribers that fall more than the buffer behind
    /// lose the oldest batches (and can tell how many rows from the sequence numbers); ingest
    /// never waits for them.
    pub fn subscribe_tail(&self) -> broadcast::Receiver<TailBatch> {
        self.tail.subscribe()
    }

    /// Stops taking rows, writes what is queued, commits the index and waits for both threads.
    /// Blocking: call it from a blocking context.
    pub fn shutdown_blocking(&self) {
        self.budget.close();
        // A full queue means the WAL thread is busy; wait for room rather than skip the stop.
        let _ = self.wal_tx.blocking_send(WalMessage::Shutdown);
        let threads = std::mem::take(&mut *self.threads.lock().expect("lock poisoned"));
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a pipeline thread panicked during shutdown");
            }
        }
    }
}

fn recover(
    data_dir: &Path,
    store: &Store,
    config: &PipelineConfig,
    metrics: &Metrics,
) -> Result<Wal, WalError> {
    let checkpoint = store.checkpoint();
    let mut wal = Wal::open(&data_dir.join("wal"), config.wal_segment_bytes, checkpoint)?;
    let started = Instant::now();
    let mut rows = 0usize;
    let mut damaged = 0usize;
    let entries = wal.replay(checkpoint, |start, _end, payload| {
        match RowBatch::decode(payload.as_slice()) {
            Ok(batch) => match store.index_encoded_batch(start, &batch, &payload) {
                Ok(n) => rows += n,
                Err(error) => {
                    tracing::error!(%error, lsn = start, "replaying a WAL entry into the index failed");
                    damaged += 1;
                }
            },
            Err(error) => {
                tracing::error!(%error, lsn = start, "WAL entry does not decode; skipped");
                damaged += 1;
            }
        }
    })?;
    if entries > 0 {
        store
            .commit(wal.end())
            .map_err(|e| WalError::Io(std::io::Error::other(e.to_string())))?;
    }
    wal.remove_before(store.checkpoint())?;
    metrics.wal_end.store(wal.end(), Ordering::Relaxed);
    metrics.wal_bytes.store(wal.disk_bytes(), Ordering::Relaxed);
    metrics
        .index_checkpoint
        .store(store.checkpoint(), Ordering::Relaxed);
    tracing::info!(
        entries,
        rows,
        damaged,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "write-ahead log replayed"
    );
    Ok(wal)
}

fn wal_loop(
    mut wal: Wal,
    mut rx: mpsc::Receiver<WalMessage>,
    index_tx: std_mpsc::SyncSender<IndexJob>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    tail: broadcast::Sender<TailBatch>,
) {
    let mut group: Vec<AppendRequest> = Vec::with_capacity(64);
    let mut tail_seq: u64 = 0;
    let mut stopping = false;
    while !stopping {
        match rx.blocking_recv() {
            Some(WalMessage::Append(request)) => group.push(request),
            Some(WalMessage::Shutdown) | None => stopping = true,
        }
        // Everything already waiting shares this fsync: that is the group commit.
        while group.len() < MAX_GROUP_ENTRIES {
            match rx.try_recv() {
                Ok(WalMessage::Append(request)) => group.push(request),
                Ok(WalMessage::Shutdown) => stopping = true,
                Err(_) => break,
            }
        }
        if group.is_empty() {
            continue;
        }
        let mut positions = Vec::with_capacity(group.len());
        let mut failure = None;
        for request in &group {
            match wal.append(&request.payload) {
                Ok(range) => positions.push(range),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if failure.is_none()
            && let Err(error) = wal.sync()
        {
            failure = Some(error);
        }
        if let Some(error) = failure {
            // The entries' fate on disk is unknown; none is acknowledged. Replay may still
            // index some of them, which is harmless for unacknowledged data.
            tracing::error!(%error, entries = group.len(), "write-ahead log append failed");
            for request in group.drain(..) {
                let _ = request
                    .reply
                    .send(Err(PipelineError::Wal(error.to_string())));
            }
            continue;
        }
        metrics.wal_syncs.fetch_add(1, Ordering::Relaxed);
        metrics
            .wal_entries
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        metrics.wal_end.store(wal.end(), Ordering::Relaxed);
        for (request, (lsn_start, lsn_end)) in group.drain(..).zip(positions) {
            let AppendRequest {
                payload,
                batch,
                permit,
                arrived_unix_nano,
                reply,
                ..
            } = request;
            let _ = metrics.oldest_unindexed_unix_nano.compare_exchange(
                0,
                arrived_unix_nano,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            let _ = reply.send(Ok(()));
            if !batch.logs.is_empty() {
                // Copies are made only while someone is tailing.
                if tail.receiver_count() > 0 {
                    let _ = tail.send(TailBatch {
                        first_seq: tail_seq,
                        rows: Arc::new(batch.logs.clone()),
                    });
                }
                tail_seq += batch.logs.len() as u64;
            }
            let job = IndexJob {
                lsn_start,
                lsn_end,
                batch,
                payload,
                _permit: permit,
            };
            // Blocks when the indexer is behind: the WAL queue then fills and new requests
            // are refused, which is the backpressure we want.
            if index_tx.send(job).is_err() {
                tracing::error!("indexer thread is gone; rows stay in the WAL for replay");
            }
        }
        match wal.remove_before(store.checkpoint()) {
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "removing indexed WAL segments failed"),
        }
        metrics.wal_bytes.store(wal.disk_bytes(), Ordering::Relaxed);
    }
    // Rows refused from here on were never acknowledged.
    rx.close();
    while let Ok(message) = rx.try_recv() {
        if let WalMessage::Append(request) = message {
            let _ = request.reply.send(Err(PipelineError::ShuttingDown));
        }
    }
    tracing::debug!("WAL thread stopped");
}

fn indexer_loop(
    store: Arc<Store>,
    rx: std_mpsc::Receiver<IndexJob>,
    metrics: Arc<Metrics>,
    config: PipelineConfig,
) {
    let mut indexed_through = store.checkpoint();
    let mut first_pending: Option<Instant> = None;
    let mut next_retention = Instant::now();
    loop {
        let timeout = match first_pending {
            Some(since) => {
                (since + config.commit_interval).saturating_duration_since(Instant::now())
            }
            None => config.retention_interval.min(Duration::from_secs(1)),
        };
        let disconnected = match rx.recv_timeout(timeout) {
            Ok(job) => {
                match store.index_encoded_batch(job.lsn_start, &job.batch, &job.payload) {
                    Ok(rows) => {
                        metrics
                            .rows_indexed
                            .fetch_add(rows as u64, Ordering::Relaxed);
                    }
                    Err(error) => {
                        // The rows are durable in the WAL; a restart replays them.
                        tracing::error!(%error, lsn = job.lsn_start, "indexing a batch failed");
                    }
                }
                indexed_through = job.lsn_end;
                first_pending.get_or_insert(Instant::now());
                false
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => false,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => true,
        };
        let commit_due =
            first_pending.is_some_and(|since| since.elapsed() >= config.commit_interval);
        if commit_due || (disconnected && first_pending.is_some()) {
            commit(&store, indexed_through, &metrics);
            first_pending = None;
        }
        if Instant::now() >= next_retention {
            run_retention(&store, &config, &metrics);
            next_retention = Instant::now() + config.retention_interval;
        }
        if disconnected {
            break;
        }
    }
    tracing::debug!("indexer thread stopped");
}

fn commit(store: &Store, lsn: u64, metrics: &Metrics) {
    let started = Instant::now();
    match store.commit(lsn) {
        Ok(stats) => {
            let micros = started.elapsed().as_micros() as u64;
            metrics.commits.fetch_add(1, Ordering::Relaxed);
            metrics
                .commit_micros_total
                .fetch_add(micros, Ordering::Relaxed);
            metrics.last_commit_micros.store(micros, Ordering::Relaxed);
            metrics
                .index_checkpoint
                .store(store.checkpoint(), Ordering::Relaxed);
            metrics
                .oldest_unindexed_unix_nano
                .store(0, Ordering::Relaxed);
            tracing::debug!(documents = stats.documents, micros, "rows searchable");
        }
        Err(error) => {
            // Rows stay in the WAL; the next commit or a restart retries.
            tracing::error!(%error, "index commit failed");
        }
    }
}

fn run_retention(store: &Store, config: &PipelineConfig, metrics: &Metrics) {
    let min_time = now_unix_nano().saturating_sub(config.retention.as_nanos() as u64);
    let policy = RetentionPolicy {
        min_time_unix_nano: min_time,
        max_disk_bytes: config.max_disk_bytes,
    };
    match store.apply_retention(&policy) {
        Ok(removed) => {
            metrics
                .partitions_deleted
                .fetch_add(removed.len() as u64, Ordering::Relaxed);
        }
        Err(error) => tracing::error!(%error, "retention failed"),
    }
    metrics
        .index_bytes
        .store(store.disk_bytes(), Ordering::Relaxed);
}
