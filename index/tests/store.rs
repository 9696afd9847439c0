//! The store against real directories: routing to hour partitions, newest-first search across
//! them, exactly-once replay by commit position, traces across partitions, and retention.

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use weft_index::faults::{Fault, Faults};
use weft_index::query::parse;
use weft_index::{
    LogCursor, LogRow, LogSearch, PARTITION_NANOS, RetentionPolicy, RowBatch, Signal, SpanRow,
    Store, StoreOptions, footprint,
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
        trace_id: if trace == 0 { vec![] } else { vec![trace; 16] },
        ..Default::default()
    }
}

fn span(start: u64, trace: u8, id: u8, parent: u8) -> SpanRow {
    SpanRow {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
        name: format!("op{id}"),
        service: "svc".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1000,
        ..Default::default()
    }
}

fn search(store: &Store, q: &str, limit: usize) -> Vec<String> {
    store
        .search_logs(&LogSearch {
            query: parse(q).unwrap(),
            start_unix_nano: 0,
            end_unix_nano: u64::MAX,
            limit,
            cursor: None,
        })
        .unwrap()
        .logs
        .iter()
        .map(LogRow::body_text)
        .collect()
}

#[test]
fn rows_go_to_hour_partitions_and_search_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = RowBatch {
        logs: vec![
            log(BASE + 10, "alpha one", 0),
            log(BASE + 2 * HOUR + 5, "alpha three", 0),
            log(BASE + HOUR + 7, "alpha two", 0),
            log(BASE + HOUR + 8, "beta", 0),
        ],
        spans: vec![],
    };
    assert_eq!(store.index_batch(0, 1, &batch).unwrap(), 4);
    store.commit(100).unwrap();
    assert_eq!(store.partition_count(Signal::Logs), 3);
    assert_eq!(store.checkpoint(), 100);
    assert_eq!(
        search(&store, "alpha", 10),
        vec!["alpha three", "alpha two", "alpha one"]
    );
    assert_eq!(search(&store, "ALPHA", 2), vec!["alpha three", "alpha two"]);
    assert_eq!(search(&store, "-alpha", 10), vec!["beta"]);
    let page = store
        .search_logs(&LogSearch {
            query: None,
            start_unix_nano: BASE + HOUR,
            end_unix_nano: BASE + 2 * HOUR,
            limit: 1,
            cursor: None,
        })
        .unwrap();
    assert_eq!(page.logs.len(), 1);
    assert_eq!(page.logs[0].body_text(), "beta");
    assert!(page.more);
}

#[test]
fn replaying_a_committed_entry_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let first = RowBatch {
            logs: vec![log(BASE, "first", 0)],
            spans: vec![],
        };
        store.index_batch(0, 1, &first).unwrap();
        store.commit(50).unwrap();
        // Indexed but never committed: lost with the process, to be replayed.
        let second = RowBatch {
            logs: vec![log(BASE + 1, "second", 0)],
            spans: vec![],
        };
        store.index_batch(50, 51, &second).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.checkpoint(), 50);
    assert_eq!(search(&store, "", 10), vec!["first"]);
    // Replay from an older position: the committed entry is skipped, the other one added.
    let first = RowBatch {
        logs: vec![log(BASE, "first", 0)],
        spans: vec![],
    };
    assert_eq!(store.index_batch(0, 1, &first).unwrap(), 0);
    let second = RowBatch {
        logs: vec![log(BASE + 1, "second", 0)],
        spans: vec![],
    };
    assert_eq!(store.index_batch(50, 51, &second).unwrap(), 1);
    store.commit(90).unwrap();
    assert_eq!(search(&store, "", 10), vec!["second", "first"]);
}

#[test]
fn a_trace_is_assembled_from_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = RowBatch {
        logs: vec![
            log(BASE + HOUR - 1, "before the hour", 7),
            log(BASE + HOUR + 1, "after the hour", 7),
            log(BASE + HOUR + 2, "other trace", 8),
        ],
        spans: vec![
            span(BASE + HOUR - 10, 7, 1, 0),
            span(BASE + HOUR + 10, 7, 2, 1),
            span(BASE, 8, 3, 0),
        ],
    };
    store.index_batch(0, 1, &batch).unwrap();
    store.commit(10).unwrap();
    let rows = store.trace(&[7; 16], 100, 100).unwrap();
    let names: Vec<&str> = rows.spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["op1", "op2"]);
    let bodies: Vec<String> = rows.logs.iter().map(LogRow::body_text).collect();
    assert_eq!(bodies, vec!["before the hour", "after the hour"]);
    assert!(!rows.truncated);
    let limited = store.trace(&[7; 16], 1, 100).unwrap();
    assert!(limited.truncated);
    assert!(store.trace(&[9; 16], 100, 100).unwrap().spans.is_empty());
}

#[test]
fn retention_deletes_whole_partitions_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let logs = (0..5)
        .map(|h| log(BASE + h * HOUR + 1, &format!("hour{h}"), 0))
        .collect();
    store
        .index_batch(
            0,
            1,
            &RowBatch {
                logs,
                spans: vec![span(BASE, 1, 1, 0)],
            },
        )
        .unwrap();
    store.commit(10).unwrap();
    assert_eq!(store.partition_count(Signal::Logs), 5);

    // By age: partitions ending at or before the cut-off go, the one containing it stays.
    let removed = store
        .apply_retention(&RetentionPolicy {
            min_time_unix_nano: BASE + HOUR + HOUR / 2,
            max_disk_bytes: None,
        })
        .unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(
        search(&store, "", 10),
        vec!["hour4", "hour3", "hour2", "hour1"]
    );

    // By size: with a cap below the total, the oldest go until it fits; the newest of each
    // signal always stays.
    let removed = store
        .apply_retention(&RetentionPolicy {
            min_time_unix_nano: 0,
            max_disk_bytes: Some(1),
        })
        .unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert_eq!(search(&store, "", 10), vec!["hour4"]);
    assert_eq!(store.partition_count(Signal::Spans), 0);

    // The deletions are on disk: a reopened store sees the same.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.partition_count(Signal::Logs), 1);
}

#[test]
fn cursor_paging_is_stable_while_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Ten records share one timestamp, across an hour boundary from the rest.
    let mut logs: Vec<LogRow> = (0..10)
        .map(|i| log(BASE + HOUR, &format!("tie{i}"), 0))
        .collect();
    logs.extend((0..5).map(|i| log(BASE + HOUR - 100 + i, &format!("older{i}"), 0)));
    logs.extend((0..5).map(|i| log(BASE + HOUR + 100 + i, &format!("newer{i}"), 0)));
    store
        .index_batch(
            0,
            1,
            &RowBatch {
                logs,
                spans: vec![],
            },
        )
        .unwrap();
    store.commit(10).unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<LogCursor> = None;
    let mut lsn = 10;
    loop {
        let page = store
            .search_logs(&LogSearch {
                query: None,
                start_unix_nano: 0,
                end_unix_nano: BASE + 3 * HOUR,
                limit: 3,
                cursor,
            })
            .unwrap();
        seen.extend(page.logs.iter().map(LogRow::body_text));
        // Data keeps arriving between pages, newer than anything paged so far.
        let arriving = RowBatch {
            logs: vec![log(BASE + 2 * HOUR + lsn, "late", 0)],
            spans: vec![],
        };
        store.index_batch(lsn, lsn + 1, &arriving).unwrap();
        lsn += 10;
        store.commit(lsn).unwrap();
        match page.next_cursor {
            Some(next) => {
                let text = next.encode();
                assert_eq!(LogCursor::decode(&text), Some(next));
                cursor = Some(next);
            }
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a record was repeated: {seen:?}");
    assert_eq!(seen.len(), 20, "{seen:?}");
    assert_eq!(
        &seen[..5],
        ["newer4", "newer3", "newer2", "newer1", "newer0"]
    );
    assert!(seen[5..15].iter().all(|b| b.starts_with("tie")));
    assert_eq!(seen[15], "older4");
    assert!(!seen.contains(&"late".to_string()));
}

#[test]
fn an_encoded_batch_must_match_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = RowBatch {
        logs: vec![log(BASE + 1, "gamma", 0), log(BASE + 2, "delta", 0)],
        spans: vec![span(BASE + 3, 1, 1, 0)],
    };
    let other = RowBatch {
        logs: vec![log(BASE + 1, "gamma", 0)],
        spans: vec![],
    };
    let err = store
        .index_encoded_batch(0, 1, &batch, &prost::Message::encode_to_vec(&other))
        .unwrap_err();
    assert!(
        matches!(err, weft_index::IndexError::BatchEncoding),
        "{err}"
    );
    let payload = prost::Message::encode_to_vec(&batch);
    assert_eq!(
        store.index_encoded_batch(0, 1, &batch, &payload).unwrap(),
        3
    );
    store.commit(10).unwrap();
    assert_eq!(search(&store, "gamma OR delta", 10), vec!["delta", "gamma"]);
}

fn count(store: &Store, q: &str) -> usize {
    search(store, q, 10_000).len()
}

fn small_store(dir: &std::path::Path, faults: Option<std::sync::Arc<Faults>>) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            max_open_writers: 3,
            writer_memory_bytes: 64 << 20,
            faults,
            object_storage: false,
            seal_docs: None,
        },
    )
    .unwrap()
}

/// Regression: one request of 300 records stamped an hour apart opened 300 writers (704
/// threads, 1.96 GB). Writers beyond the cap are committed and closed as the batch goes.
#[test]
fn writers_stay_within_the_cap_and_each_row_is_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path(), None);
    let spread = |tag: &str| RowBatch {
        logs: (0..40)
            .map(|h| log(BASE + h * HOUR + 7, &format!("{tag} h{h}"), 0))
            .collect(),
        spans: vec![],
    };
    assert_eq!(store.index_batch(0, 10, &spread("first")).unwrap(), 40);
    // Counted as each writer opens, so going over the cap midway through the batch shows
    // here even if writers were closed before it returned; 3 also says the cap was reached.
    assert_eq!(store.peak_open_writers(), 3);
    assert!(store.open_writers() <= 3, "{}", store.open_writers());
    assert_eq!(store.partition_count(Signal::Logs), 40);
    assert_eq!(store.index_batch(10, 20, &spread("second")).unwrap(), 40);
    assert_eq!(store.peak_open_writers(), 3);
    // No commit yet: a crash here replays both entries. Writers closed on the way were
    // committed through their entry, so replay skips them and adds only the rest.
    drop(store);
    let store = small_store(dir.path(), None);
    let replayed = store.index_batch(0, 10, &spread("first")).unwrap()
        + store.index_batch(10, 20, &spread("second")).unwrap();
    assert!(replayed < 80, "closed writers were committed: {replayed}");
    store.commit(20).unwrap();
    assert_eq!(count(&store, "first"), 40);
    assert_eq!(count(&store, "second"), 40);
    assert_eq!(store.peak_open_writers(), 3);
}

/// An index write failure during commit leaves some partitions committed and others not; after
/// a rollback, adding the same entries again keeps every row exactly once.
#[test]
fn rollback_after_a_failed_commit_then_replay_keeps_rows_once() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::none();
    let store = small_store(dir.path(), Some(faults.clone()));
    let entry = |tag: &str| RowBatch {
        logs: (0..3)
            .map(|h| log(BASE + h * HOUR + 1, &format!("{tag} h{h}"), 0))
            .collect(),
        spans: vec![span(BASE + 5, 1, 1, 0)],
    };
    store.index_batch(0, 10, &entry("alpha")).unwrap();
    store.commit(10).unwrap();
    store.index_batch(10, 20, &entry("beta")).unwrap();
    faults.set(Fault::IndexWriteError, true);
    assert!(store.commit(20).is_err());
    assert_eq!(
        store.checkpoint(),
        10,
        "a failed commit does not move the checkpoint"
    );
    store.rollback();
    assert_eq!(store.open_writers(), 0);
    faults.set(Fault::IndexWriteError, false);
    store.index_batch(10, 20, &entry("beta")).unwrap();
    store.commit(20).unwrap();
    assert_eq!(store.checkpoint(), 20);
    assert_eq!(count(&store, "alpha"), 3);
    assert_eq!(count(&store, "beta"), 3);
    assert_eq!(store.trace(&[1; 16], 100, 100).unwrap().spans.len(), 2);
}

/// A full disk fails the commit with "no space left"; once there is room again the same rows
/// commit, once each.
#[test]
fn a_full_disk_fails_the_commit_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::none();
    let store = small_store(dir.path(), Some(faults.clone()));
    let first = RowBatch {
        logs: vec![log(BASE, "committed before", 0)],
        spans: vec![],
    };
    store.index_batch(0, 5, &first).unwrap();
    store.commit(5).unwrap();
    let before = segment_files(dir.path());
    faults.set_space_left(Some(2_000));
    let batch = RowBatch {
        logs: (0..200)
            .map(|i| log(BASE + i, &format!("row{i} padding padding padding"), 0))
            .collect(),
        spans: vec![],
    };
    let failed = store
        .index_batch(5, 10, &batch)
        .and_then(|_| store.commit(10).map(|_| ()));
    let err = failed.unwrap_err().to_string();
    assert!(
        err.contains("No space left") || err.contains("space"),
        "{err}"
    );
    assert_eq!(store.checkpoint(), 5);
    assert!(
        segment_files(dir.path()).len() > before.len(),
        "the failed attempt left files behind"
    );
    store.rollback();
    // Regression: each failed attempt left its partly written segment on disk, so a retry
    // loop on a full disk kept it full after space was freed.
    assert_eq!(
        segment_files(dir.path()),
        before,
        "rollback removes what was never committed"
    );
    faults.set_space_left(None);
    store.index_batch(5, 10, &batch).unwrap();
    store.commit(10).unwrap();
    assert_eq!(count(&store, "padding"), 200);
}

/// Segment files under `dir` (tantivy's own bookkeeping files left out).
fn segment_files(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.metadata().unwrap().is_dir() {
            out.extend(segment_files(&entry.path()));
        } else if !name.ends_with(".json") && !name.ends_with(".lock") && name != "checkpoint" {
            out.insert(name);
        }
    }
    out
}

#[test]
fn the_footprint_accounts_every_segment_byte_to_a_part_and_a_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = RowBatch {
        logs: (0..500)
            .map(|i| {
                log(
                    BASE + i,
                    &format!("record number {i} of five hundred"),
                    (i % 7) as u8,
                )
            })
            .collect(),
        spans: vec![],
    };
    store.index_batch(0, 1, &batch).unwrap();
    store.commit(1).unwrap();
    drop(store);
    let logs = footprint::footprint(dir.path(), Signal::Logs).unwrap();
    assert_eq!((logs.docs, logs.partitions), (500, 1));
    let parts = logs.by_part();
    for part in ["store", "termdict", "postings", "positions", "fast"] {
        assert!(parts.get(part).is_some_and(|b| *b > 0), "{part}: {parts:?}");
    }
    assert!(
        logs.by_field().contains_key("body"),
        "{:?}",
        logs.by_field()
    );
    // tantivy accounts for the segment files; meta.json and weft's own files are the rest.
    assert!(logs.total() <= logs.on_disk, "{logs:?}");
    assert!(logs.total() * 2 >= logs.on_disk, "{logs:?}");
    assert_eq!(
        footprint::footprint(dir.path(), Signal::Spans)
            .unwrap()
            .docs,
        0
    );
}

#[test]
fn id_lookups_find_exactly_the_id_when_buckets_are_shared() {
    // 10,000 random span IDs over 4,096 buckets: every bucket holds several, so a lookup that
    // did not check the ID itself would return its neighbours.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let logs: Vec<LogRow> = (0..10_000u64)
        .map(|i| LogRow {
            span_id: next().to_be_bytes().to_vec(),
            trace_id: [next().to_be_bytes(), next().to_be_bytes()].concat(),
            ..log(BASE + i, &format!("row{i}"), 0)
        })
        .collect();
    // Spans of as many traces, one each: a trace lookup must not return a bucket neighbour's.
    let spans: Vec<SpanRow> = logs
        .iter()
        .enumerate()
        .map(|(i, l)| SpanRow {
            trace_id: l.trace_id.clone(),
            span_id: l.span_id.clone(),
            ..span(BASE + i as u64, 0, 0, 0)
        })
        .collect();
    store
        .index_batch(
            0,
            1,
            &RowBatch {
                logs: logs.clone(),
                spans: spans.clone(),
            },
        )
        .unwrap();
    store.commit(1).unwrap();
    for i in [0usize, 1, 4_095, 9_999] {
        let by_span = search(
            &store,
            &format!("span_id:{}", hex::encode(&logs[i].span_id)),
            10,
        );
        assert_eq!(by_span, vec![format!("row{i}")]);
        let by_trace = search(
            &store,
            &format!("trace_id:{}", hex::encode(&logs[i].trace_id)),
            10,
        );
        assert_eq!(by_trace, vec![format!("row{i}")]);
        // Both at once: the span ID's column is read only where the trace ID's rows are.
        let both = |span: usize| {
            search(
                &store,
                &format!(
                    "trace_id:{} span_id:{}",
                    hex::encode(&logs[i].trace_id),
                    hex::encode(&logs[span].span_id)
                ),
                10,
            )
        };
        assert_eq!(both(i), vec![format!("row{i}")]);
        assert!(both((i + 1) % logs.len()).is_empty());
        let id: [u8; 16] = logs[i].trace_id.as_slice().try_into().unwrap();
        let trace = store.trace(&id, 10, 10).unwrap();
        assert_eq!(trace.logs, vec![logs[i].clone()]);
        assert_eq!(trace.spans, vec![spans[i].clone()]);
    }
    let absent = search(&store, &format!("span_id:{}", "00".repeat(8)), 10);
    assert!(absent.is_empty(), "{absent:?}");
}

#[test]
fn a_partition_that_cannot_be_created_is_refused_until_the_disk_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::none();
    let store = small_store(dir.path(), Some(faults.clone()));
    let batch = RowBatch {
        logs: vec![log(BASE + 3 * HOUR, "in a new hour", 0)],
        spans: vec![],
    };
    // The new hour's format file is the first thing written, and it does not fit.
    faults.set_space_left(Some(0));
    let err = store.index_batch(0, 1, &batch).unwrap_err().to_string();
    assert!(err.contains("space"), "{err}");
    assert_eq!(store.partition_count(Signal::Logs), 0);
    drop(store);
    // A restart finds the half-made directory and makes it a partition of the current format.
    faults.set_space_left(None);
    let store = small_store(dir.path(), Some(faults.clone()));
    store.index_batch(0, 1, &batch).unwrap();
    store.commit(1).unwrap();
    assert_eq!(store.partition_formats(), vec![weft_index::Format::CURRENT]);
    assert_eq!(search(&store, "hour", 10), vec!["in a new hour"]);
}

/// Log search tries recent time windows first, counted back from the newest record of the
/// range. Whatever they count back from, a page holds the newest rows of the whole range, and
/// paging with a cursor walks every row once, in order: here with the range ending a day past
/// the newest row, rows across two hours and two parts of the newer one, and ties.
#[test]
fn pages_are_the_newest_rows_of_the_range_whatever_the_windows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            object_storage: true,
            seal_docs: Some(15),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let second = 1_000_000_000;
    // An older hour, a row a second; the newer hour's rows 30 s apart (wider than the first
    // window), three of them sharing one time.
    let mut logs: Vec<LogRow> = (0..40)
        .map(|i| log(BASE + i * second, &format!("old {i:02}"), 0))
        .collect();
    logs.extend((0..20).map(|i| log(BASE + HOUR + i * 30 * second, &format!("new {i:02}"), 0)));
    logs.extend((0..3).map(|i| log(BASE + HOUR + 95 * second, &format!("tie {i}"), 0)));
    // Two entries, so that the newer hour fills a part and goes on in a second one.
    let (first, rest) = logs.split_at(55);
    for (lsn, part) in [(0, first), (10, rest)] {
        let batch = RowBatch {
            logs: part.to_vec(),
            spans: vec![],
        };
        store.index_batch(lsn, lsn + 1, &batch).unwrap();
    }
    store.commit(20).unwrap();
    assert!(
        store.partition_count(Signal::Logs) >= 3,
        "two parts of the newer hour"
    );

    let mut expected: Vec<(u64, String)> = logs
        .iter()
        .map(|l| (l.time_unix_nano, l.body_text()))
        .collect();
    expected.sort_by_key(|e| std::cmp::Reverse(e.0));
    let page_through = |q: &str, limit: usize| {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .search_logs(&LogSearch {
                    query: parse(q).unwrap(),
                    start_unix_nano: BASE,
                    end_unix_nano: BASE + 30 * HOUR,
                    limit,
                    cursor,
                })
                .unwrap();
            seen.extend(page.logs.iter().map(|l| (l.time_unix_nano, l.body_text())));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break seen,
            }
        }
    };
    for limit in [1, 2, 7, 100] {
        let seen = page_through("", limit);
        let times: Vec<u64> = seen.iter().map(|(t, _)| *t).collect();
        let want: Vec<u64> = expected.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, want, "pages of {limit}");
        let mut bodies: Vec<&String> = seen.iter().map(|(_, b)| b).collect();
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), logs.len(), "each row once, pages of {limit}");
    }
    // Only the older hour matches: the newer hour's newest time says nothing of it.
    let old = page_through("old", 5);
    assert_eq!(old.len(), 40);
    assert_eq!(old[0].1, "old 39");
}
