//! The WAL thread: takes every request waiting, appends them, fsyncs once (group commit),
//! answers each, and hands the entries to the indexer.
//!
//! Before a group is written the thread checks the conditions: a group that arrives while the
//! disk is below its watermark, or while the indexer is failing, is refused without touching
//! the log. A failed append or fsync cuts the log back and refuses the whole group; none of it
//! was acknowledged. While idle it wakes every [`TICK`] to look at free space again and to try
//! to repair a log that could not be cut back, so that weft recovers without new traffic.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use weft_index::faults::Fault;

use super::disk::Watermark;
use super::health::{Condition, DeathWatch};
use super::tail::TailFeed;
use super::wal::Wal;
use super::{AppendRequest, IndexJob, PipelineError, Shared, WalMessage};

/// Entries written under one fsync at most.
const MAX_GROUP_ENTRIES: usize = 4096;
/// How often an idle WAL thread looks at the disk and the log's health.
const TICK: Duration = Duration::from_millis(250);

/// Answers whatever is still queued when the WAL thread ends, however it ends (a panic
/// included), and tells submitters it is gone. A request queued after this still finds out:
/// its submitter watches `gone`.
struct LastWords<'a> {
    rx: &'a Receiver<WalMessage>,
    gone: &'a tokio::sync::watch::Sender<bool>,
}

impl Drop for LastWords<'_> {
    fn drop(&mut self) {
        self.gone.send_replace(true);
        // Rows refused from here on were never acknowledged.
        while let Ok(message) = self.rx.try_recv() {
            if let WalMessage::Append(request) = message {
                let _ = request.reply.send(Err(PipelineError::ShuttingDown));
            }
        }
    }
}

pub(super) fn run(
    shared: Arc<Shared>,
    mut wal: Wal,
    rx: Receiver<WalMessage>,
    index_tx: Sender<IndexJob>,
    mut tail: TailFeed,
) {
    let health = shared.health.clone();
    let _last_words = LastWords {
        rx: &rx,
        gone: &shared.wal_gone,
    };
    let _watch = DeathWatch::new(&health, Condition::WalThreadDead, "write-ahead log");
    let faults = shared.config.faults.clone();
    let mut watermark = Watermark::new(
        &shared.data_dir,
        shared.config.min_free_disk_bytes,
        faults.clone(),
    );
    let mut group: Vec<AppendRequest> = Vec::with_capacity(64);
    let mut stopping = false;
    while !stopping {
        match rx.recv_timeout(TICK) {
            Ok(WalMessage::Append(request)) => group.push(request),
            Ok(WalMessage::Shutdown) | Err(RecvTimeoutError::Disconnected) => stopping = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Everything already waiting shares this fsync: that is the group commit.
        while group.len() < MAX_GROUP_ENTRIES {
            match rx.try_recv() {
                Ok(WalMessage::Append(request)) => group.push(request),
                Ok(WalMessage::Shutdown) => stopping = true,
                Err(_) => break,
            }
        }
        if !group.is_empty() && faults.as_ref().is_some_and(|f| f.take(Fault::WalPanic)) {
            panic!("injected WAL thread panic");
        }
        watermark.check(&health);
        if wal.is_broken() {
            match wal.repair() {
                Ok(()) => health.clear(Condition::WalFailing),
                Err(error) => health.set(Condition::WalFailing, error.to_string()),
            }
        } else if group.is_empty() && health.is_set(Condition::WalFailing) {
            // Nothing is waiting to prove the log works again; an fsync of what is there does.
            match wal.sync() {
                Ok(()) => health.clear(Condition::WalFailing),
                Err(error) => health.set(Condition::WalFailing, error.to_string()),
            }
        }
        if group.is_empty() {
            tail.flush();
            continue;
        }
        if let Some((condition, reason)) = health.refusal(super::now_unix_nano())
            && condition != Condition::WalFailing
        {
            refuse(&mut group, || {
                PipelineError::from_condition(condition, reason.clone())
            });
            continue;
        }
        let positions = match append_group(&mut wal, &group) {
            Ok(positions) => positions,
            Err(error) => {
                shared.metrics.wal_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, entries = group.len(), "write-ahead log append failed; group refused");
                health.set(Condition::WalFailing, error.to_string());
                refuse(&mut group, || PipelineError::Wal(error.to_string()));
                continue;
            }
        };
        health.clear(Condition::WalFailing);
        let metrics = &shared.metrics;
        metrics.wal_syncs.fetch_add(1, Ordering::Relaxed);
        metrics
            .wal_entries
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        metrics.wal_end.store(wal.end(), Ordering::Relaxed);
        // Everyone in the group hears first: their rows are durable, whatever the indexer does.
        let mut jobs = Vec::with_capacity(group.len());
        for (request, (lsn_start, lsn_end)) in group.drain(..).zip(positions) {
            let AppendRequest {
                payload,
                batch,
                reservation,
                arrived_unix_nano,
                reply,
            } = request;
            let _ = metrics.oldest_unindexed_unix_nano.compare_exchange(
                0,
                arrived_unix_nano,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            let _ = reply.send(Ok(()));
            let batch = Arc::new(batch);
            tail.offer(&batch);
            jobs.push(IndexJob {
                lsn_start,
                lsn_end,
                batch,
                payload,
                _reservation: reservation,
            });
        }
        let mut handed = Handed::Yes;
        for job in jobs {
            // Once weft stops with the indexer stuck, the rest stays in the WAL for replay.
            if handed != Handed::Abandoned {
                handed = hand_to_indexer(&shared, &index_tx, job, &rx, &mut stopping);
            }
        }
        if let Err(error) = wal.remove_before(shared.store.wal_floor()) {
            tracing::warn!(%error, "removing indexed WAL segments failed");
        }
        metrics.wal_bytes.store(wal.disk_bytes(), Ordering::Relaxed);
    }
    tracing::debug!("WAL thread stopped");
}

/// Appends every request of the group and fsyncs once; returns each entry's `[start, end)`.
/// On failure the log is back where it was before the group.
fn append_group(
    wal: &mut Wal,
    group: &[AppendRequest],
) -> Result<Vec<(u64, u64)>, super::WalError> {
    let positions = group
        .iter()
        .map(|request| wal.append(&request.payload))
        .collect::<Result<Vec<_>, _>>()?;
    wal.sync()?;
    Ok(positions)
}

/// Answers every request of the group with an error (the ingest layer counts refusals).
fn refuse(group: &mut Vec<AppendRequest>, error: impl Fn() -> PipelineError) {
    for request in group.drain(..) {
        let _ = request.reply.send(Err(error()));
    }
}

/// Hands a durable entry to the indexer, waiting while it is behind (that is the backpressure
/// that fills the WAL queue and refuses new requests). While it waits and a condition holds
/// (the indexer failing or stalled), requests already queued behind are refused rather than
/// left waiting for an indexer that may take long to come back. While weft stops, or if the
/// indexer is gone, the entry is left to the WAL: it is replayed at the next start.
/// A shutdown request taken from the queue meanwhile sets `stopping`.
fn hand_to_indexer(
    shared: &Shared,
    index_tx: &Sender<IndexJob>,
    mut job: IndexJob,
    rx: &Receiver<WalMessage>,
    stopping: &mut bool,
) -> Handed {
    loop {
        match index_tx.send_timeout(job, TICK) {
            Ok(()) => return Handed::Yes,
            Err(SendTimeoutError::Timeout(back)) => {
                if shared.health.is_set(Condition::Stopping) {
                    tracing::warn!(
                        lsn = back.lsn_start,
                        "stopping while the indexer is busy; the entry stays in the WAL for replay"
                    );
                    *stopping = true;
                    return Handed::Abandoned;
                }
                if let Some((condition, reason)) = shared.health.refusal(super::now_unix_nano()) {
                    while let Ok(message) = rx.try_recv() {
                        match message {
                            WalMessage::Append(request) => {
                                let _ = request.reply.send(Err(PipelineError::from_condition(
                                    condition,
                                    reason.clone(),
                                )));
                            }
                            WalMessage::Shutdown => *stopping = true,
                        }
                    }
                }
                job = back;
            }
            Err(SendTimeoutError::Disconnected(back)) => {
                tracing::error!(
                    lsn = back.lsn_start,
                    "indexer thread is gone; the entry stays in the WAL for replay"
                );
                shared.health.set(
                    Condition::IndexerDead,
                    "the indexer thread stopped; restart weft",
                );
                return Handed::Abandoned;
            }
        }
    }
}

/// What became of an entry offered to the indexer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handed {
    /// The indexer has it.
    Yes,
    /// Left to the WAL (weft stops, or the indexer is gone); so are the entries after it.
    Abandoned,
}
