//! Calls between services, paired while indexing: found in either order and across batches,
//! committed with the rows that completed them, kept across a reopen, counted once after a
//! failed commit and its replay; a table file of a commit that never happened is ignored.

use weft_index::calls::{CALL_BUCKET_NANOS, ServiceCall};
use weft_index::faults::{Fault, Faults};
use weft_index::{PARTITION_NANOS, RowBatch, SpanRow, Store, StoreOptions};

const HOUR: u64 = PARTITION_NANOS;
const BASE: u64 = 1_800_000_000 * 1_000_000_000 / HOUR * HOUR;

fn span(trace: u8, id: u8, parent: u8, service: &str, start: u64, ms: u64) -> SpanRow {
    SpanRow {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
        name: format!("op{id}"),
        service: service.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + ms * 1_000_000,
        ..Default::default()
    }
}

fn spans(spans: Vec<SpanRow>) -> RowBatch {
    RowBatch {
        logs: vec![],
        spans,
    }
}

/// (parent, child, calls, errors) of every pair.
fn summary(calls: &[ServiceCall]) -> Vec<(String, String, u64, u64)> {
    calls
        .iter()
        .map(|c| {
            (
                c.parent.clone(),
                c.child.clone(),
                c.stats.calls,
                c.stats.errors,
            )
        })
        .collect()
}

fn owned(rows: &[(&str, &str, u64, u64)]) -> Vec<(String, String, u64, u64)> {
    rows.iter()
        .map(|(p, c, n, e)| (p.to_string(), c.to_string(), *n, *e))
        .collect()
}

#[test]
fn calls_are_paired_across_batches_committed_and_kept_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Trace 1: web -> api -> db, the db span sent first (its service exports sooner).
    let mut failed_db = span(1, 3, 2, "db", BASE + 2_000, 40);
    failed_db.status_code = 2;
    store
        .index_batch(0, 1, &spans(vec![failed_db.clone()]))
        .unwrap();
    store
        .index_batch(
            1,
            2,
            &spans(vec![
                span(1, 1, 0, "web", BASE, 100),
                span(1, 2, 1, "api", BASE + 1_000, 80),
                // api's own child: not a call between services.
                span(1, 4, 2, "api", BASE + 3_000, 5),
            ]),
        )
        .unwrap();
    assert!(
        store.calls(0, u64::MAX).expect("calls").is_empty(),
        "calls are visible once committed, with their rows"
    );
    store.commit(2).unwrap();
    // Trace 2, an hour later: web -> api, the parent first.
    store
        .index_batch(2, 3, &spans(vec![span(2, 1, 0, "web", BASE + HOUR, 10)]))
        .unwrap();
    store
        .index_batch(
            3,
            4,
            &spans(vec![span(2, 2, 1, "api", BASE + HOUR + 10, 8)]),
        )
        .unwrap();
    store.commit(4).unwrap();
    let expected = owned(&[("api", "db", 1, 1), ("web", "api", 2, 0)]);
    assert_eq!(summary(&store.calls(0, u64::MAX).expect("calls")), expected);
    // A time range counts the calls whose called span started in it (by five minutes).
    assert_eq!(
        summary(&store.calls(BASE + HOUR, BASE + 2 * HOUR).expect("calls")),
        owned(&[("web", "api", 1, 0)])
    );
    assert_eq!(
        summary(&store.calls(BASE, BASE + CALL_BUCKET_NANOS).expect("calls")),
        owned(&[("api", "db", 1, 1), ("web", "api", 1, 0)])
    );
    let db = &store.calls(0, u64::MAX).expect("calls")[0];
    assert_eq!(db.stats.exemplars.len(), 1);
    assert_eq!(db.stats.exemplars[0].trace_id, [1u8; 16]);
    assert!(db.stats.exemplars[0].error);
    let p99 = db.stats.latency.quantile(0.99).unwrap();
    assert!(
        (40_000_000..48_000_000).contains(&p99),
        "p99 of one 40 ms call: {p99}"
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(summary(&store.calls(0, u64::MAX).expect("calls")), expected);
}

#[test]
fn a_failed_commit_then_replay_counts_each_call_once() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::none();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            faults: Some(faults.clone()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let first = spans(vec![
        span(1, 1, 0, "web", BASE, 10),
        span(1, 2, 1, "api", BASE + 1, 5),
    ]);
    store.index_batch(0, 1, &first).unwrap();
    store.commit(1).unwrap();
    // The next entry holds a whole call, and a child whose parent was committed before.
    let second = spans(vec![
        span(2, 1, 0, "web", BASE + 10, 10),
        span(2, 2, 1, "api", BASE + 11, 5),
        span(1, 3, 2, "db", BASE + 12, 1),
    ]);
    store.index_batch(1, 2, &second).unwrap();
    faults.set(Fault::IndexWriteError, true);
    assert!(store.commit(2).is_err());
    store.rollback();
    faults.set(Fault::IndexWriteError, false);
    store.index_batch(1, 2, &second).unwrap();
    store.commit(2).unwrap();
    // The whole call of trace 2 counts once. The api -> db call of trace 1 straddled the
    // failure: its parent was committed before it, and the pairing window starts empty after
    // a rollback, so it is not counted (never counted twice).
    assert_eq!(
        summary(&store.calls(0, u64::MAX).expect("calls")),
        owned(&[("web", "api", 2, 0)])
    );
}

/// The calls files of the span partitions under `root`, by name.
fn calls_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for partition in std::fs::read_dir(root.join("spans")).unwrap() {
        for file in std::fs::read_dir(partition.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("calls-")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_table_of_a_commit_that_never_happened_is_ignored_and_a_damaged_one_does_not_stop_weft() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = spans(vec![
        span(1, 1, 0, "web", BASE, 10),
        span(1, 2, 1, "api", BASE + 1, 5),
    ]);
    store.index_batch(0, 1, &batch).unwrap();
    store.commit(7).unwrap();
    let expected = owned(&[("web", "api", 1, 0)]);
    assert_eq!(summary(&store.calls(0, u64::MAX).expect("calls")), expected);
    drop(store);
    let files = calls_files(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("calls-7.json"), "{files:?}");
    // A crash between writing the table of position 50 and committing it.
    let stray = files[0].with_file_name("calls-50.json");
    std::fs::write(
        &stray,
        r#"{"services":["x","y"],"rows":[[0,0,1,99,0,[],[]]],"dropped":0}"#,
    )
    .unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(summary(&store.calls(0, u64::MAX).expect("calls")), expected);
    assert!(!stray.exists(), "the uncommitted table is deleted");
    drop(store);
    // A damaged table: the calls start anew, the rows are all there.
    std::fs::write(&files[0], b"{not json").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.calls(0, u64::MAX).expect("calls").is_empty());
    assert_eq!(store.trace(&[1; 16], 10, 10).unwrap().spans.len(), 2);
}

/// The disk fills after the calls table of a commit is written and before the commit: the
/// rollback deletes that table, and the replayed commit counts each call once.
#[test]
fn a_table_written_before_a_failed_commit_is_deleted_by_the_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::none();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            faults: Some(faults.clone()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let call = |trace: u8| {
        spans(vec![
            span(trace, 1, 0, "web", BASE + u64::from(trace), 10),
            span(trace, 2, 1, "api", BASE + u64::from(trace) + 1, 5),
        ])
    };
    store.index_batch(0, 1, &call(1)).unwrap();
    store.commit(1).unwrap();
    store.index_batch(1, 2, &call(2)).unwrap();
    // Room for the table (a few hundred bytes), not for the segment.
    faults.set_space_left(Some(600));
    assert!(store.commit(2).is_err());
    let names = |files: Vec<std::path::PathBuf>| -> Vec<String> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
            .collect()
    };
    assert!(
        names(calls_files(dir.path())).contains(&"calls-2.json".to_string()),
        "the table was written before the commit failed"
    );
    store.rollback();
    assert_eq!(names(calls_files(dir.path())), ["calls-1.json"]);
    faults.set_space_left(None);
    store.index_batch(1, 2, &call(2)).unwrap();
    store.commit(2).unwrap();
    assert_eq!(names(calls_files(dir.path())), ["calls-2.json"]);
    assert_eq!(
        summary(&store.calls(0, u64::MAX).expect("calls")),
        owned(&[("web", "api", 2, 0)])
    );
}
