//! Which partitions a read opens: by time range, service and trace ID filter, local or remote,
//! newest first; and the [`Scope`] that leaves out what another node answered for.

#[allow(unused_imports)]
use super::*;

/// A partition of one node, as the nodes of a cluster name it to each other.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionRef {
    /// Which signal.
    pub signal: Signal,
    /// The start of its hour.
    pub start_unix_nano: u64,
    /// Which part of that hour.
    pub part: u32,
}

/// A partition of a named node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SplitOrigin {
    /// The node (`node_id`) that publishes it.
    pub node: String,
    /// Its partition there.
    pub partition: PartitionRef,
}

/// Which partitions a query reads.
#[derive(Clone, Debug, Default)]
pub enum Scope {
    /// All of them: one node on its own.
    #[default]
    All,
    /// Only local partitions holding rows not yet in a published split (or not yet known to
    /// be): what an ingest node answers a search node for.
    Unpublished,
    /// All but the followed splits of these partitions, whose nodes answered for them with
    /// their unpublished rows: a search node's own part of a query.
    Except(std::collections::HashSet<SplitOrigin>),
    /// Only these local partitions: [`Store::unpublished_scope`], fixed once for an answer
    /// that lists partitions several times, so that every listing is the same.
    Only(std::collections::HashSet<PartitionRef>),
}

/// Partitions a query walks, newest first: local ones held, remote ones opened (read in
/// place) only when reached, so that a query that stops early opens no more than it reads.
pub(crate) struct Partitions<'a> {
    pub(super) store: &'a Store,
    pub(super) listed: std::vec::IntoIter<(PartitionKey, Option<Arc<Partition>>)>,
}

/// How many remote partitions one query opens and reads at once. Each waits on object
/// storage most of the time, so a lookup that needs several remote hours takes about as long
/// as the slowest of them, not their sum.
pub(super) const REMOTE_READERS: usize = 8;

/// What reading the listed partition at an index gave: `None` when it was gone by then.
pub(super) type ReadOutcome<T> = (usize, Result<Option<T>, IndexError>);

impl<'a> Partitions<'a> {
    pub(super) fn empty(store: &'a Store) -> Self {
        Partitions {
            store,
            listed: Vec::new().into_iter(),
        }
    }

    /// The local partitions listed, as other nodes name them.
    pub(crate) fn local_refs(&self) -> Vec<PartitionRef> {
        self.listed
            .as_slice()
            .iter()
            .filter(|(_, local)| local.is_some())
            .map(|(key, _)| PartitionRef {
                signal: key.signal,
                start_unix_nano: key.start_ns,
                part: key.part,
            })
            .collect()
    }

    /// Whether the next partition listed has a copy on the local disk (opening it reads
    /// nothing from object storage).
    pub(crate) fn next_is_local(&self) -> bool {
        self.listed
            .as_slice()
            .first()
            .is_some_and(|(_, local)| local.is_some())
    }

    /// The hour of the next partition listed.
    pub(crate) fn next_hour(&self) -> Option<u64> {
        self.listed.as_slice().first().map(|(key, _)| key.start_ns)
    }

    /// Both lists, this one first.
    pub(crate) fn chain(self, other: Partitions<'a>) -> Partitions<'a> {
        let listed: Vec<_> = self.listed.chain(other.listed).collect();
        Partitions {
            store: self.store,
            listed: listed.into_iter(),
        }
    }

    /// `read` applied to every partition listed, in list order. Local partitions are read on
    /// the calling thread; remote ones are opened and read on up to [`REMOTE_READERS`]
    /// threads at once. For queries that read every partition they list (a trace lookup),
    /// not for those that stop early.
    pub(crate) fn read_all<T: Send>(
        self,
        read: impl Fn(&Partition) -> Result<T, IndexError> + Sync,
    ) -> Result<Vec<T>, IndexError> {
        let store = self.store;
        let listed: Vec<_> = self.listed.collect();
        let mut results: Vec<Option<T>> = Vec::with_capacity(listed.len());
        let mut remote = Vec::new();
        for (i, (key, local)) in listed.into_iter().enumerate() {
            results.push(None);
            match local {
                Some(partition) => results[i] = Some(read(&partition)?),
                None => remote.push((i, key)),
            }
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done: Mutex<Vec<ReadOutcome<T>>> = Mutex::new(Vec::new());
        let work = || {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, key)) = remote.get(n) else {
                    return;
                };
                let result = store
                    .partition_to_read(key)
                    .and_then(|p| p.map(|p| read(&p)).transpose());
                let failed = result.is_err();
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, result));
                if failed {
                    // The query fails anyway: leave the rest unread.
                    next.store(remote.len(), Ordering::Relaxed);
                }
            }
        };
        match remote.len() {
            0 => {}
            1 => work(),
            n => std::thread::scope(|scope| {
                for _ in 0..n.min(REMOTE_READERS) {
                    scope.spawn(work);
                }
            }),
        }
        for (i, result) in done.into_inner().unwrap_or_else(|p| p.into_inner()) {
            results[i] = result?;
        }
        Ok(results.into_iter().flatten().collect())
    }
}

impl Iterator for Partitions<'_> {
    type Item = Result<Arc<Partition>, IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, local) = self.listed.next()?;
            if let Some(p) = local {
                return Some(Ok(p));
            }
            // `None`: retention removed it since it was listed; it holds nothing to find.
            match self.store.partition_to_read(key) {
                Ok(Some(p)) => return Some(Ok(p)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The answer to a query that needs the remote partition `key` while object storage fails.
pub(super) fn unreadable(key: PartitionKey, reason: String) -> IndexError {
    IndexError::Remote(format!(
        "data of {} from {} is in object storage, which cannot be read now: {reason}",
        key.signal.dir_name(),
        partition::dir_name(key.start_ns, key.part)
    ))
}

impl Store {
    /// Every local partition holding rows not yet in a published split, as a scope fixed
    /// now ([`Scope::Only`]), and the list of them: what an ingest node reads and names
    /// when one answer lists partitions several times (per trace, per span kind).
    pub fn unpublished_scope(&self) -> (Scope, Vec<PartitionRef>) {
        let refs: Vec<PartitionRef> = self
            .partitions
            .read()
            .expect("lock poisoned")
            .iter()
            .filter(|(_, p)| !p.publication.is_clean())
            .map(|(key, _)| PartitionRef {
                signal: key.signal,
                start_unix_nano: key.start_ns,
                part: key.part,
            })
            .collect();
        (Scope::Only(refs.iter().cloned().collect()), refs)
    }

    /// The partition of `key` for a query: local, or read in place from its split. `None`
    /// when it is neither.
    pub(super) fn partition_to_read(
        &self,
        key: PartitionKey,
    ) -> Result<Option<Arc<Partition>>, IndexError> {
        let remote = {
            let map = self.partitions.read().expect("lock poisoned");
            if let Some(p) = map.get(&key) {
                return Ok(Some(p.clone()));
            }
            let remote = self.remote.read().expect("lock poisoned");
            match remote.get(&key) {
                Some(r) => r.clone(),
                None => return Ok(None),
            }
        };
        {
            let mut open = self.open_remote.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = open
                .iter()
                .position(|o| o.key == key && o.split_id == remote.id)
            {
                let entry = open.remove(i);
                let partition = entry.partition.clone();
                open.push(entry);
                self.note_remote_read(key);
                return Ok(Some(partition));
            }
        }
        let fetcher = self.fetcher_for(&remote.id)?;
        let opened = SplitDirectory::open(fetcher, &remote.id).and_then(|directory| {
            let partition =
                Partition::open_remote(key, &self.partition_dir(key), directory.clone())?;
            Ok((Arc::new(partition), directory))
        });
        let (partition, directory) = match opened {
            Ok(opened) => opened,
            Err(IndexError::Remote(reason)) => return Err(unreadable(key, reason)),
            Err(other) => return Err(other),
        };
        let mut open = self.open_remote.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|o| o.key != key);
        open.push(OpenRemote {
            key,
            split_id: remote.id,
            partition: partition.clone(),
            directory,
        });
        let mut held: u64 = open.iter().map(|o| o.directory.memory_bytes()).sum();
        while open.len() > 1 && (open.len() > OPEN_REMOTE_MAX || held > OPEN_REMOTE_BYTES) {
            held = held.saturating_sub(open.remove(0).directory.memory_bytes());
        }
        drop(open);
        self.note_remote_read(key);
        Ok(Some(partition))
    }

    /// Every partition of `signal` that may hold `trace_id`, newest first: all local ones, and
    /// those kept only in object storage whose trace filter (or lack of one) does not rule
    /// the trace out.
    pub(crate) fn partitions_for_trace(
        &self,
        signal: Signal,
        trace_id: &[u8],
        scope: &Scope,
    ) -> Result<Partitions<'_>, IndexError> {
        let all = PartitionKey::new(signal, 0, 0)..=PartitionKey::new(signal, u64::MAX, u32::MAX);
        self.partitions_in(all, scope, |remote| {
            remote
                .filter
                .as_deref()
                .is_none_or(|f| crate::trace_filter::may_contain(f, trace_id))
        })
    }

    /// The segments of `partition` (whose searcher is `searcher`) that may hold `trace_id`, by
    /// its trace filter: only a partition read in place from object storage is worth
    /// narrowing down (a local one is read from the disk, and a fetched one is searched
    /// whole). A filter naming segments the index does not have is of another version of the
    /// partition (one not packed yet): all of them, then.
    pub(crate) fn trace_segments(
        &self,
        partition: &Partition,
        searcher: &tantivy::Searcher,
        trace_id: &[u8],
    ) -> crate::trace_filter::TraceSegments {
        use crate::trace_filter::TraceSegments;
        if !partition.is_read_in_place() {
            return TraceSegments::All;
        }
        let filter = self
            .remote
            .read()
            .expect("lock poisoned")
            .get(&partition.key())
            .and_then(|remote| remote.filter.clone());
        let have = |id: &String| {
            searcher
                .segment_readers()
                .iter()
                .any(|s| s.segment_id().uuid_string() == *id)
        };
        match filter.map(|path| crate::trace_filter::segments_holding(&path, trace_id)) {
            Some(TraceSegments::Some(named)) if !named.iter().all(have) => TraceSegments::All,
            Some(found) => found,
            None => TraceSegments::All,
        }
    }

    /// Partitions of `signal` overlapping `[start, end)`, newest first. Partitions kept only
    /// in object storage are opened as the caller reaches them; when that fails, so does
    /// the query, with [`IndexError::Remote`].
    pub(crate) fn partitions_overlapping(
        &self,
        signal: Signal,
        start: u64,
        end: u64,
    ) -> Result<Partitions<'_>, IndexError> {
        self.partitions_matching(signal, start, end, None)
    }

    /// [`Store::partitions_overlapping`] without the remote partitions `query` cannot match
    /// because it asks for services they have no rows of.
    pub(crate) fn partitions_matching(
        &self,
        signal: Signal,
        start: u64,
        end: u64,
        query: Option<&crate::query::Expr>,
    ) -> Result<Partitions<'_>, IndexError> {
        self.partitions_matching_in(signal, start, end, query, &Scope::All)
    }

    /// [`Store::partitions_matching`] among the partitions `scope` reads.
    pub(crate) fn partitions_matching_in(
        &self,
        signal: Signal,
        start: u64,
        end: u64,
        query: Option<&crate::query::Expr>,
        scope: &Scope,
    ) -> Result<Partitions<'_>, IndexError> {
        if end == 0 {
            return Ok(Partitions::empty(self));
        }
        let hours = PartitionKey::new(signal, partition_start(start), 0)
            ..=PartitionKey::new(signal, end - 1, u32::MAX);
        self.partitions_in(hours, scope, |remote| match (query, &remote.services) {
            (Some(query), Some(services)) => crate::query::may_match_services(query, services),
            _ => true,
        })
    }

    /// The partitions with keys in `keys` that `scope` reads, newest first: the local ones,
    /// and the remote ones `wanted` keeps, opened as the caller reaches them. Both maps are read under the
    /// partitions lock (which eviction and fetching hold while moving a key between them),
    /// so no partition is missed while it moves; the list holds each local partition it
    /// names, even one evicted meanwhile.
    pub(super) fn partitions_in(
        &self,
        keys: std::ops::RangeInclusive<PartitionKey>,
        scope: &Scope,
        wanted: impl Fn(&RemoteSplit) -> bool,
    ) -> Result<Partitions<'_>, IndexError> {
        let in_scope = |remote: &RemoteSplit| match scope {
            Scope::All => true,
            Scope::Unpublished | Scope::Only(_) => false,
            Scope::Except(answered) => remote.origin.as_ref().is_none_or(|o| !answered.contains(o)),
        };
        let local_in_scope = |key: &PartitionKey, p: &Partition| match scope {
            Scope::All | Scope::Except(_) => true,
            Scope::Unpublished => !p.publication.is_clean(),
            Scope::Only(refs) => refs.contains(&PartitionRef {
                signal: key.signal,
                start_unix_nano: key.start_ns,
                part: key.part,
            }),
        };
        if keys.start() > keys.end() {
            return Ok(Partitions::empty(self));
        }
        let mut listed: Vec<(PartitionKey, Option<Arc<Partition>>)> = {
            let map = self.partitions.read().expect("lock poisoned");
            let remote = self.remote.read().expect("lock poisoned");
            map.range(keys.clone())
                .filter(|(k, p)| local_in_scope(k, p))
                .map(|(k, p)| (*k, Some(p.clone())))
                .chain(
                    remote
                        .range(keys)
                        .filter(|(k, r)| !map.contains_key(k) && in_scope(r) && wanted(r))
                        .map(|(k, _)| (*k, None)),
                )
                .collect()
        };
        listed.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
        Ok(Partitions {
            store: self,
            listed: listed.into_iter(),
        })
    }
}
