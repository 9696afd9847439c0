//! Sealed partitions as splits: sealing, packing, publishing, eviction from the local disk,
//! reading in place for a query, fetching back for a late row, replacement, and what a failed
//! read does. Object
//! storage is stood in for by a directory of split files, behind the same `SplitFetcher` the
//! server uses.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use weft_index::query::parse;
use weft_index::store::{PublishedSplit, SealedSnapshot, SplitFetcher};
use weft_index::{
    IndexError, LogRow, LogSearch, PARTITION_NANOS, RetentionPolicy, RowBatch, Signal, SpanRow,
    Store, StoreOptions, TraceSearch, split,
};

const HOUR: u64 = PARTITION_NANOS;
const BASE: u64 = 1_800_000_000 * 1_000_000_000 / HOUR * HOUR;

fn log(time: u64, body: &str, trace: u8) -> LogRow {
    LogRow {
        time_unix_nano: time,
        service: "svc".into(),
        severity_number: 9,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        trace_id: vec![trace; 16],
        ..Default::default()
    }
}

fn span(start: u64, trace: u8, id: u8) -> SpanRow {
    SpanRow {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: format!("op{id}"),
        service: "svc".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1000,
        ..Default::default()
    }
}

fn bodies(store: &Store, q: &str) -> Result<Vec<String>, IndexError> {
    Ok(store
        .search_logs(&LogSearch {
            query: parse(q).expect("query parses"),
            start_unix_nano: 0,
            end_unix_nano: u64::MAX,
            limit: 100,
            cursor: None,
        })?
        .logs
        .iter()
        .map(LogRow::body_text)
        .collect())
}

/// A directory of split files standing in for a bucket; it can be made unreachable.
struct Bucket {
    dir: PathBuf,
    down: AtomicBool,
    /// Only ranged reads fail: a split already open cannot read more of itself.
    ranges_down: AtomicBool,
    /// Whole splits downloaded.
    fetches: AtomicUsize,
    /// Splits opened in place (one read of the end each).
    tails: AtomicUsize,
    /// Ranged reads after opening, and their bytes.
    ranges: AtomicUsize,
    range_bytes: AtomicU64,
    /// Every ranged read, in order.
    requested: Mutex<Vec<std::ops::Range<u64>>>,
}

impl Bucket {
    /// An empty bucket in `dir/bucket`, reachable.
    fn new(dir: &Path) -> Arc<Bucket> {
        let bucket = Bucket {
            dir: dir.join("bucket"),
            down: AtomicBool::new(false),
            ranges_down: AtomicBool::new(false),
            fetches: AtomicUsize::new(0),
            tails: AtomicUsize::new(0),
            ranges: AtomicUsize::new(0),
            range_bytes: AtomicU64::new(0),
            requested: Mutex::new(Vec::new()),
        };
        std::fs::create_dir_all(&bucket.dir).expect("bucket dir");
        Arc::new(bucket)
    }

    /// Packs `snapshot` into the bucket under its directory's name, which it returns.
    fn put(&self, snapshot: &SealedSnapshot) -> String {
        self.put_prefixed(snapshot, "")
    }

    /// [`Bucket::put`], the name starting with `prefix`.
    fn put_prefixed(&self, snapshot: &SealedSnapshot, prefix: &str) -> String {
        let name = snapshot
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("snapshot dirs are named");
        let id = format!("{prefix}{name}");
        split::pack(&snapshot.dir, &self.dir.join(format!("{id}.split"))).expect("packs");
        std::fs::remove_dir_all(&snapshot.dir).expect("snapshot removed");
        id
    }
}

impl SplitFetcher for Bucket {
    fn fetch(&self, id: &str, dest: &Path) -> Result<(), String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        std::fs::copy(self.dir.join(format!("{id}.split")), dest)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn read_range(&self, id: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, String> {
        if self.down.load(Ordering::SeqCst) || self.ranges_down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        self.ranges.fetch_add(1, Ordering::SeqCst);
        self.range_bytes
            .fetch_add(range.end - range.start, Ordering::SeqCst);
        self.requested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(range.clone());
        let bytes =
            std::fs::read(self.dir.join(format!("{id}.split"))).map_err(|e| e.to_string())?;
        bytes
            .get(range.start as usize..range.end as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "range not satisfiable".to_string())
    }

    fn read_tail(&self, id: &str, len: u64) -> Result<(Vec<u8>, u64), String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        self.tails.fetch_add(1, Ordering::SeqCst);
        let bytes =
            std::fs::read(self.dir.join(format!("{id}.split"))).map_err(|e| e.to_string())?;
        let start = bytes.len().saturating_sub(len as usize);
        Ok((bytes[start..].to_vec(), bytes.len() as u64))
    }
}

/// Seals every partition whose hour ended before `sealed_before`, packs each into `bucket` and
/// marks it published, as weft's publisher does; returns what the metastore would list.
fn publish_all(
    store: &Store,
    bucket: &Bucket,
    sealed_before: u64,
    staging: &Path,
) -> Vec<PublishedSplit> {
    publish_all_prefixed(store, bucket, sealed_before, staging, "")
}

/// [`publish_all`], each split's ID starting with `prefix` (as weft's publisher makes every
/// node's IDs its own, with random bits).
fn publish_all_prefixed(
    store: &Store,
    bucket: &Bucket,
    sealed_before: u64,
    staging: &Path,
    prefix: &str,
) -> Vec<PublishedSplit> {
    let mut published = Vec::new();
    for snapshot in store.seal(sealed_before, staging).expect("sealed") {
        let id = bucket.put_prefixed(&snapshot, prefix);
        store.mark_published(&snapshot, &id);
        published.push(PublishedSplit {
            id,
            signal: snapshot.signal,
            start_unix_nano: snapshot.start_unix_nano,
            part: snapshot.part,
            committed_lsn: snapshot.committed_lsn,
            docs: snapshot.docs,
            node: None,
            services: Some(snapshot.services),
        });
    }
    published
}

/// One log record, "row", in each of the first `hours` hours, committed.
fn one_row_per_hour(store: &Store, hours: u64) {
    let batch = RowBatch {
        logs: (0..hours)
            .map(|hour| log(BASE + hour * HOUR, "row", hour as u8 + 1))
            .collect(),
        spans: vec![],
    };
    store.index_batch(0, 10, &batch).expect("indexed");
    store.commit(10).expect("committed");
}

/// A random-looking 16-byte trace ID, the `i`-th.
fn trace_id(i: u64) -> Vec<u8> {
    let hi = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    [hi.to_be_bytes(), i.to_be_bytes()].concat()
}

/// A temporary directory, an empty bucket in it, and a store under it that reads the bucket.
fn remote_store() -> (tempfile::TempDir, Arc<Bucket>, Store) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bucket = Bucket::new(tmp.path());
    let store = open(&tmp.path().join("index"));
    store.set_fetcher(bucket.clone());
    (tmp, bucket, store)
}

fn open(root: &Path) -> Store {
    open_sealing_at(root, None)
}

/// A store with object storage, whose partitions are full at `seal_docs` rows.
fn open_sealing_at(root: &Path, seal_docs: Option<u64>) -> Store {
    Store::open_with(
        root,
        StoreOptions {
            object_storage: true,
            seal_docs,
            ..StoreOptions::default()
        },
    )
    .expect("store opens")
}

#[test]
fn a_sealed_partition_is_published_evicted_fetched_back_and_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("index");
    let staging = tmp.path().join("staging");
    let bucket = Bucket::new(tmp.path());
    let store = open(&root);
    store.set_fetcher(bucket.clone());

    // An old hour of logs and spans, and a row of the current hour.
    let old = RowBatch {
        logs: vec![
            log(BASE + 10, "alpha old", 1),
            log(BASE + 20, "beta old", 2),
        ],
        spans: vec![span(BASE + 10, 1, 1)],
    };
    store.index_batch(0, 10, &old).expect("indexed");
    let new = RowBatch {
        logs: vec![log(BASE + 2 * HOUR, "alpha new", 3)],
        spans: vec![],
    };
    store.index_batch(10, 20, &new).expect("indexed");
    store.commit(20).expect("committed");
    assert_eq!(store.checkpoint(), 20);
    assert_eq!(store.wal_floor(), 0, "nothing is published yet");

    // Sealing takes the old hour's partitions only (the new one's hour is still open).
    let sealed = store.seal(BASE + HOUR, &staging).expect("sealed");
    assert_eq!(sealed.len(), 2, "{sealed:?}");
    assert!(
        sealed
            .iter()
            .all(|s| s.start_unix_nano == BASE && s.replaces.is_none())
    );
    assert_eq!(
        store.seal(BASE + HOUR, &staging).expect("sealed").len(),
        0,
        "a snapshot in flight is not taken again"
    );
    let mut ids = Vec::new();
    for snapshot in &sealed {
        let id = bucket.put(snapshot);
        store.mark_published(snapshot, &id);
        ids.push((snapshot.signal, id));
    }
    assert_eq!(
        store.wal_floor(),
        10,
        "the WAL is kept from the unpublished partition's first row"
    );

    // Evicting everything beyond 0 bytes deletes only published copies.
    let evicted = store.evict(0).expect("evicted");
    assert_eq!(evicted.partitions, 2);
    assert_eq!(store.remote_count(), 2);
    assert_eq!(store.partition_count(Signal::Logs), 1);

    // While storage is away, a query that needs the old hour is refused, and says why; one
    // over local data alone is answered.
    bucket.down.store(true, Ordering::SeqCst);
    match bodies(&store, "alpha") {
        Err(IndexError::Remote(reason)) => {
            assert!(reason.contains("connection refused"), "{reason}")
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    let local_only = store
        .search_logs(&LogSearch {
            query: parse("alpha").expect("parses"),
            start_unix_nano: BASE + 2 * HOUR,
            end_unix_nano: BASE + 3 * HOUR,
            limit: 10,
            cursor: None,
        })
        .expect("local data is served");
    assert_eq!(local_only.logs.len(), 1);

    // Back: the split is read in place, opened with one read, and answers exactly as before;
    // nothing is downloaded whole and the partition stays remote.
    bucket.down.store(false, Ordering::SeqCst);
    assert_eq!(
        bodies(&store, "alpha").expect("searched"),
        ["alpha new", "alpha old"]
    );
    assert_eq!(bucket.tails.load(Ordering::SeqCst), 1);
    let trace = store.trace(&[1; 16], 100, 100).expect("trace");
    assert_eq!((trace.spans.len(), trace.logs.len()), (1, 1));
    assert_eq!(bucket.tails.load(Ordering::SeqCst), 2, "the span split too");
    assert_eq!(bucket.fetches.load(Ordering::SeqCst), 0);
    assert_eq!(store.remote_count(), 2);
    // Open splits are kept: asking again reads nothing more.
    let reads = bucket.ranges.load(Ordering::SeqCst);
    assert_eq!(bodies(&store, "alpha").expect("searched").len(), 2);
    assert_eq!(bucket.tails.load(Ordering::SeqCst), 2);
    assert_eq!(bucket.ranges.load(Ordering::SeqCst), reads);

    // A late row for the sealed hour: the split is downloaded whole, the row added, and the
    // partition sealed again as a split replacing the first.
    let late = RowBatch {
        logs: vec![log(BASE + 30, "alpha late", 4)],
        spans: vec![],
    };
    store.index_batch(20, 30, &late).expect("late row indexed");
    assert_eq!(bucket.fetches.load(Ordering::SeqCst), 1);
    store.commit(30).expect("committed");
    let resealed = store.seal(BASE + HOUR, &staging).expect("sealed");
    assert_eq!(resealed.len(), 1);
    let logs_id = &ids
        .iter()
        .find(|(s, _)| *s == Signal::Logs)
        .expect("logs")
        .1;
    assert_eq!(resealed[0].replaces.as_deref(), Some(logs_id.as_str()));
    assert_eq!(resealed[0].docs, 3);
    let replacement = bucket.put(&resealed[0]);
    assert_ne!(&replacement, logs_id);
    store.mark_published(&resealed[0], &replacement);

    // After a restart, what the metastore lists as published is adopted: equal local copies
    // are clean, missing ones are served from the bucket.
    drop(store);
    let spans_id = ids
        .iter()
        .find(|(s, _)| *s == Signal::Spans)
        .expect("spans")
        .1
        .clone();
    let store = open(&root);
    store.set_fetcher(bucket.clone());
    store
        .adopt_published(&[
            PublishedSplit {
                id: replacement.clone(),
                signal: Signal::Logs,
                start_unix_nano: BASE,
                part: 0,
                committed_lsn: 30,
                docs: 0,
                node: None,
                services: None,
            },
            PublishedSplit {
                id: spans_id,
                signal: Signal::Spans,
                start_unix_nano: BASE,
                part: 0,
                committed_lsn: 20,
                docs: 0,
                node: None,
                services: None,
            },
        ])
        .expect("adopted");
    assert_eq!(
        store.seal(BASE + HOUR, &staging).expect("sealed").len(),
        0,
        "nothing to upload again"
    );
    assert_eq!(
        bodies(&store, "alpha").expect("searched"),
        ["alpha new", "alpha late", "alpha old"]
    );

    // Retention reports the published splits it removes, local or remote.
    store.evict(0).expect("evicted");
    let removed = store
        .apply_retention(&RetentionPolicy {
            min_time_unix_nano: BASE + HOUR,
            max_disk_bytes: None,
        })
        .expect("retention");
    let mut split_ids: Vec<String> = removed.into_iter().filter_map(|r| r.split_id).collect();
    split_ids.sort();
    let mut expected = vec![replacement, ids[1].1.clone()];
    expected.sort();
    assert_eq!(split_ids, expected);
    assert_eq!(store.remote_count(), 0);
}

#[test]
fn a_damaged_split_is_refused_and_the_query_fails_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("index");
    let bucket = Bucket::new(tmp.path());
    std::fs::write(bucket.dir.join("logs-x.split"), b"not a split at all").expect("written");
    let store = open(&root);
    store.set_fetcher(bucket.clone());
    store
        .adopt_published(&[PublishedSplit {
            id: "logs-x".into(),
            signal: Signal::Logs,
            start_unix_nano: BASE,
            part: 0,
            committed_lsn: 5,
            docs: 0,
            node: None,
            services: None,
        }])
        .expect("adopted");
    assert!(matches!(
        bodies(&store, "alpha"),
        Err(IndexError::Split { .. })
    ));
    assert_eq!(store.remote_count(), 1, "still remote, to be tried again");
    let local = std::fs::read_dir(root.join("logs"))
        .expect("logs dir")
        .count();
    assert_eq!(local, 0, "no partial partition is left behind");
}

#[test]
fn a_trace_lookup_fetches_only_the_splits_whose_filter_may_hold_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("index");
    let staging = tmp.path().join("staging");
    let bucket = Bucket::new(tmp.path());
    let store = open(&root);
    store.set_fetcher(bucket.clone());
    // Three hours of logs and spans; hour h holds traces 10h..10h+9.
    for hour in 0..3u64 {
        let batch = RowBatch {
            logs: (0..10)
                .map(|i| log(BASE + hour * HOUR + i, "row", (10 * hour + i) as u8 + 1))
                .collect(),
            spans: (0..10)
                .map(|i| span(BASE + hour * HOUR + i, (10 * hour + i) as u8 + 1, 1))
                .collect(),
        };
        store
            .index_batch(hour * 10, hour * 10 + 10, &batch)
            .expect("indexed");
    }
    store.commit(30).expect("committed");
    publish_all(&store, &bucket, BASE + 3 * HOUR, &staging);
    assert_eq!(store.evict(0).expect("evicted").partitions, 6);

    // Trace 15 is in the second hour only: one split of each signal is opened.
    let trace = store.trace(&[15; 16], 100, 100).expect("trace");
    assert_eq!((trace.spans.len(), trace.logs.len()), (1, 1));
    assert_eq!(bucket.tails.load(Ordering::SeqCst), 2);
    assert_eq!(bucket.fetches.load(Ordering::SeqCst), 0);

    // A trace no hour holds opens nothing.
    let none = store.trace(&[200; 16], 100, 100).expect("trace");
    assert!(none.spans.is_empty() && none.logs.is_empty());
    assert_eq!(bucket.tails.load(Ordering::SeqCst), 2);

    // After a restart the filters kept on disk still rule splits out.
    drop(store);
    let store = open(&root);
    store.set_fetcher(bucket.clone());
    let mut published = Vec::new();
    for entry in std::fs::read_dir(&bucket.dir).expect("bucket") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let id = name.trim_end_matches(".split").to_string();
        let signal = if id.starts_with("logs") {
            Signal::Logs
        } else {
            Signal::Spans
        };
        let hour = ["T08", "T09", "T10"]
            .iter()
            .position(|h| id.contains(h))
            .expect("an hour of the three") as u64;
        published.push(PublishedSplit {
            id,
            signal,
            start_unix_nano: BASE + hour * HOUR,
            part: 0,
            committed_lsn: 30,
            docs: 0,
            node: None,
            services: None,
        });
    }
    store.adopt_published(&published).expect("adopted");
    let trace = store.trace(&[25; 16], 100, 100).expect("trace");
    assert_eq!((trace.spans.len(), trace.logs.len()), (1, 1));
    assert_eq!(bucket.tails.load(Ordering::SeqCst), 4);
}

#[test]
fn a_partition_is_sealed_only_once_no_rows_arrive_for_the_grace_period() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(&tmp.path().join("index"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64;
    let three_hours_ago = now - 3 * HOUR;
    let batch = RowBatch {
        logs: vec![log(three_hours_ago, "late", 1)],
        spans: vec![],
    };
    store.index_batch(0, 10, &batch).expect("indexed");
    store.commit(10).expect("committed");
    let staging = tmp.path().join("staging");
    // Its hour is long over, but a row came just now: a minute's grace is not over yet.
    let a_minute_ago = now - 60 * 1_000_000_000;
    assert!(
        store
            .seal(a_minute_ago, &staging)
            .expect("sealed")
            .is_empty()
    );
    // Once the grace has passed with no new row, it is sealed.
    let later = now + 2 * HOUR;
    assert_eq!(store.seal(later, &staging).expect("sealed").len(), 1);
}

/// A fetcher that evicts every published local copy while it reads, as the indexer's
/// eviction may at any moment of a query.
struct EvictingBucket {
    bucket: Arc<Bucket>,
    store: std::sync::Mutex<std::sync::Weak<Store>>,
}

impl EvictingBucket {
    fn evict(&self) -> Result<(), String> {
        if let Some(store) = self.store.lock().expect("lock").upgrade() {
            store.evict(0).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl SplitFetcher for EvictingBucket {
    fn fetch(&self, id: &str, dest: &Path) -> Result<(), String> {
        self.evict()?;
        self.bucket.fetch(id, dest)
    }

    fn read_range(&self, id: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, String> {
        self.evict()?;
        self.bucket.read_range(id, range)
    }

    fn read_tail(&self, id: &str, len: u64) -> Result<(Vec<u8>, u64), String> {
        self.evict()?;
        self.bucket.read_tail(id, len)
    }
}

/// Regression: a query over several evicted hours listed the partitions after fetching them,
/// by which time eviction had taken the first ones away again; their rows were silently
/// missing from the answer.
#[test]
fn a_query_keeps_every_partition_it_fetched_while_eviction_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("index");
    let bucket = Bucket::new(tmp.path());
    let store = Arc::new(open(&root));
    let fetcher = Arc::new(EvictingBucket {
        bucket: bucket.clone(),
        store: std::sync::Mutex::new(Arc::downgrade(&store)),
    });
    store.set_fetcher(fetcher);
    one_row_per_hour(&store, 4);
    publish_all(
        &store,
        &bucket,
        BASE + 4 * HOUR,
        &tmp.path().join("staging"),
    );
    assert_eq!(store.evict(0).expect("evicted").partitions, 4);
    assert_eq!(bodies(&store, "row").expect("searched").len(), 4);
    assert_eq!(bucket.tails.load(Ordering::SeqCst), 4);
}

/// A remote split is opened with one read (its end: footer and hot cache), and a trace lookup
/// reads a small part of it. Object storage going away after the split is open fails the
/// next query that needs more of it as storage unavailable, not as damage.
#[test]
fn a_remote_split_opens_with_one_read_and_a_lookup_reads_its_columns_up_front() {
    let (tmp, bucket, store) = remote_store();
    // Several commits, so the split holds several segments.
    for round in 0..4u64 {
        let logs = (0..5_000u64)
            .map(|i| {
                let n = round * 5_000 + i;
                LogRow {
                    trace_id: trace_id(n),
                    ..log(BASE + n, &format!("row number{n} of round{round}"), 0)
                }
            })
            .collect();
        let batch = RowBatch {
            logs,
            spans: vec![],
        };
        store
            .index_batch(round * 10, round * 10 + 10, &batch)
            .expect("indexed");
        store.commit(round * 10 + 10).expect("committed");
    }
    let sealed = store
        .seal(BASE + HOUR, &tmp.path().join("staging"))
        .expect("sealed");
    assert_eq!(sealed.len(), 1);
    let id = bucket.put(&sealed[0]);
    store.mark_published(&sealed[0], &id);
    assert_eq!(store.evict(0).expect("evicted").partitions, 1);
    let split_path = bucket.dir.join(format!("{id}.split"));
    let size = std::fs::metadata(&split_path).expect("split").len();
    assert!(
        !split::read_footer(&split_path)
            .expect("footer")
            .hot
            .is_empty(),
        "the split carries a hot cache"
    );

    let footer = split::read_footer(&split_path).expect("footer");
    assert!(
        footer.lookup.iter().any(|l| l.file.ends_with(".fast"))
            && footer.lookup.iter().all(|l| [".fast", ".idx", ".term"]
                .iter()
                .any(|e| l.file.ends_with(e))),
        "the split lists the columns, term blocks and postings a lookup reads: {:?}",
        footer.lookup
    );

    let wanted = trace_id(12_345);
    let trace = store
        .trace(wanted.as_slice().try_into().expect("16 bytes"), 10, 10)
        .expect("trace");
    assert_eq!(trace.logs.len(), 1);
    assert_eq!(trace.logs[0].body_text(), "row number12345 of round2");
    assert_eq!(bucket.tails.load(Ordering::SeqCst), 1);
    assert_eq!(bucket.fetches.load(Ordering::SeqCst), 0);
    // The listed columns are read first, all at once, and never again; what the lookup
    // reads after them (its block of stored rows) depends on the trace, and touches no
    // listed file: the trace ID field's postings were listed too.
    let in_split = |file: &str, start: u64, len: u64| {
        let offset = footer
            .files
            .iter()
            .find(|f| f.name == file)
            .expect("a listed file")
            .offset;
        offset + start..offset + start + len
    };
    let listed: Vec<_> = footer
        .lookup
        .iter()
        .map(|l| in_split(&l.file, l.start, l.len))
        .collect();
    let column_files: Vec<_> = footer
        .files
        .iter()
        .filter(|f| footer.lookup.iter().any(|l| l.file == f.name))
        .map(|f| in_split(&f.name, 0, f.len))
        .collect();
    let requested = bucket.requested.lock().expect("lock").clone();
    let requests = requested.len();
    let (prefetched, later) = requested.split_at(listed.len().min(requests));
    for range in &listed {
        assert!(
            prefetched
                .iter()
                .any(|r| r.start <= range.start && range.end <= r.end),
            "{range:?} is read up front: {requested:?}"
        );
    }
    for range in later {
        assert!(
            !column_files
                .iter()
                .any(|f| range.start < f.end && f.start < range.end),
            "{range:?} is a column read after the up-front ones: {requested:?}"
        );
    }
    let read = bucket.range_bytes.load(Ordering::SeqCst);
    // tantivy reads a column whole when it opens it, so the lookup reads the columns a row is
    // rebuilt from and the trace ID field's postings (the listed ranges); of the stored rows,
    // only the trace's block. Each read is rounded out to 64 KiB.
    let listed: u64 = footer.lookup.iter().map(|l| l.len).sum();
    let slack = (requests as u64) * 2 * (64 << 10);
    assert!(
        read <= listed + slack && read < size,
        "a lookup read {read} bytes beyond the split's end ({listed} listed), of {size}"
    );

    // A phrase needs positions, which nothing has read yet.
    bucket.down.store(true, Ordering::SeqCst);
    match bodies(&store, "\"of round1\"") {
        Err(IndexError::Remote(reason)) => {
            assert!(reason.contains("connection refused"), "{reason}")
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    bucket.down.store(false, Ordering::SeqCst);
    assert_eq!(
        bodies(&store, "\"of round1\"").expect("searched")[0],
        "row number9999 of round1"
    );
}

/// A trace lookup whose up-front column reads fail answers `IndexError::Remote`, and the
/// next lookup, once storage answers again, reads them and finds the trace.
#[test]
fn a_failed_column_prefetch_is_a_remote_error_and_is_retried() {
    let (tmp, bucket, store) = remote_store();
    // Random-looking IDs, enough rows that their columns outgrow what the search reads.
    let logs = (0..20_000u64)
        .map(|i| LogRow {
            trace_id: trace_id(i),
            ..log(BASE + i, &format!("row number{i}"), 0)
        })
        .collect();
    let batch = RowBatch {
        logs,
        spans: vec![],
    };
    store.index_batch(0, 10, &batch).expect("indexed");
    store.commit(10).expect("committed");
    let sealed = store
        .seal(BASE + HOUR, &tmp.path().join("staging"))
        .expect("sealed");
    let id = bucket.put(&sealed[0]);
    store.mark_published(&sealed[0], &id);
    assert_eq!(store.evict(0).expect("evicted").partitions, 1);
    // A search opens the split; its row columns are not read yet.
    assert_eq!(
        bodies(&store, "number7").expect("searched"),
        ["row number7"]
    );

    let wanted: [u8; 16] = trace_id(1_234).try_into().expect("16 bytes");
    bucket.ranges_down.store(true, Ordering::SeqCst);
    match store.trace(&wanted, 10, 10) {
        Err(IndexError::Remote(reason)) => {
            assert!(reason.contains("connection refused"), "{reason}")
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    bucket.ranges_down.store(false, Ordering::SeqCst);
    let trace = store.trace(&wanted, 10, 10).expect("trace");
    assert_eq!(trace.logs.len(), 1);
    assert_eq!(trace.logs[0].body_text(), "row number1234");
}

/// A split holds segments of at most `SEGMENT_MAX_DOCS` rows, and its trace filter names the
/// segments of each trace: a lookup reads the columns of the trace's segment only, and a
/// lookup in another segment reads that segment's. A search reads the columns of the
/// segments where its words are.
#[test]
fn a_trace_lookup_reads_the_columns_of_its_segment_only() {
    let (tmp, bucket, store) = remote_store();
    // Three commits of more than half the cap each, which no merge joins, and a small one,
    // which packing merges into one of them: three segments, one of them new since sealing.
    let per_commit = u64::from(weft_index::SEGMENT_MAX_DOCS) / 2 + 100;
    for round in 0..4u64 {
        let rows = if round == 3 { 100 } else { per_commit };
        let logs = (0..rows)
            .map(|i| {
                let n = round * per_commit + i;
                LogRow {
                    trace_id: trace_id(n),
                    ..log(BASE + n, &format!("row number{n}"), 0)
                }
            })
            .collect();
        let batch = RowBatch {
            logs,
            spans: vec![],
        };
        let lsn = round * 10 + 10;
        store.index_batch(lsn - 10, lsn, &batch).expect("indexed");
        store.commit(lsn).expect("committed");
    }
    let sealed = store
        .seal(BASE + HOUR, &tmp.path().join("staging"))
        .expect("sealed");
    let snapshot = &sealed[0];
    let id = "logs-segments".to_string();
    let split_path = bucket.dir.join(format!("{id}.split"));
    split::pack(&snapshot.dir, &split_path).expect("packs");
    store.keep_split_filter(snapshot).expect("filter kept");
    std::fs::remove_dir_all(&snapshot.dir).expect("snapshot removed");
    store.mark_published(snapshot, &id);
    assert_eq!(store.evict(0).expect("evicted").partitions, 1);

    let footer = split::read_footer(&split_path).expect("footer");
    let segment_of = |name: &str| name.split('.').next().unwrap_or_default().to_string();
    let mut segments: Vec<String> = footer
        .files
        .iter()
        .filter(|f| f.name.ends_with(".fast"))
        .map(|f| segment_of(&f.name))
        .collect();
    segments.sort();
    assert_eq!(
        segments.len(),
        3,
        "one segment per commit: {:?}",
        footer.files
    );
    let listed: Vec<String> = footer.lookup.iter().map(|l| segment_of(&l.file)).collect();
    for segment in &segments {
        assert!(
            listed.contains(segment),
            "the footer lists the columns of {segment}: {:?}",
            footer.lookup
        );
    }
    // The segment of each column file, by where it lies in the split.
    let segment_at = |offset: u64| {
        footer
            .files
            .iter()
            .find(|f| f.name.ends_with(".fast") && f.offset <= offset && offset < f.offset + f.len)
            .map(|f| segment_of(&f.name))
    };
    let columns_read = |from: usize| -> Vec<String> {
        let requested = bucket.requested.lock().expect("lock");
        let mut read: Vec<String> = requested[from..]
            .iter()
            .filter_map(|r| segment_at(r.start))
            .collect();
        read.sort();
        read.dedup();
        read
    };

    // A search for a word of one segment reads the time column of that segment alone.
    let only_in_round_1 = format!("number{}", per_commit + 3);
    assert_eq!(
        bodies(&store, &only_in_round_1).expect("searched"),
        [format!("row {only_in_round_1}")]
    );
    assert_eq!(
        columns_read(0).len(),
        1,
        "the search read one segment's columns"
    );
    let searched = columns_read(0);

    for round in 0..4u64 {
        let n = round * per_commit + 7 + round;
        let before = bucket.requested.lock().expect("lock").len();
        let wanted: [u8; 16] = trace_id(n).try_into().expect("16 bytes");
        let trace = store.trace(&wanted, 10, 10).expect("trace");
        assert_eq!(trace.logs.len(), 1, "round {round}");
        assert_eq!(trace.logs[0].body_text(), format!("row number{n}"));
        let read: Vec<String> = columns_read(before)
            .into_iter()
            .filter(|s| round != 1 || *s != searched[0])
            .collect();
        // The small commit's rows share a segment with one of the others: their lookup
        // finds its columns read already.
        assert!(
            read.len() <= 1,
            "the lookup of a row of round {round} reads one segment's columns: {read:?}"
        );
    }
    // Between them, the lookups read every segment's columns.
    assert_eq!(columns_read(0), segments);
}

/// A query for a service skips the remote hours that have no rows of it, without opening
/// them; negations and other fields rule nothing out.
#[test]
fn a_query_for_a_service_opens_only_the_splits_that_have_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("index");
    let bucket = Bucket::new(tmp.path());
    let store = open(&root);
    store.set_fetcher(bucket.clone());
    let other = LogRow {
        service: "billing".into(),
        ..log(BASE + HOUR + 5, "row of billing", 2)
    };
    let batch = RowBatch {
        logs: vec![log(BASE + 5, "row of svc", 1), other],
        spans: vec![],
    };
    store.index_batch(0, 10, &batch).expect("indexed");
    store.commit(10).expect("committed");
    let mut published = publish_all(
        &store,
        &bucket,
        BASE + 2 * HOUR,
        &tmp.path().join("staging"),
    );
    for split in &published {
        let services = split.services.as_deref().unwrap_or_default();
        assert_eq!(services.len(), 1, "{services:?}");
    }
    assert_eq!(store.evict(0).expect("evicted").partitions, 2);

    let opened = |store: &Store, q: &str| -> (usize, usize) {
        let before = bucket.tails.load(Ordering::SeqCst);
        let found = bodies(store, q).expect("searched").len();
        (found, bucket.tails.load(Ordering::SeqCst) - before)
    };
    assert_eq!(opened(&store, "service:billing"), (1, 1));
    assert_eq!(opened(&store, "service:bill*"), (1, 0), "open already");
    assert_eq!(opened(&store, "service:nothing"), (0, 0));
    assert_eq!(opened(&store, "row service:nothing"), (0, 0));
    assert_eq!(opened(&store, "service:svc OR service:billing"), (2, 1));
    assert_eq!(opened(&store, "-service:svc"), (1, 0));

    // After a restart, the services listed in the metastore prune as before; a split listed
    // without them is opened.
    drop(store);
    let store = open(&root);
    store.set_fetcher(bucket.clone());
    store.adopt_published(&published).expect("adopted");
    assert_eq!(opened(&store, "service:svc"), (1, 1));
    drop(store);
    let store = open(&root);
    store.set_fetcher(bucket.clone());
    for split in &mut published {
        split.services = None;
    }
    store.adopt_published(&published).expect("adopted");
    assert_eq!(opened(&store, "service:svc"), (1, 2));
}

/// Hours that queries read are downloaded into the local cache while it has room, and answer
/// from the local disk from then on; with no room, they stay remote.
#[test]
fn read_hours_are_brought_into_the_local_cache_while_it_has_room() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("index");
    let bucket = Bucket::new(tmp.path());
    let store = open(&root);
    store.set_fetcher(bucket.clone());
    one_row_per_hour(&store, 3);
    publish_all(
        &store,
        &bucket,
        BASE + 3 * HOUR,
        &tmp.path().join("staging"),
    );
    assert_eq!(store.evict(0).expect("evicted").partitions, 3);
    assert_eq!(
        store.fill_cache(u64::MAX).expect("filled"),
        0,
        "nothing read yet"
    );

    // One hour read: with no room, it stays remote.
    let one_hour = |store: &Store| {
        store
            .search_logs(&LogSearch {
                query: parse("row").expect("parses"),
                start_unix_nano: BASE + HOUR,
                end_unix_nano: BASE + 2 * HOUR,
                limit: 10,
                cursor: None,
            })
            .expect("searched")
            .logs
            .len()
    };
    assert_eq!(one_hour(&store), 1);
    assert_eq!(store.fill_cache(0).expect("filled"), 0);
    assert_eq!(store.remote_count(), 3);

    // Storage away while bringing it back: an error, and the hour stays remote.
    assert_eq!(one_hour(&store), 1);
    bucket.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        store.fill_cache(u64::MAX),
        Err(IndexError::Remote(_))
    ));
    assert_eq!(store.remote_count(), 3);
    bucket.down.store(false, Ordering::SeqCst);

    // With room, it is downloaded once and answers locally: no read of the bucket after it.
    assert_eq!(one_hour(&store), 1);
    assert_eq!(store.fill_cache(u64::MAX).expect("filled"), 1);
    assert_eq!(store.remote_count(), 2);
    assert_eq!(bucket.fetches.load(Ordering::SeqCst), 1);
    let (tails, ranges) = (
        bucket.tails.load(Ordering::SeqCst),
        bucket.ranges.load(Ordering::SeqCst),
    );
    assert_eq!(one_hour(&store), 1);
    assert_eq!(bucket.tails.load(Ordering::SeqCst), tails);
    assert_eq!(bucket.ranges.load(Ordering::SeqCst), ranges);
    assert_eq!(store.fill_cache(u64::MAX).expect("filled"), 0);
}

/// Every page of a search for all logs, `limit` at a time, concatenated.
fn pages(store: &Store, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .search_logs(&LogSearch {
                query: None,
                start_unix_nano: 0,
                end_unix_nano: u64::MAX,
                limit,
                cursor,
            })
            .expect("searched");
        seen.extend(page.logs.iter().map(LogRow::body_text));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
        assert!(seen.len() < 1_000, "paging does not end");
    }
}

#[test]
fn a_full_partition_is_sealed_before_its_hour_ends_and_the_hour_goes_on_in_a_new_part() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("index");
    let staging = tmp.path().join("staging");
    let bucket = Bucket::new(tmp.path());
    let store = open_sealing_at(&root, Some(4));
    store.set_fetcher(bucket.clone());
    // Even times in the first entry, odd ones in the second: the parts overlap in time.
    let first = RowBatch {
        logs: (0..4)
            .map(|i| log(BASE + 2 * i, &format!("t{}", 2 * i), 1))
            .collect(),
        spans: vec![],
    };
    let second = RowBatch {
        logs: (0..3)
            .map(|i| log(BASE + 2 * i + 1, &format!("t{}", 2 * i + 1), 1))
            .collect(),
        spans: vec![],
    };
    assert_eq!(store.index_batch(0, 10, &first).expect("indexed"), 4);
    // Part 0 is full before it is committed: it is committed through this entry's start
    // before part 1 takes the entry. Then a failure rolls back what is not committed.
    assert_eq!(store.index_batch(10, 20, &second).expect("indexed"), 3);
    store.rollback();
    assert_eq!(store.checkpoint(), 0, "the checkpoint did not move");
    // Replay from the checkpoint: the first entry is in part 0 already, the second is not.
    assert_eq!(store.index_batch(0, 10, &first).expect("replayed"), 0);
    assert_eq!(store.index_batch(10, 20, &second).expect("replayed"), 3);
    store.commit(20).expect("committed");
    assert_eq!(store.partition_count(Signal::Logs), 2);
    let newest_first = ["t6", "t5", "t4", "t3", "t2", "t1", "t0"];
    assert_eq!(pages(&store, 100), newest_first);
    assert_eq!(pages(&store, 2), newest_first, "pages of two, across parts");

    // Its hour is not over, but part 0 is full: it alone is sealed.
    let sealed = store.seal(BASE, &staging).expect("sealed");
    assert_eq!(sealed.len(), 1);
    assert_eq!((sealed[0].part, sealed[0].docs), (0, 4));
    let id = bucket.put(&sealed[0]);
    store.mark_published(&sealed[0], &id);
    assert_eq!(store.evict(0).expect("evicted").partitions, 1);

    // The hour's next rows go to part 1: part 0 is not fetched back.
    let third = RowBatch {
        logs: vec![log(BASE + 7, "t7", 2)],
        spans: vec![],
    };
    assert_eq!(store.index_batch(20, 30, &third).expect("indexed"), 1);
    store.commit(30).expect("committed");
    assert_eq!(bucket.fetches.load(Ordering::SeqCst), 0);
    let newest_first = ["t7", "t6", "t5", "t4", "t3", "t2", "t1", "t0"];
    assert_eq!(pages(&store, 3), newest_first);
    let trace = store.trace(&[1; 16], 100, 100).expect("trace");
    assert_eq!(trace.logs.len(), 7, "a trace is found in every part");

    // Part 1 is full now and sealed in turn, as part 1.
    let sealed = store.seal(BASE, &staging).expect("sealed");
    assert_eq!(sealed.len(), 1);
    assert_eq!((sealed[0].part, sealed[0].docs), (1, 4));
    let part_1 = bucket.put(&sealed[0]);
    store.mark_published(&sealed[0], &part_1);

    // After a restart the parts are found again, the metastore's splits adopted, and the
    // hour's next rows start part 2; a replay of what is committed adds nothing.
    drop(store);
    let store = open_sealing_at(&root, Some(4));
    store.set_fetcher(bucket.clone());
    store
        .adopt_published(&[
            PublishedSplit {
                id,
                signal: Signal::Logs,
                start_unix_nano: BASE,
                part: 0,
                committed_lsn: 10,
                docs: 4,
                node: None,
                services: None,
            },
            PublishedSplit {
                id: part_1,
                signal: Signal::Logs,
                start_unix_nano: BASE,
                part: 1,
                committed_lsn: 30,
                docs: 4,
                node: None,
                services: None,
            },
        ])
        .expect("adopted");
    assert_eq!(store.index_batch(20, 30, &third).expect("replayed"), 0);
    assert_eq!(store.index_batch(10, 20, &second).expect("replayed"), 0);
    let fourth = RowBatch {
        logs: vec![log(BASE + 8, "t8", 2)],
        spans: vec![],
    };
    assert_eq!(store.index_batch(30, 40, &fourth).expect("indexed"), 1);
    store.commit(40).expect("committed");
    assert_eq!(store.partition_count(Signal::Logs), 2, "part 1 and part 2");
    assert_eq!(bucket.fetches.load(Ordering::SeqCst), 0);
    let mut names: Vec<String> = std::fs::read_dir(root.join("logs"))
        .expect("listed")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() == 2 && names[0].ends_with(".1") && names[1].ends_with(".2"),
        "{names:?}"
    );
    assert_eq!(pages(&store, 4)[..2], ["t8", "t7"]);
    assert_eq!(pages(&store, 4).len(), 9, "each row once");
}

/// A search node's store: it follows the splits other stores published, numbering the parts
/// of an hour anew, and brings their trace filters over, after which a trace lookup opens
/// only the splits that may hold the trace.
#[test]
fn a_following_store_reads_the_splits_of_others_and_fetches_their_filters() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bucket = Bucket::new(tmp.path());
    // Two writing stores publish part 0 of the same hour.
    let mut published = Vec::new();
    for (n, trace) in [(1u8, 0x11u8), (2, 0x22)] {
        let store = open(&tmp.path().join(format!("writer-{n}")));
        let batch = RowBatch {
            logs: vec![log(BASE + u64::from(n), &format!("from {n}"), trace)],
            spans: vec![],
        };
        store.index_batch(0, 10, &batch).expect("indexed");
        store.commit(10).expect("committed");
        let staging = tmp.path().join(format!("node-{n}"));
        let prefix = format!("node-{n}-");
        published.extend(publish_all_prefixed(
            &store,
            &bucket,
            BASE + HOUR,
            &staging,
            &prefix,
        ));
    }
    assert_eq!(published.len(), 2);
    assert!(published.iter().all(|p| p.part == 0));

    let follower = open(&tmp.path().join("search"));
    follower.set_fetcher(bucket.clone());
    assert_eq!(follower.follow_published(&published), 2);
    assert_eq!(follower.follow_published(&published), 0, "nothing new");
    assert_eq!(follower.remote_count(), 2);
    let mut found = bodies(&follower, "from").expect("searched");
    found.sort();
    assert_eq!(found, ["from 1", "from 2"]);

    // Without filters, a lookup opens every split; with them, none holding the trace.
    let absent = [0x99; 16];
    let follower = {
        drop(follower);
        let follower = open(&tmp.path().join("search"));
        follower.set_fetcher(bucket.clone());
        follower.follow_published(&published);
        follower
    };
    let tails = bucket.tails.load(Ordering::SeqCst);
    follower.trace(&absent, 10, 10).expect("looked up");
    assert_eq!(bucket.tails.load(Ordering::SeqCst), tails + 2);
    assert_eq!(follower.fetch_missing_filters(10).expect("fetched"), 2);
    assert_eq!(follower.fetch_missing_filters(10).expect("fetched"), 0);
    let follower = {
        drop(follower);
        let follower = open(&tmp.path().join("search"));
        follower.set_fetcher(bucket.clone());
        follower.follow_published(&published);
        follower
    };
    let tails = bucket.tails.load(Ordering::SeqCst);
    let rows = follower.trace(&absent, 10, 10).expect("looked up");
    assert!(rows.logs.is_empty());
    assert_eq!(
        bucket.tails.load(Ordering::SeqCst),
        tails,
        "no split opened for a trace none holds"
    );
    let rows = follower.trace(&[0x22; 16], 10, 10).expect("looked up");
    assert_eq!(rows.logs.len(), 1);
    assert_eq!(bucket.tails.load(Ordering::SeqCst), tails + 1, "one split");

    // A split its node deleted leaves the list, and its filter the disk.
    assert_eq!(follower.follow_published(&published[..1]), 0);
    assert_eq!(follower.remote_count(), 1);
    let filters = std::fs::read_dir(tmp.path().join("search").join("filters"))
        .expect("filters kept")
        .count();
    assert_eq!(filters, 1);
}

/// Parts of one hour overlap in time: trace search still lists the newest matching span
/// first across them, each trace once at its newest, as a search node orders every node's.
#[test]
fn trace_search_orders_traces_across_the_parts_of_an_hour() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open_sealing_at(&tmp.path().join("index"), Some(2));
    let first = RowBatch {
        logs: vec![],
        spans: vec![span(BASE + 10, 0xa, 1), span(BASE + 30, 0xb, 2)],
    };
    let second = RowBatch {
        logs: vec![],
        spans: vec![span(BASE + 20, 0xc, 3), span(BASE + 5, 0xb, 4)],
    };
    store.index_batch(0, 10, &first).expect("indexed");
    store.index_batch(10, 20, &second).expect("indexed");
    store.commit(20).expect("committed");
    assert_eq!(store.partition_count(Signal::Spans), 2, "two parts");
    let found = store
        .search_traces(&TraceSearch {
            query: None,
            start_unix_nano: BASE,
            end_unix_nano: BASE + HOUR,
            min_duration_ns: None,
            max_duration_ns: None,
            limit: 10,
        })
        .expect("searched");
    let order: Vec<u8> = found.traces.iter().map(|t| t.trace_id[0]).collect();
    assert_eq!(order, [0xb, 0xc, 0xa]);
    assert_eq!(
        found.traces[0].span_count, 2,
        "trace b's spans from both parts"
    );
}
