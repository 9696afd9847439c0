//! The life of a partition in object storage: sealed into a split and published, its local copy
//! evicted past `cache_bytes`, read in place (its hot cache opened with one ranged read) or
//! fetched back whole for late rows, and on a search node, the splits every node published
//! followed.

#[allow(unused_imports)]
use super::*;

/// Where partitions fetched back from object storage are unpacked before they move into place.
pub(super) const FETCH_DIR: &str = "fetching";

/// Remote partitions kept open for queries at once, and the memory their reads may hold
/// (hot caches and ranges read); past either, the least recently used are closed.
pub(super) const OPEN_REMOTE_MAX: usize = 256;

pub(super) const OPEN_REMOTE_BYTES: u64 = 256 << 20;

/// Where the trace filters of partitions kept only in object storage stay, one per split.
pub(super) const FILTER_DIR: &str = "filters";

/// A partition whose only copy is a published split.
#[derive(Clone, Debug)]
pub(super) struct RemoteSplit {
    pub(super) id: String,
    /// Which node's partition it is, for a search node following other nodes' splits.
    pub(super) origin: Option<SplitOrigin>,
    /// The WAL position its partition was committed through.
    pub(super) committed_lsn: u64,
    /// Documents in it.
    pub(super) docs: u64,
    /// Its trace filter on the local disk; without one, a trace lookup opens the split.
    pub(super) filter: Option<PathBuf>,
    /// The services with rows in it, when known: a query for other services skips it.
    pub(super) services: Option<Vec<String>>,
}

/// A remote partition open for reading in place.
pub(super) struct OpenRemote {
    pub(super) key: PartitionKey,
    pub(super) split_id: String,
    pub(super) partition: Arc<Partition>,
    pub(super) directory: SplitDirectory,
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
    pub(super) fn key(&self) -> PartitionKey {
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

impl Store {
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
    pub(super) fn remote_split(&self, split: &PublishedSplit) -> RemoteSplit {
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

    pub(super) fn filter_path(&self, split_id: &str) -> PathBuf {
        self.root
            .join(FILTER_DIR)
            .join(format!("{split_id}.filter"))
    }

    /// Links the trace filter of the partition in `dir` to where remote partitions keep
    /// theirs; `None` when the partition has none (sealed by a weft without filters).
    pub(super) fn keep_filter(
        &self,
        dir: &Path,
        split_id: &str,
    ) -> Result<Option<PathBuf>, IndexError> {
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

    pub(super) fn partition_dir(&self, key: PartitionKey) -> PathBuf {
        self.root
            .join(key.signal.dir_name())
            .join(partition::dir_name(key.start_ns, key.part))
    }

    /// Opens (or creates) the partition of `key` in its directory.
    pub(super) fn open_partition(&self, key: PartitionKey) -> Result<Arc<Partition>, IndexError> {
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
    pub(super) fn fetch_remote(
        &self,
        key: PartitionKey,
    ) -> Result<Option<Arc<Partition>>, IndexError> {
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

    /// What reads splits, or why there is nothing to.
    pub(super) fn fetcher_for(&self, split_id: &str) -> Result<Arc<dyn SplitFetcher>, IndexError> {
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

    pub(super) fn note_remote_read(&self, key: PartitionKey) {
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
    pub(super) fn forget_open_remote(&self, key: PartitionKey) {
        self.open_remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|o| o.key != key);
    }
}
