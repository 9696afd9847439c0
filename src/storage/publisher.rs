//! The publisher: from a sealed partition's snapshot to a published split, and the janitor that
//! deletes splits nobody needs any more.
//!
//! ```text
//! indexer thread ── Job::Sealed(snapshot) ──> pack ─> stage ─> upload ─> publish ─> store.mark_published
//!                ── Job::Delete(ids) ───────> mark for deletion ─> (grace) ─> delete object ─> forget
//! ```
//! A split marked for deletion (by retention, or replaced by a newer split of its partition)
//! leaves every node's list at once, but its object stays for [`Publisher::deletion_grace`]:
//! a search node may have listed it just before, and its query reads it in place. What an
//! earlier run marked waits out the grace again from the start (the marks are in the
//! metastore, the times were not); what it left staged was never listed and goes at once.
//! Every step is retried with backoff until it succeeds: while object storage or the metastore
//! is away, partitions stay unpublished (and their WAL entries stay on disk), queries over
//! local data go on, and `/readyz` and `/metrics` say what fails.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use weft_index::Store;
use weft_index::store::SealedSnapshot;

use super::ObjectStorage;
use crate::metastore::{Metastore, SplitRecord, SplitState};
use crate::metrics::Metrics;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Work for the publisher.
#[derive(Debug)]
pub enum Job {
    /// A partition sealed by the indexer, to be uploaded and published.
    Sealed(SealedSnapshot),
    /// Splits retention removed, to be deleted from object storage and the metastore.
    Delete(Vec<String>),
}

/// What `/readyz` shows about object storage.
#[derive(Default, Debug)]
pub struct StorageStatus {
    failing: Mutex<Option<(String, u64)>>,
}

impl StorageStatus {
    /// `Some(reason, since_unix_nano)` while uploads or deletions fail.
    pub fn failing(&self) -> Option<(String, u64)> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, reason: Option<String>) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match reason {
            None => *failing = None,
            Some(reason) => {
                let since = failing
                    .as_ref()
                    .map(|(_, since)| *since)
                    .unwrap_or_else(crate::clock::now_unix_nano);
                *failing = Some((reason, since));
            }
        }
    }
}

/// The publisher task's parts.
pub struct Publisher {
    /// Where splits go.
    pub storage: ObjectStorage,
    /// Where they are recorded.
    pub metastore: Arc<dyn Metastore>,
    /// The index, told when a partition is published.
    pub store: Arc<Store>,
    /// Where snapshots are packed.
    pub staging: PathBuf,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Shown by `/readyz`.
    pub status: Arc<StorageStatus>,
    /// This node's name, which its splits carry.
    pub node: String,
    /// How long a split marked for deletion stays readable: at least as long as a search
    /// node's list of splits can be out of date (its refresh interval) plus a query's time
    /// limit.
    pub deletion_grace: Duration,
}

/// A split marked for deletion, and when its object may go.
#[derive(Debug)]
struct Marked {
    id: String,
    due: Instant,
}

impl Publisher {
    /// Runs until `stop` turns true. `(staged, marked)` are what a previous run left: staged
    /// splits (never listed, so never read) are deleted at once, splits marked for deletion
    /// after the grace (a search node that kept running may still read them).
    pub async fn run(
        self,
        mut jobs: mpsc::UnboundedReceiver<Job>,
        (staged, marked_before): (Vec<String>, Vec<String>),
        mut stop: watch::Receiver<bool>,
    ) {
        let mut sealed: VecDeque<(SealedSnapshot, String)> = VecDeque::new();
        let mut doomed: Vec<String> = Vec::new();
        let now = Instant::now();
        let mut marked: Vec<Marked> = staged
            .into_iter()
            .map(|id| Marked { id, due: now })
            .chain(marked_before.into_iter().map(|id| Marked {
                id,
                due: now + self.deletion_grace,
            }))
            .collect();
        let mut backoff = FIRST_BACKOFF;
        let mut retry_at: Option<Instant> = None;
        loop {
            while let Ok(job) = jobs.try_recv() {
                self.take(job, &mut sealed, &mut doomed);
            }
            self.metrics
                .storage
                .pending_uploads
                .store(sealed.len() as u64, Ordering::Relaxed);
            let mut failure = None;
            if retry_at.is_none_or(|at| Instant::now() >= at) {
                while let Some((snapshot, id)) = sealed.front() {
                    match self.publish(snapshot, id).await {
                        Ok(replaced) => {
                            sealed.pop_front();
                            let due = Instant::now() + self.deletion_grace;
                            marked.extend(replaced.into_iter().map(|id| Marked { id, due }));
                        }
                        Err(reason) => {
                            self.metrics
                                .storage
                                .upload_errors
                                .fetch_add(1, Ordering::Relaxed);
                            failure = Some(reason);
                            break;
                        }
                    }
                }
                if failure.is_none()
                    && let Err(reason) = self.delete(&mut doomed, &mut marked).await
                {
                    self.metrics
                        .storage
                        .delete_errors
                        .fetch_add(1, Ordering::Relaxed);
                    failure = Some(reason);
                }
                match &failure {
                    Some(reason) => {
                        tracing::warn!(%reason, retry_in_ms = backoff.as_millis() as u64, "object storage step failed; retrying");
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    None => {
                        retry_at = None;
                        backoff = FIRST_BACKOFF;
                    }
                }
                self.status.set(failure);
            }
            self.metrics
                .storage
                .pending_uploads
                .store(sealed.len() as u64, Ordering::Relaxed);
            let next_due = marked.iter().map(|m| m.due).min();
            let wake = match (retry_at, next_due) {
                (Some(at), _) => Some(at),
                (None, due) => due,
            };
            let wait = wake
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => self.take(job, &mut sealed, &mut doomed),
                    None => return,
                },
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    fn take(
        &self,
        job: Job,
        sealed: &mut VecDeque<(SealedSnapshot, String)>,
        doomed: &mut Vec<String>,
    ) {
        match job {
            Job::Sealed(snapshot) => {
                let id = split_id(&snapshot);
                sealed.push_back((snapshot, id));
            }
            Job::Delete(ids) => doomed.extend(ids),
        }
    }

    /// Packs, stages, uploads and publishes one snapshot; returns the splits it replaced,
    /// marked for deletion with it. Each step may be repeated.
    async fn publish(&self, snapshot: &SealedSnapshot, id: &str) -> Result<Vec<String>, String> {
        let id = id.to_string();
        let file = self.staging.join(format!("{id}.split"));
        let bytes = {
            let (dir, file) = (snapshot.dir.clone(), file.clone());
            tokio::task::spawn_blocking(move || weft_index::split::pack(&dir, &file))
                .await
                .map_err(|e| format!("packing {id}: {e}"))?
                .map_err(|e| format!("packing {id}: {e}"))?
        };
        let record = SplitRecord {
            id: id.clone(),
            signal: snapshot.signal.dir_name().to_string(),
            start_unix_nano: snapshot.start_unix_nano,
            end_unix_nano: snapshot
                .start_unix_nano
                .saturating_add(weft_index::PARTITION_NANOS),
            committed_lsn: snapshot.committed_lsn,
            docs: snapshot.docs,
            bytes,
            state: SplitState::Staged,
            updated_unix_nano: 0,
            services: Some(snapshot.services.clone()),
            node: Some(self.node.clone()),
            part: snapshot.part,
        };
        self.metastore
            .stage_split(record)
            .await
            .map_err(|e| e.to_string())?;
        self.storage
            .put_split(&id, &file)
            .await
            .map_err(|e| format!("uploading {id} to {}: {e}", self.storage.url()))?;
        let replaces: Vec<String> = snapshot.replaces.iter().cloned().collect();
        self.metastore
            .publish_split(&id, &replaces)
            .await
            .map_err(|e| e.to_string())?;
        let kept = {
            let (store, snapshot) = (self.store.clone(), snapshot.clone());
            tokio::task::spawn_blocking(move || store.keep_split_filter(&snapshot)).await
        };
        if !matches!(kept, Ok(Ok(()))) {
            // Lookups in the split then read all of its segments: slower, not wrong.
            tracing::warn!(split = %id, "keeping the split's trace filter failed: {kept:?}");
        }
        self.store.mark_published(snapshot, &id);
        let storage = &self.metrics.storage;
        storage.uploads.fetch_add(1, Ordering::Relaxed);
        storage.uploaded_bytes.fetch_add(bytes, Ordering::Relaxed);
        tracing::info!(split = %id, bytes, docs = snapshot.docs, "split published");
        let _ = tokio::fs::remove_file(&file).await;
        let _ = tokio::fs::remove_dir_all(&snapshot.dir).await;
        // Publishing marked the splits it replaces; they go the way of every deletion.
        Ok(replaces)
    }

    /// Marks `doomed` for deletion (moving them to `marked`, due after the grace), then
    /// deletes the objects of those in `marked` that are due, then their records. What is
    /// left on failure is what still has to go.
    async fn delete(
        &self,
        doomed: &mut Vec<String>,
        marked: &mut Vec<Marked>,
    ) -> Result<(), String> {
        if !doomed.is_empty() {
            self.metastore
                .mark_for_deletion(doomed)
                .await
                .map_err(|e| e.to_string())?;
            let due = Instant::now() + self.deletion_grace;
            marked.extend(doomed.drain(..).map(|id| Marked { id, due }));
        }
        let now = Instant::now();
        while let Some(at) = marked.iter().position(|m| m.due <= now) {
            let id = &marked[at].id;
            self.storage
                .delete_split(id)
                .await
                .map_err(|e| format!("deleting {id} from {}: {e}", self.storage.url()))?;
            self.metastore
                .delete_splits(std::slice::from_ref(id))
                .await
                .map_err(|e| e.to_string())?;
            self.metrics.storage.deletes.fetch_add(1, Ordering::Relaxed);
            marked.swap_remove(at);
        }
        Ok(())
    }
}

/// A split's ID: its snapshot's name (`<signal>-<hour>-<position>`) and 32 random bits, so
/// that a partition uploaded again after a crash between upload and publish never shares an
/// object name with the leftover the janitor deletes. Retries of one snapshot keep its ID.
pub fn split_id(snapshot: &SealedSnapshot) -> String {
    let name = snapshot
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "{}-{}-{}",
                snapshot.signal.dir_name(),
                snapshot.start_unix_nano,
                snapshot.committed_lsn
            )
        });
    format!("{name}-{:08x}", rand::random::<u32>())
}
