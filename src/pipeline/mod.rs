//! From accepted rows to searchable rows.
//!
//! ```text
//! handler ──try_send──> WAL thread ──(append all waiting, one fsync, reply)──> indexer thread
//!   ^  await reply        group commit                                          add to partitions,
//!   └── ack after fsync                                                         commit every interval
//! ```
//! - `wal`: the log itself; `wal_writer`: the WAL thread (group commit, the disk watermark);
//!   `indexer`: the indexer thread (commits, recovery after a failure); `retention`: what
//!   the indexer thread removes between commits (expired partitions; with object storage,
//!   sealing for the publisher, `crate::storage::publisher`, and eviction of local copies);
//!   `health`: the conditions under which data is refused; `disk`: the free-space watermark;
//!   with object storage, the cache thread (`fill_cache` below) brings the hours queries read
//!   back into the local cache while it has room.
//!
//! Memory is bounded by a byte budget: a request takes a [`Reservation`] before its body is read
//! and holds it until its rows are indexed. When the budget or the WAL queue is exhausted, or a
//! [`Condition`] holds (a failing disk, a full one, a dead thread), the request is refused at
//! once with a retryable error that the ingest layers turn into 503 / UNAVAILABLE with a retry
//! hint.
//!
//! What an ack promises: the rows are in the WAL and fsynced. The index checkpoint only moves
//! over rows the index has committed; after any indexing failure the indexer rolls the index
//! back to its last commit and adds every entry since the checkpoint again from the WAL, so
//! nothing acknowledged is skipped and nothing is indexed twice.

mod disk;
pub mod health;
mod indexer;
mod retention;
pub mod tail;
pub mod wal;
mod wal_writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use weft_index::faults::Faults;
use weft_index::{RowBatch, Store};

pub use disk::free_bytes;
pub use health::{Condition, Health};
use wal::{Wal, WalError};

use crate::clock::now_unix_nano;
use crate::metrics::Metrics;
use tail::TailHub;

/// Budget unit: permits count KiB so that a 64 MiB request fits a u32 permit count.
const BUDGET_UNIT: usize = 1024;

/// Why rows could not be made durable. Every variant is transient: the client should retry.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Too much is in flight; try again shortly.
    #[error("weft is saturated; retry later")]
    Saturated,
    /// weft is stopping.
    #[error("weft is shutting down")]
    ShuttingDown,
    /// A condition holds under which weft takes no data (disk low, a failing WAL or index, a
    /// dead thread).
    #[error("weft is not taking data: {reason}")]
    Unavailable {
        /// Which condition.
        condition: Condition,
        /// Why, in words.
        reason: String,
    },
    /// Writing this request to the write-ahead log failed; it was not stored.
    #[error("the write-ahead log could not store the data: {0}")]
    Wal(String),
}

impl PipelineError {
    /// How long a client should wait before retrying.
    pub fn retry_after(&self) -> Duration {
        match self {
            PipelineError::Saturated | PipelineError::ShuttingDown => Duration::from_secs(1),
            PipelineError::Unavailable { .. } | PipelineError::Wal(_) => Duration::from_secs(5),
        }
    }

    fn from_condition(condition: Condition, reason: String) -> Self {
        match condition {
            Condition::Stopping => PipelineError::ShuttingDown,
            condition => PipelineError::Unavailable { condition, reason },
        }
    }
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
    /// Below this many free bytes on the data directory's file system, data is refused.
    pub min_free_disk_bytes: u64,
    /// How long the indexer may work on one batch or commit before weft counts it as stalled.
    pub stall_after: Duration,
    /// Live tails open at once.
    pub max_tail_subscribers: usize,
    /// Export requests in progress at once (each holds a [`Reservation`]).
    pub max_concurrent_exports: usize,
    /// Faults to inject (tests only).
    pub faults: Option<Arc<Faults>>,
    /// With object storage: when partitions are sealed, and where they go.
    pub sealing: Option<Sealing>,
}

/// How the indexer seals partitions for object storage and keeps the local cache in bounds.
#[derive(Clone, Debug)]
pub struct Sealing {
    /// How long after its hour ends a partition waits for late rows.
    pub seal_interval: Duration,
    /// Local bytes kept for partitions already published.
    pub cache_bytes: u64,
    /// Where snapshots of sealed partitions are linked.
    pub staging: PathBuf,
    /// The publisher's queue.
    pub jobs: tokio::sync::mpsc::UnboundedSender<crate::storage::publisher::Job>,
}

/// One export request's place: a slot among `max_concurrent_exports` and memory from the
/// in-flight budget. Taken before the body is read, grown as it is read, inflated and decoded,
/// and given back when dropped, which is once the request's rows are indexed (or it is refused).
#[derive(Debug)]
pub struct Reservation {
    _slot: OwnedSemaphorePermit,
    permit: Option<OwnedSemaphorePermit>,
    budget: Arc<Semaphore>,
    budget_units: usize,
}

impl Reservation {
    /// Grows the reservation to cover `bytes` in all (at most the whole budget, so that one
    /// request larger than the budget is still admitted alone); refused (`Saturated`) when the
    /// budget cannot cover it now.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), PipelineError> {
        let want = bytes.div_ceil(BUDGET_UNIT).clamp(1, self.budget_units);
        let have = self.permit.as_ref().map_or(0, |p| p.num_permits());
        if want <= have {
            return Ok(());
        }
        let more = self
            .budget
            .clone()
            .try_acquire_many_owned((want - have) as u32)
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::Closed => PipelineError::ShuttingDown,
                tokio::sync::TryAcquireError::NoPermits => PipelineError::Saturated,
            })?;
        match &mut self.permit {
            Some(permit) => permit.merge(more),
            None => self.permit = Some(more),
        }
        Ok(())
    }

    /// Gives back what is above `bytes` (what the request still holds once decoded).
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.div_ceil(BUDGET_UNIT).clamp(1, self.budget_units);
        if let Some(permit) = &mut self.permit {
            let have = permit.num_permits();
            if have > keep {
                drop(permit.split(have - keep));
            }
        }
    }

    /// Bytes reserved.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits()) * BUDGET_UNIT
    }
}

/// One request on its way to the WAL.
struct AppendRequest {
    payload: Vec<u8>,
    batch: RowBatch,
    reservation: Reservation,
    arrived_unix_nano: u64,
    reply: oneshot::Sender<Result<(), PipelineError>>,
}

enum WalMessage {
    Append(AppendRequest),
    Shutdown,
}

/// One durable WAL entry on its way to the index.
struct IndexJob {
    lsn_start: u64,
    lsn_end: u64,
    /// Shared with the live tail, which never copies it.
    batch: Arc<RowBatch>,
    /// The batch as written to the WAL; the index stores each row's slice of it.
    payload: Vec<u8>,
    /// Held until the rows are indexed, so the budget covers the whole path.
    _reservation: Reservation,
}

/// What the WAL thread and the indexer share with the handle.
struct Shared {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    config: PipelineConfig,
    data_dir: PathBuf,
    /// Stop without committing anything more, as a crash would (tests only).
    abandon: std::sync::atomic::AtomicBool,
    /// Turns true when the WAL thread has ended, however it ended: a request still waiting for
    /// it will never be answered by it.
    wal_gone: tokio::sync::watch::Sender<bool>,
}

/// The cache thread: every second, downloads whole the remote hours queries read since, while
/// the local cache has room for them (`Store::fill_cache`), until weft stops. A download is
/// off the indexer's thread, so ingest never waits for one.
fn fill_cache(shared: &Shared, cache_bytes: u64) {
    let mut last_error: Option<String> = None;
    loop {
        // A second between rounds, watching for the stop every fifth of it.
        for _ in 0..5 {
            if shared.health.is_set(Condition::Stopping) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        match shared.store.fill_cache(cache_bytes) {
            Ok(0) => {}
            Ok(n) => tracing::info!(partitions = n, "read hours brought into the local cache"),
            Err(error) => {
                // Storage away: the queries that read these hours have already said so.
                let text = error.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(%error, "bringing read hours into the local cache failed");
                }
                last_error = Some(text);
            }
        }
    }
}

/// Handle shared by the ingest layers.
pub struct Pipeline {
    shared: Arc<Shared>,
    wal_tx: crossbeam_channel::Sender<WalMessage>,
    tail: Arc<TailHub>,
    slots: Arc<Semaphore>,
    budget: Arc<Semaphore>,
    budget_units: usize,
    health: Arc<Health>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Pipeline {
    /// Opens the WAL, starts the WAL and indexer threads, and waits for the indexer's first
    /// pass over what the index has not committed. If that pass fails (a full disk, a failing
    /// index), weft still starts: it refuses data and the indexer retries until it succeeds.
    pub fn start(
        data_dir: &Path,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        config: PipelineConfig,
    ) -> Result<Arc<Self>, WalError> {
        let health = Arc::new(Health::new(config.stall_after));
        let wal = Wal::open_with_faults(
            &data_dir.join("wal"),
            config.wal_segment_bytes,
            store.checkpoint(),
            config.faults.clone(),
        )?;
        metrics.wal_end.store(wal.end(), Ordering::Relaxed);
        metrics.wal_bytes.store(wal.disk_bytes(), Ordering::Relaxed);
        metrics
            .index_checkpoint
            .store(store.checkpoint(), Ordering::Relaxed);
        let budget_units = (config.inflight_bytes / BUDGET_UNIT).max(1);
        let max_concurrent_exports = config.max_concurrent_exports.max(1);
        let (wal_tx, wal_rx) = crossbeam_channel::bounded(config.wal_queue.max(1));
        let (index_tx, index_rx) = crossbeam_channel::bounded(config.index_queue.max(1));
        let (tail, tail_feed) = TailHub::start(config.max_tail_subscribers)?;
        let shared = Arc::new(Shared {
            store,
            metrics,
            health: health.clone(),
            config,
            data_dir: data_dir.to_path_buf(),
            abandon: std::sync::atomic::AtomicBool::new(false),
            wal_gone: tokio::sync::watch::Sender::new(false),
        });

        let (caught_up_tx, caught_up_rx) = std::sync::mpsc::channel();
        let indexer_thread = {
            let shared = shared.clone();
            let recover_through = wal.end();
            std::thread::Builder::new()
                .name("weft-indexer".into())
                .spawn(move || indexer::run(shared, index_rx, recover_through, caught_up_tx))?
        };
        let wal_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("weft-wal".into())
                .spawn(move || wal_writer::run(shared, wal, wal_rx, index_tx, tail_feed))?
        };
        let cache_thread = match &shared.config.sealing {
            Some(sealing) => {
                let (shared, cache_bytes) = (shared.clone(), sealing.cache_bytes);
                Some(
                    std::thread::Builder::new()
                        .name("weft-cache".into())
                        .spawn(move || fill_cache(&shared, cache_bytes))?,
                )
            }
            None => None,
        };
        match caught_up_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => tracing::error!(
                %reason,
                "catching up from the write-ahead log failed; weft starts, refuses data and retries"
            ),
            Err(_) => tracing::error!("the indexer stopped while catching up"),
        }
        Ok(Arc::new(Pipeline {
            shared,
            wal_tx,
            tail,
            slots: Arc::new(Semaphore::new(max_concurrent_exports)),
            budget: Arc::new(Semaphore::new(budget_units)),
            budget_units,
            health,
            threads: std::sync::Mutex::new(
                [Some(wal_thread), Some(indexer_thread), cache_thread]
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
        }))
    }

    /// The conditions that stop weft taking data.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Refuses at once if a condition holds.
    fn check_health(&self) -> Result<(), PipelineError> {
        match self.health.refusal(now_unix_nano()) {
            None => Ok(()),
            Some((condition, reason)) => Err(PipelineError::from_condition(condition, reason)),
        }
    }

    /// Takes `bytes` from the in-flight budget for a request about to be read. Refused at once
    /// when the budget is spent or a condition holds, so nothing is read that would be refused.
    pub fn reserve(&self, bytes: usize) -> Result<Reservation, PipelineError> {
        self.check_health()?;
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::Closed => PipelineError::ShuttingDown,
                tokio::sync::TryAcquireError::NoPermits => PipelineError::Saturated,
            })?;
        let mut reservation = Reservation {
            _slot: slot,
            permit: None,
            budget: self.budget.clone(),
            budget_units: self.budget_units,
        };
        reservation.grow_to(bytes)?;
        Ok(reservation)
    }

    /// Makes `batch` durable; returns once it is fsynced in the WAL. `payload` is the batch's
    /// encoding, made by the caller off the async runtime; `reservation` covers the request's
    /// memory and is held until the rows are indexed.
    pub async fn submit(
        &self,
        batch: RowBatch,
        payload: Vec<u8>,
        mut reservation: Reservation,
    ) -> Result<(), PipelineError> {
        self.check_health()?;
        reservation.grow_to(payload.len())?;
        let (reply, mut answer) = oneshot::channel();
        let request = AppendRequest {
            payload,
            batch,
            reservation,
            arrived_unix_nano: now_unix_nano(),
            reply,
        };
        let not_stored = || {
            self.check_health()
                .err()
                .unwrap_or(PipelineError::ShuttingDown)
        };
        let mut wal_gone = self.shared.wal_gone.subscribe();
        self.wal_tx
            .try_send(WalMessage::Append(request))
            .map_err(|e| match e {
                crossbeam_channel::TrySendError::Full(_) => PipelineError::Saturated,
                crossbeam_channel::TrySendError::Disconnected(_) => not_stored(),
            })?;
        // A reply dropped unsent means the WAL thread died with the request: not stored. A
        // request queued as the thread ended is never taken: the thread's end says so.
        tokio::select! {
            biased;
            answered = &mut answer => answered.unwrap_or_else(|_| Err(not_stored())),
            _ = wal_gone.wait_for(|gone| *gone) => match answer.try_recv() {
                Ok(answered) => answered,
                Err(_) => Err(not_stored()),
            },
        }
    }

    /// The live tail of acknowledged log rows.
    pub fn tail(&self) -> &Arc<TailHub> {
        &self.tail
    }

    /// Stops taking rows, writes what is queued, commits the index and waits for both threads,
    /// for at most `timeout`: a thread stuck in a failing disk does not keep weft from exiting
    /// (what it acknowledged is in the WAL). Blocking: call it from a blocking context.
    pub fn shutdown_blocking(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.budget.close();
        self.slots.close();
        // A full queue means the WAL thread is busy; it also stops on the Stopping condition.
        self.health
            .set(Condition::Stopping, "weft is shutting down");
        let _ = self.wal_tx.send_deadline(WalMessage::Shutdown, deadline);
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        for thread in std::mem::take(&mut *threads) {
            let name = thread.thread().name().unwrap_or("pipeline").to_string();
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !thread.is_finished() {
                tracing::error!(
                    thread = %name,
                    timeout_ms = timeout.as_millis() as u64,
                    "thread did not stop in time; exiting without it (acknowledged data is in the write-ahead log)"
                );
                // Kept, so that a later call can still wait for it.
                threads.push(thread);
                continue;
            }
            if thread.join().is_err() {
                tracing::error!(thread = %name, "a pipeline thread panicked");
            }
        }
    }

    /// Stops the threads without committing anything more, leaving the data directory as a
    /// SIGKILL would (the WAL holds every acknowledged entry, the index only its commits), so
    /// that tests can check what the next start replays.
    pub fn abandon_blocking(&self, timeout: Duration) {
        self.shared.abandon.store(true, Ordering::SeqCst);
        self.shutdown_blocking(timeout);
    }

    /// Whether both threads have stopped.
    pub fn is_stopped(&self) -> bool {
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .all(JoinHandle::is_finished)
    }
}
