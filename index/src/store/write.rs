//! Adding rows to the partition of their hour, committing, and rolling back after a failure;
//! the checkpoint (the WAL position replay starts from) moves only over committed rows.

#[allow(unused_imports)]
use super::*;

/// File under the data root holding the checkpoint as a decimal WAL position.
pub(super) const CHECKPOINT_FILE: &str = "checkpoint";

/// Commit rounds a writer may stay idle before it is closed.
pub(super) const IDLE_WRITER_ROUNDS: u32 = 120;

/// Positions in a batch of the rows bound for one partition.
#[derive(Default)]
pub(super) struct PartitionRows {
    pub(super) logs: Vec<usize>,
    pub(super) spans: Vec<usize>,
}

/// What one commit round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Partitions committed.
    pub partitions: usize,
    /// Documents made searchable.
    pub documents: usize,
}

pub(super) fn read_checkpoint(path: &Path) -> Result<u64, IndexError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            IndexError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a WAL position", path.display()),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the checkpoint atomically: write a temporary file, fsync, rename, fsync the dir.
pub(super) fn write_checkpoint(
    root: &Path,
    lsn: u64,
    faults: Option<&Faults>,
) -> Result<(), IndexError> {
    let tmp = root.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    let text = lsn.to_string();
    match faults {
        Some(faults) => faults.write_all(&mut file, text.as_bytes())?,
        None => file.write_all(text.as_bytes())?,
    }
    file.sync_all()?;
    std::fs::rename(&tmp, root.join(CHECKPOINT_FILE))?;
    std::fs::File::open(root)?.sync_all()?;
    Ok(())
}

impl Store {
    /// Indexes the rows of the WAL entry that spans `[lsn_start, lsn_end)`. Rows of an hour
    /// whose partitions already committed past `lsn_start` are skipped: they are in one of
    /// them already.
    /// A writer closed to make room for another is committed through `lsn_end`.
    /// Returns how many rows were added. The rows are encoded as the WAL holds them (packed).
    pub fn index_batch(
        &self,
        lsn_start: u64,
        lsn_end: u64,
        batch: &RowBatch,
    ) -> Result<usize, IndexError> {
        let payload = batch.clone().encode_packed();
        self.index_encoded_batch(lsn_start, lsn_end, batch, &payload)
    }

    /// [`Store::index_batch`] for a batch whose encoding is at hand: the WAL entry, packed
    /// ([`RowBatch::encode_packed`]) or not, and `batch` the rows it decodes to. Each row's
    /// stored part is sliced from `payload` rather than encoded again, its origin taken from
    /// the entry's origins when it names one (a format 1 partition, which stores whole rows,
    /// encodes a packed row again).
    pub fn index_encoded_batch(
        &self,
        lsn_start: u64,
        lsn_end: u64,
        batch: &RowBatch,
        payload: &[u8],
    ) -> Result<usize, IndexError> {
        debug_assert!(lsn_start < lsn_end, "an entry has a length");
        let sources = batch
            .row_encodings(payload)
            .ok_or(IndexError::BatchEncoding)?;
        // Rows first go to their hour, then to its partition; documents are built for the
        // partition's format.
        let mut by_partition: BTreeMap<PartitionKey, PartitionRows> = BTreeMap::new();
        for (i, row) in batch.logs.iter().enumerate() {
            by_partition
                .entry(PartitionKey::hour(
                    Signal::Logs,
                    partition_start(row.time_unix_nano),
                ))
                .or_default()
                .logs
                .push(i);
        }
        for (i, row) in batch.spans.iter().enumerate() {
            by_partition
                .entry(PartitionKey::hour(
                    Signal::Spans,
                    partition_start(row.start_time_unix_nano),
                ))
                .or_default()
                .spans
                .push(i);
        }
        let mut groups = Vec::with_capacity(by_partition.len());
        for (hour, rows) in by_partition {
            let (partition, committed_lsn) = self.part_for_write(hour, lsn_start)?;
            if committed_lsn > lsn_start {
                continue;
            }
            partition.publication.note_rows_from(lsn_start);
            if !rows.spans.is_empty() {
                let mut tracker = self.tracker();
                let mut calls = Vec::new();
                for &i in &rows.spans {
                    tracker.observe(&batch.spans[i], &mut calls);
                }
                drop(tracker);
                partition.record_calls(&calls);
                if !calls.is_empty() {
                    let mut clock = self.clock();
                    for call in &calls {
                        if let Some(delta) = call.clock_delta_ns {
                            clock.observe_call(&call.parent, &call.child, delta);
                        }
                    }
                }
            }
            if !rows.logs.is_empty() {
                let mut clock = self.clock();
                for &i in &rows.logs {
                    let log = &batch.logs[i];
                    clock.observe_log(
                        &log.service,
                        log.time_unix_nano,
                        log.observed_time_unix_nano,
                    );
                }
            }
            let format = partition.format;
            let mut docs = Vec::with_capacity(rows.logs.len() + rows.spans.len());
            docs.extend(rows.logs.into_iter().map(|i| {
                log_fields().document(
                    &batch.logs[i],
                    sources.logs[i],
                    &sources.log_origins,
                    format,
                )
            }));
            docs.extend(rows.spans.into_iter().map(|i| {
                span_fields().document(
                    &batch.spans[i],
                    sources.spans[i],
                    &sources.span_origins,
                    format,
                )
            }));
            groups.push((partition, docs));
        }
        // Partitions whose writer is open go first, so that when one more writer is needed,
        // every open writer has taken all of this entry's rows (or has none of them) and may
        // be committed through the entry's end and closed.
        groups.sort_by_key(|(p, _)| !p.has_writer());
        let mut added = 0;
        for i in 0..groups.len() {
            let opens_a_writer = !groups[i].0.has_writer();
            if opens_a_writer {
                let still_needed: Vec<Arc<Partition>> =
                    groups[i..].iter().map(|(p, _)| p.clone()).collect();
                self.make_room_for_writer(&still_needed, lsn_end)?;
            }
            let docs = std::mem::take(&mut groups[i].1);
            added += groups[i].0.add_documents(docs.into_iter())?;
            if opens_a_writer {
                self.peak_open_writers
                    .fetch_max(self.open_writers(), Ordering::Relaxed);
            }
        }
        Ok(added)
    }

    /// Closes writers until one more may open, committing what they hold through `lsn` (the
    /// end of the entry being indexed). Writers of `still_needed` partitions are kept.
    pub(super) fn make_room_for_writer(
        &self,
        still_needed: &[Arc<Partition>],
        lsn: u64,
    ) -> Result<(), IndexError> {
        let open: Vec<Arc<Partition>> = self
            .all_partitions()
            .into_iter()
            .filter(|p| p.has_writer())
            .collect();
        if open.len() < self.options.max_open_writers {
            return Ok(());
        }
        let mut candidates: Vec<Arc<Partition>> = open
            .into_iter()
            .filter(|p| !still_needed.iter().any(|n| Arc::ptr_eq(n, p)))
            .collect();
        // Idle writers first (nothing to commit), then the oldest partitions.
        candidates.sort_by_key(|p| (p.uncommitted_docs() > 0, p.start_ns));
        let excess = self.open_writers() + 1 - self.options.max_open_writers;
        for partition in candidates.into_iter().take(excess) {
            let committed = partition.commit(lsn)?;
            partition.close_writer();
            tracing::debug!(
                signal = partition.signal.dir_name(),
                start_unix_nano = partition.start_ns,
                committed,
                "partition writer closed to stay within the open-writer limit"
            );
        }
        Ok(())
    }

    /// The most partition writers open at once since the store was opened.
    pub fn peak_open_writers(&self) -> usize {
        self.peak_open_writers.load(Ordering::Relaxed)
    }

    /// Partition writers open now.
    pub fn open_writers(&self) -> usize {
        self.all_partitions()
            .iter()
            .filter(|p| p.has_writer())
            .count()
    }

    /// Discards every uncommitted document and closes every writer: each partition is back at
    /// its last commit. Call it after a failure, then add the rows since [`Store::checkpoint`]
    /// again.
    pub fn rollback(&self) {
        for partition in self.all_partitions() {
            partition.rollback();
        }
        self.tracker().reset();
    }

    /// The partition the rows of `hour` (part 0 of it) from the entry at `lsn_start` go to,
    /// and the WAL position through which that hour is committed: its newest part, or a
    /// new part once that one is full ([`StoreOptions::seal_docs`]).
    ///
    /// Parts fill one after the other: a full part is committed through `lsn_start` before
    /// the next one takes rows, and never takes rows again. So every row of the hour from
    /// an entry before the greatest position any of its parts committed through is in one
    /// of them, which is what replay skips by.
    pub(super) fn part_for_write(
        &self,
        hour: PartitionKey,
        lsn_start: u64,
    ) -> Result<(Arc<Partition>, u64), IndexError> {
        let parts = PartitionKey::new(hour.signal, hour.start_ns, 0)
            ..=PartitionKey::new(hour.signal, hour.start_ns, u32::MAX);
        // The newest part: (part, documents, its local copy).
        let mut newest: Option<(u32, u64, Option<Arc<Partition>>)> = None;
        let mut committed_lsn = 0;
        {
            let map = self.partitions.read().expect("lock poisoned");
            let remote = self.remote.read().expect("lock poisoned");
            for (key, p) in map.range(parts.clone()) {
                committed_lsn = committed_lsn.max(p.committed_lsn());
                if newest.as_ref().is_none_or(|(part, _, _)| key.part > *part) {
                    let docs = match self.options.seal_docs {
                        Some(_) => p.num_docs() + p.uncommitted_docs() as u64,
                        None => 0,
                    };
                    newest = Some((key.part, docs, Some(p.clone())));
                }
            }
            for (key, r) in remote.range(parts) {
                committed_lsn = committed_lsn.max(r.committed_lsn);
                if newest.as_ref().is_none_or(|(part, _, _)| key.part > *part) {
                    newest = Some((key.part, r.docs, None));
                }
            }
        }
        let full = |docs: u64| self.options.seal_docs.is_some_and(|max| docs >= max);
        let key = match newest {
            None => hour,
            Some((part, docs, local)) if full(docs) => {
                if let Some(full_part) = local {
                    // Through the entry before this one: the rows of this hour from here on
                    // are the next part's.
                    full_part.commit(lsn_start)?;
                }
                PartitionKey {
                    part: part.saturating_add(1),
                    ..hour
                }
            }
            Some((part, _, _)) => PartitionKey { part, ..hour },
        };
        Ok((self.partition_for_write(key)?, committed_lsn))
    }

    pub(super) fn partition_for_write(
        &self,
        key: PartitionKey,
    ) -> Result<Arc<Partition>, IndexError> {
        if let Some(p) = self.partitions.read().expect("lock poisoned").get(&key) {
            return Ok(p.clone());
        }
        // A late row for an hour kept only in object storage: fetch it back and add to it;
        // its next split replaces the published one.
        if let Some(p) = self.fetch_remote(key)? {
            return Ok(p);
        }
        let partition = self.open_partition(key)?;
        self.partitions
            .write()
            .expect("lock poisoned")
            .insert(key, partition.clone());
        Ok(partition)
    }

    /// Commits every partition with pending rows, recording `lsn` (the end of the last WAL entry
    /// indexed) in each, then durably advances the checkpoint to `lsn`.
    pub fn commit(&self, lsn: u64) -> Result<CommitStats, IndexError> {
        let started = Instant::now();
        let mut stats = CommitStats::default();
        for partition in self.all_partitions() {
            let committed = partition.commit(lsn)?;
            if committed > 0 {
                stats.partitions += 1;
                stats.documents += committed;
            }
            partition.close_writer_if_idle(IDLE_WRITER_ROUNDS);
        }
        if lsn > self.checkpoint() {
            write_checkpoint(&self.root, lsn, self.options.faults.as_deref())?;
            self.checkpoint.store(lsn, Ordering::Release);
        }
        if stats.documents > 0 {
            tracing::debug!(
                partitions = stats.partitions,
                documents = stats.documents,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "index committed"
            );
        }
        Ok(stats)
    }
}
