//! A search node's view of the cluster's data: every second, the splits every node published
//! (the metastore's list) become the index's remote partitions, read in place by queries.
//! Nothing here writes: the splits, their deletion and their metastore records stay the
//! business of the nodes that published them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use weft_index::Store;

use super::publisher::StorageStatus;
use crate::metastore::Metastore;
use crate::metrics::Metrics;

/// How often the list is read again: a split is searchable on a search node within this of
/// its publication.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Trace filters fetched per round: each costs two reads of object storage.
const FILTERS_PER_ROUND: usize = 32;

/// The follower task's parts.
pub struct Follower {
    /// Where the splits are listed.
    pub metastore: Arc<dyn Metastore>,
    /// The index whose remote partitions follow the list.
    pub store: Arc<Store>,
    /// Shown in `/readyz`: failing while the metastore cannot be read.
    pub status: Arc<StorageStatus>,
    /// Counts splits taken in.
    pub metrics: Arc<Metrics>,
}

impl Follower {
    /// Follows the list until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(FOLLOW_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match self.refresh_with_filters().await {
                Ok(added) => {
                    if self.status.failing().is_some() {
                        tracing::info!("the metastore answers again");
                    }
                    self.status.set(None);
                    if added > 0 {
                        tracing::debug!(added, "published splits taken in");
                    }
                }
                Err(reason) => {
                    if self.status.failing().is_none() {
                        tracing::warn!(%reason, "cannot list the published splits; retrying");
                    }
                    self.status.set(Some(reason));
                }
            }
        }
    }

    /// Reads the list once and makes the index follow it; returns how many splits are new.
    /// A query calls it after asking the ingest nodes, so that a split published since the
    /// last round (whose rows its node no longer answers for) is read.
    pub async fn refresh(&self) -> Result<usize, String> {
        let splits = self
            .metastore
            .list_splits()
            .await
            .map_err(|e| e.to_string())?;
        let published: Vec<_> = splits.iter().filter_map(|s| s.published()).collect();
        let store = self.store.clone();
        let added = tokio::task::spawn_blocking(move || store.follow_published(&published))
            .await
            .map_err(|e| format!("taking in the published splits failed: {e}"))?;
        self.metrics
            .storage
            .remote_partitions
            .store(self.store.remote_count() as u64, Ordering::Relaxed);
        Ok(added)
    }

    /// [`Follower::refresh`], then a few trace filters: a node starting on a large bucket
    /// takes in the list at once and answers (more slowly) while the filters come.
    async fn refresh_with_filters(&self) -> Result<usize, String> {
        let added = self.refresh().await?;
        let store = self.store.clone();
        let fetched =
            tokio::task::spawn_blocking(move || store.fetch_missing_filters(FILTERS_PER_ROUND))
                .await;
        if !matches!(fetched, Ok(Ok(_))) {
            tracing::warn!(
                "cannot fetch trace filters of published splits ({fetched:?}); retrying"
            );
        }
        Ok(added)
    }
}
