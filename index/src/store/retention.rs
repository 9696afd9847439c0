//! Retention: whole partitions deleted by age, then oldest first while the disk cap is
//! exceeded (the newest partition of each signal is always kept).

#[allow(unused_imports)]
use super::*;

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
}
