//! What leaves the local index, run by the indexer thread between commits so that it never
//! races the partitions' writers: retention (partitions past `retention` or beyond
//! `max_disk_bytes`), and with object storage the sealing of partitions whose hour is over
//! (handed to the publisher, `crate::storage::publisher`) and the eviction of local copies
//! of published ones beyond `cache_bytes`.

use std::sync::atomic::Ordering;

use weft_index::RetentionPolicy;

use super::Shared;
use crate::clock::now_unix_nano;
use crate::storage::publisher::Job;

/// With object storage: hands partitions whose hour (and grace) is over to the publisher,
/// and deletes local copies of published ones beyond the cache size. Runs between
/// commits, when nothing is pending.
pub(super) fn seal_and_evict(shared: &Shared) {
    let Some(sealing) = &shared.config.sealing else {
        return;
    };
    let store = &shared.store;
    let sealed_before = now_unix_nano().saturating_sub(sealing.seal_interval.as_nanos() as u64);
    match store.seal(sealed_before, &sealing.staging) {
        Ok(snapshots) => {
            for snapshot in snapshots {
                tracing::debug!(dir = %snapshot.dir.display(), "partition sealed");
                let _ = sealing.jobs.send(Job::Sealed(snapshot));
            }
        }
        Err(error) => tracing::error!(%error, "sealing partitions failed; retried shortly"),
    }
    let storage = &shared.metrics.storage;
    match store.evict(sealing.cache_bytes) {
        Ok(evicted) => {
            storage
                .evictions
                .fetch_add(evicted.partitions as u64, Ordering::Relaxed);
            if evicted.partitions > 0 {
                tracing::info!(
                    partitions = evicted.partitions,
                    bytes = evicted.bytes,
                    "local copies of published partitions deleted (cache_bytes)"
                );
            }
        }
        Err(error) => tracing::error!(%error, "evicting partitions failed"),
    }
    storage
        .remote_partitions
        .store(store.remote_count() as u64, Ordering::Relaxed);
}

/// Deletes the partitions retention removes (by age, then by `max_disk_bytes`); with object
/// storage, their splits go to the publisher for deletion.
pub(super) fn apply_retention(shared: &Shared) {
    let config = &shared.config;
    let min_time = now_unix_nano().saturating_sub(config.retention.as_nanos() as u64);
    let policy = RetentionPolicy {
        min_time_unix_nano: min_time,
        max_disk_bytes: config.max_disk_bytes,
    };
    let metrics = &shared.metrics;
    match shared.store.apply_retention(&policy) {
        Ok(removed) => {
            metrics
                .partitions_deleted
                .fetch_add(removed.len() as u64, Ordering::Relaxed);
            let splits: Vec<String> = removed.into_iter().filter_map(|r| r.split_id).collect();
            if let Some(sealing) = &config.sealing
                && !splits.is_empty()
            {
                let _ = sealing.jobs.send(Job::Delete(splits));
            }
        }
        Err(error) => tracing::error!(%error, "retention failed"),
    }
    metrics
        .index_bytes
        .store(shared.store.disk_bytes(), Ordering::Relaxed);
}
