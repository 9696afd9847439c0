//! The store against real directories: routing to hour partitions, newest-first search across
//! them, exactly-once replay by commit position, traces across partitions, and retention.

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use weft_index::query::parse;
use weft_index::{
    LogCursor, LogRow, LogSearch, PARTITION_NANOS, RetentionPolicy, RowBatch, Signal, SpanRow,
    Store,
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
    assert_eq!(store.index_batch(0, &batch).unwrap(), 4);
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
        store.index_batch(0, &first).unwrap();
        store.commit(50).unwrap();
        // Indexed but never committed: lost with the process, to be replayed.
        let second = RowBatch {
            logs: vec![log(BASE + 1, "second", 0)],
            spans: vec![],
        };
        store.index_batch(50, &second).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.checkpoint(), 50);
    assert_eq!(search(&store, "", 10), vec!["first"]);
    // Replay from an older position: the committed entry is skipped, the other one added.
    let first = RowBatch {
        logs: vec![log(BASE, "first", 0)],
        spans: vec![],
    };
    assert_eq!(store.index_batch(0, &first).unwrap(), 0);
    let second = RowBatch {
        logs: vec![log(BASE + 1, "second", 0)],
        spans: vec![],
    };
    assert_eq!(store.index_batch(50, &second).unwrap(), 1);
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
    store.index_batch(0, &batch).unwrap();
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
        store.index_batch(lsn, &arriving).unwrap();
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
        .index_encoded_batch(0, &batch, &prost::Message::encode_to_vec(&other))
        .unwrap_err();
    assert!(
        matches!(err, weft_index::IndexError::BatchEncoding),
        "{err}"
    );
    let payload = prost::Message::encode_to_vec(&batch);
    assert_eq!(store.index_encoded_batch(0, &batch, &payload).unwrap(), 3);
    store.commit(10).unwrap();
    assert_eq!(search(&store, "gamma OR delta", 10), vec!["delta", "gamma"]);
}
