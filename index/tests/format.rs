//! Partitions written by an earlier format stay readable.
//!
//! `tests/fixtures/format-v1` is a store written by weft's first partition format (commit
//! ed35a75, before partitions carried a version) from [`fixture_rows`], and
//! `tests/fixtures/format-v2` the same rows written by format 2 (commit 7af0f99). These tests
//! open a copy of each with today's code and check that every row comes back exactly, that every kind of
//! query finds what it found then, and that new rows written beside it land in the right
//! format. To write the fixture again (only ever with the code of the format it is named
//! after): `WEFT_WRITE_FIXTURE=1 cargo test -p weft-index --test format -- --ignored`.

use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::trace::v1::span::Event;
use prost::Message;
use weft_index::query::{LogMatcher, parse};
use weft_index::{
    Format, LogRow, LogSearch, PARTITION_NANOS, RowBatch, SpanRow, Store, TraceSearch,
};

const HOUR: u64 = PARTITION_NANOS;
/// 2026-11-27T10:00:00Z.
const BASE: u64 = 1_795_773_600 * 1_000_000_000;

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: text(value),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// A byte pattern that differs in every position, like a random ID.
fn id(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const SERVICES: [&str; 3] = ["checkout", "payments", "inventory"];
const WORDS: [&str; 6] = ["card", "declined", "retry", "order", "stock", "timeout"];

fn resource(service: &str, host: u64) -> Vec<KeyValue> {
    vec![
        kv("service.name", service),
        kv("host.name", &format!("host-{host}")),
    ]
}

/// The rows the fixture holds: 40 log records and 24 spans in two hours, with every field a
/// row has set in some of them.
pub fn fixture_rows() -> RowBatch {
    let mut batch = RowBatch::default();
    for t in 0..8u64 {
        let trace_id = id(1000 + t, 16);
        let service = SERVICES[(t % 3) as usize];
        let start = BASE + t * 600 * 1_000_000_000 + if t >= 6 { HOUR } else { 0 };
        for s in 0..3u64 {
            let span_id = id(2000 + t * 10 + s, 8);
            let parent = if s == 0 { vec![] } else { id(2000 + t * 10, 8) };
            batch.spans.push(SpanRow {
                trace_id: trace_id.clone(),
                span_id,
                parent_span_id: parent,
                trace_state: if s == 1 { "k=v".into() } else { String::new() },
                name: format!("GET /orders/{s}"),
                kind: 2 + (s as i32 % 2),
                service: service.into(),
                start_time_unix_nano: start + s * 1_000_000,
                end_time_unix_nano: start + s * 1_000_000 + 5_000_000 * (s + 1),
                attributes: vec![
                    kv("http.route", &format!("/orders/{s}")),
                    int("n", s as i64),
                ],
                resource: resource(service, t % 2).into(),
                scope_name: "io.weft.fixture".into(),
                scope_version: "1.0".into(),
                events: if s == 2 {
                    vec![Event {
                        time_unix_nano: start + 1,
                        name: "exception".into(),
                        attributes: vec![kv("exception.type", "Timeout")],
                        dropped_attributes_count: 0,
                    }]
                } else {
                    vec![]
                },
                links: vec![],
                status_code: if t == 3 && s == 2 { 2 } else { 0 },
                status_message: if t == 3 && s == 2 {
                    "deadline exceeded".into()
                } else {
                    String::new()
                },
                flags: 1,
                scope_attributes: vec![kv("scope.kind", "test")].into(),
                dropped_attributes_count: s as u32,
                origin: 0,
            });
        }
        for l in 0..5u64 {
            let body = if l == 4 {
                Some(AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("msg", "structured body"), int("code", 7)],
                    })),
                })
            } else {
                text(&format!(
                    "{} {} for order {}",
                    WORDS[((t + l) % 6) as usize],
                    WORDS[((t * 3 + l) % 6) as usize],
                    t * 10 + l
                ))
            };
            batch.logs.push(LogRow {
                time_unix_nano: start + l * 2_000_000,
                observed_time_unix_nano: if l % 2 == 0 {
                    start + l * 2_000_000 + 7
                } else {
                    0
                },
                service: service.into(),
                severity_number: [9, 13, 17, 5, 9][l as usize],
                severity_text: ["INFO", "WARN", "ERROR", "DEBUG", "INFO"][l as usize].into(),
                event: if l == 2 {
                    "order.failed".into()
                } else {
                    String::new()
                },
                body,
                trace_id: if l == 3 { vec![] } else { trace_id.clone() },
                span_id: if l == 3 {
                    vec![]
                } else {
                    id(2000 + t * 10 + l % 3, 8)
                },
                attributes: vec![
                    kv("http.method", "GET"),
                    int("http.status_code", [200, 404, 500, 200, 201][l as usize]),
                    kv("order.id", &format!("{}", t * 10 + l)),
                ],
                resource: resource(service, t % 2).into(),
                scope_name: if l == 1 {
                    String::new()
                } else {
                    "io.weft.fixture".into()
                },
                scope_version: "1.0".into(),
                flags: (l % 2) as u32,
                dropped_attributes_count: 0,
                scope_attributes: vec![kv("scope.kind", "test")].into(),
                origin: 0,
            });
        }
    }
    batch
}

/// The committed store written by `format`'s code.
fn fixture_dir(format: Format) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("format-v{}", format.number()))
}

#[test]
#[ignore = "writes the fixture; run only with the code of the format it is named after"]
fn write_fixture() {
    assert!(
        std::env::var_os("WEFT_WRITE_FIXTURE").is_some(),
        "this overwrites the committed fixture; set WEFT_WRITE_FIXTURE=1 to mean it"
    );
    let dir = fixture_dir(Format::CURRENT);
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let batch = fixture_rows();
    assert_eq!(store.index_batch(0, 1, &batch).unwrap(), batch.len());
    store.commit(1).unwrap();
    drop(store);
    // Lock files are not part of a store at rest.
    for signal in ["logs", "spans"] {
        for partition in std::fs::read_dir(dir.join(signal)).unwrap() {
            let path = partition.unwrap().path();
            for lock in [".tantivy-meta.lock", ".tantivy-writer.lock"] {
                let _ = std::fs::remove_file(path.join(lock));
            }
        }
    }
}

/// The formats a fixture was written in: every format before the current one.
const OLD_FORMATS: [Format; 2] = [Format::V1, Format::V2];

/// A copy of a fixture to open (opening may write: a new partition's format file, merges).
fn fixture_copy(format: Format) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(format), copy.path());
    copy
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The same rows written by today's code.
fn current_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = fixture_rows();
    assert_eq!(store.index_batch(0, 1, &batch).unwrap(), batch.len());
    store.commit(1).unwrap();
    (dir, store)
}

fn all_logs(store: &Store, query: &str) -> Vec<LogRow> {
    let mut logs = store
        .search_logs(&LogSearch {
            query: parse(query).unwrap(),
            start_unix_nano: 0,
            end_unix_nano: u64::MAX,
            limit: 1000,
            cursor: None,
        })
        .unwrap()
        .logs;
    logs.sort_by_key(Message::encode_to_vec);
    logs
}

fn sorted<M: Message>(mut rows: Vec<M>) -> Vec<M> {
    rows.sort_by_key(Message::encode_to_vec);
    rows
}

fn trace_ids(batch: &RowBatch) -> Vec<[u8; 16]> {
    let mut ids: Vec<[u8; 16]> = batch
        .spans
        .iter()
        .map(|s| s.trace_id.as_slice().try_into().unwrap())
        .collect();
    ids.dedup();
    ids
}

fn traces(store: &Store, query: &str) -> Vec<[u8; 16]> {
    let mut ids: Vec<[u8; 16]> = store
        .search_traces(&TraceSearch {
            query: parse(query).unwrap(),
            start_unix_nano: 0,
            end_unix_nano: u64::MAX,
            min_duration_ns: None,
            max_duration_ns: None,
            limit: 100,
        })
        .unwrap()
        .traces
        .iter()
        .map(|t| t.trace_id)
        .collect();
    ids.sort();
    ids
}

/// Every row comes back exactly as it was written, by search and by trace.
fn assert_rows_round_trip(store: &Store) {
    let batch = fixture_rows();
    assert_eq!(all_logs(store, ""), sorted(batch.logs.clone()));
    for id in trace_ids(&batch) {
        let rows = store.trace(&id, 100, 100).unwrap();
        let spans: Vec<SpanRow> = batch
            .spans
            .iter()
            .filter(|s| s.trace_id == id)
            .cloned()
            .collect();
        let logs: Vec<LogRow> = batch
            .logs
            .iter()
            .filter(|l| l.trace_id == id)
            .cloned()
            .collect();
        assert_eq!(
            sorted(rows.spans),
            sorted(spans),
            "spans of {}",
            hex::encode(id)
        );
        assert_eq!(
            sorted(rows.logs),
            sorted(logs),
            "logs of {}",
            hex::encode(id)
        );
    }
}

/// Log queries of every kind, and trace queries with how many traces each must find.
fn queries(batch: &RowBatch) -> (Vec<String>, Vec<(String, usize)>) {
    let log = &batch.logs[7];
    let span = &batch.spans[4];
    let logs = vec![
        format!("trace_id:{}", hex::encode(&log.trace_id)),
        format!("span_id:{}", hex::encode(&log.span_id)),
        "attr.order.id:12".to_string(),
        "resource.host.name:host-1".to_string(),
        "\"card retry\"".to_string(),
        "card retry".to_string(),
        "service:payments".to_string(),
        "scope:io.weft.fixture".to_string(),
        "event:order.failed".to_string(),
        "service:pay*".to_string(),
        "event:order.*".to_string(),
        "card -resource.host.name:host-1".to_string(),
        "service:payments OR resource.host.name:host-0".to_string(),
        "severity>=WARN".to_string(),
        "order -retry".to_string(),
    ];
    // Spans: trace t has service SERVICES[t % 3], host t % 2, an error in trace 3, and an
    // `exception` event in its third span.
    let traces = vec![
        (format!("span_id:{}", hex::encode(&span.span_id)), 1),
        (
            format!("parent_span_id:{}", hex::encode(&span.parent_span_id)),
            1,
        ),
        (format!("trace_id:{}", hex::encode(&span.trace_id)), 1),
        ("status:error".to_string(), 1),
        ("exception".to_string(), 8),
        ("service:checkout".to_string(), 3),
        ("resource.host.name:host-0".to_string(), 4),
        ("service:check*".to_string(), 3),
        ("service:checkout -resource.host.name:host-0".to_string(), 1),
    ];
    (logs, traces)
}

fn assert_queries(store: &Store) {
    let batch = fixture_rows();
    let (logs, trace_queries) = queries(&batch);
    for query in logs {
        // What weft's row matcher (live tail's) says the query matches.
        let matcher = LogMatcher::new(parse(&query).unwrap()).unwrap();
        let want: Vec<LogRow> = batch
            .logs
            .iter()
            .filter(|l| matcher.matches(l))
            .cloned()
            .collect();
        assert!(!want.is_empty(), "{query} matches something");
        assert_eq!(
            all_logs(store, &query),
            sorted(want),
            "logs matching {query}"
        );
    }
    for (query, want) in trace_queries {
        assert_eq!(traces(store, &query).len(), want, "traces matching {query}");
    }
}

#[test]
fn each_fixture_is_its_format_and_reads_back_exactly() {
    for format in OLD_FORMATS {
        let dir = fixture_copy(format);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.partition_formats(), vec![format; 4]);
        assert_rows_round_trip(&store);
        assert_queries(&store);
    }
}

#[test]
fn the_current_format_reads_back_exactly_and_answers_the_same_queries() {
    let (_dir, store) = current_store();
    assert_eq!(store.partition_formats(), vec![Format::CURRENT; 4]);
    assert_rows_round_trip(&store);
    assert_queries(&store);
    // The same answers as each old format, row for row.
    for format in OLD_FORMATS {
        let old_dir = fixture_copy(format);
        let old = Store::open(old_dir.path()).unwrap();
        let (logs, trace_queries) = queries(&fixture_rows());
        for query in &logs {
            assert_eq!(
                all_logs(&store, query),
                all_logs(&old, query),
                "{query} against format {}",
                format.number()
            );
        }
        for (query, _) in &trace_queries {
            assert_eq!(
                traces(&store, query),
                traces(&old, query),
                "{query} against format {}",
                format.number()
            );
        }
    }
}

#[test]
fn rows_added_to_an_old_partition_keep_its_format_and_a_new_hour_gets_the_current_one() {
    for format in OLD_FORMATS {
        rows_added_keep_the_partition_format(format);
    }
}

fn rows_added_keep_the_partition_format(old: Format) {
    let dir = fixture_copy(old);
    let store = Store::open(dir.path()).unwrap();
    let mut extra = fixture_rows();
    // One more copy of each row, a millisecond later, half in the fixture's first hour (a
    // partition of the old format) and half in an hour it does not have.
    for (i, log) in extra.logs.iter_mut().enumerate() {
        log.time_unix_nano += 1_000_000 + if i % 2 == 0 { 0 } else { 4 * HOUR };
        log.body = text(&format!("added {i}"));
    }
    extra.spans.clear();
    store.index_batch(1, 2, &extra).unwrap();
    store.commit(2).unwrap();
    let mut formats = store.partition_formats();
    formats.sort();
    assert_eq!(
        formats,
        vec![old, old, old, old, Format::CURRENT, Format::CURRENT]
    );
    assert_eq!(all_logs(&store, "added").len(), extra.logs.len());
    let mut want = fixture_rows().logs;
    want.extend(extra.logs);
    assert_eq!(all_logs(&store, ""), sorted(want));
    // Reopened, each partition keeps the format it was created in.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let mut reopened = store.partition_formats();
    reopened.sort();
    assert_eq!(reopened, formats);
}

#[test]
fn a_partition_of_an_unknown_format_is_refused_with_a_reason() {
    let dir = fixture_copy(Format::V1);
    let partition = dir.path().join("logs/2026-11-27T10");
    std::fs::write(partition.join("weft-format"), "99\n").unwrap();
    let error = Store::open(dir.path())
        .err()
        .expect("an unknown format must not open");
    assert!(
        error
            .to_string()
            .contains("format 99 is newer than this weft reads"),
        "{error}"
    );
}

#[test]
fn a_lost_format_file_is_written_again_from_the_schema() {
    let (dir, store) = current_store();
    drop(store);
    let file = dir.path().join("logs/2026-11-27T10/weft-format");
    std::fs::remove_file(&file).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.partition_formats(), vec![Format::CURRENT; 4]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        Format::CURRENT.number().to_string()
    );
    assert_rows_round_trip(&store);
}

#[test]
fn a_format_file_that_contradicts_the_schema_is_refused() {
    let (dir, store) = current_store();
    drop(store);
    let file = dir.path().join("logs/2026-11-27T10/weft-format");
    for (text, reason) in [
        ("1\n", "says format 1 but its schema is format 3's"),
        ("2\n", "says format 2 but its schema is format 3's"),
        ("0\n", "0 is not a partition format"),
        ("two\n", "holds 'two', not a number"),
    ] {
        std::fs::write(&file, text).unwrap();
        let error = Store::open(dir.path())
            .err()
            .expect("a contradiction must not open");
        assert!(error.to_string().contains(reason), "{text}: {error}");
    }
}

#[test]
fn records_sharing_a_time_and_differing_only_in_origin_page_apart() {
    // Same time, same body, same IDs; only the host differs, which format 2 keeps in a column.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let logs: Vec<LogRow> = (0..3)
        .map(|host| LogRow {
            time_unix_nano: BASE,
            service: "svc".into(),
            body: text("same words"),
            resource: resource("svc", host).into(),
            ..Default::default()
        })
        .collect();
    store
        .index_batch(
            0,
            1,
            &RowBatch {
                logs: logs.clone(),
                spans: vec![],
            },
        )
        .unwrap();
    store.commit(1).unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .search_logs(&LogSearch {
                query: parse("same").unwrap(),
                start_unix_nano: 0,
                end_unix_nano: u64::MAX,
                limit: 1,
                cursor,
            })
            .unwrap();
        seen.extend(page.logs);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(seen.len() <= logs.len(), "paging repeats records");
    }
    assert_eq!(sorted(seen), sorted(logs));
}

/// Layer peeling reads values from postings in format 1 partitions and from columns (the
/// origin, string columns) in format 2 ones: the same rows give the same answers either way.
#[test]
fn facets_and_span_statistics_agree_across_formats() {
    for format in OLD_FORMATS {
        facets_and_span_statistics_agree_with(format);
    }
}

fn facets_and_span_statistics_agree_with(format: Format) {
    use weft_index::Signal;
    use weft_index::peel::{FieldRef, StatsRequest};
    let copy = fixture_copy(format);
    let old = Store::open(copy.path()).unwrap();
    let (_dir, new) = current_store();
    let (start, end) = (0, u64::MAX / 2);
    for (signal, fields) in [
        (
            Signal::Logs,
            "service,severity,event,scope,resource.host.name,resource.service.name,attr.attempt",
        ),
        (
            Signal::Spans,
            "service,name,kind,status,scope,resource.host.name,attr.http.route,attr.n",
        ),
    ] {
        let fields: Vec<FieldRef> = fields
            .split(',')
            .map(|f| FieldRef::parse(signal, f).unwrap())
            .collect();
        let a = old.facets(signal, None, start, end, &fields, 100).unwrap();
        let b = new.facets(signal, None, start, end, &fields, 100).unwrap();
        assert_eq!(a, b, "{signal:?} facets");
        // The field list: attribute and resource keys, and how many values each has.
        let listed = |store: &Store| store.field_list(signal, None, start, end).unwrap();
        let (old_fields, new_fields) = (listed(&old), listed(&new));
        assert!(
            old_fields
                .iter()
                .any(|f| f.field.to_string() == "resource.host.name"),
            "{old_fields:?}"
        );
        assert_eq!(old_fields, new_fields, "{signal:?} field list");
        assert!(
            a.facets
                .iter()
                .all(|f| f.with_field > 0 || f.field.to_string() == "attr.attempt")
        );
        // With a query, values are read per selected row (postings or columns).
        let query = weft_index::query::parse("-service:payments").unwrap();
        let a = old
            .facets(signal, query.as_ref(), start, end, &fields, 100)
            .unwrap();
        let b = new
            .facets(signal, query.as_ref(), start, end, &fields, 100)
            .unwrap();
        assert_eq!(a, b, "{signal:?} facets of a selection");
        assert!(a.total > 0);
    }
    let request = StatsRequest {
        query: None,
        start,
        end,
        group_by: vec![
            FieldRef::Resource("host.name".into()),
            FieldRef::Name,
            FieldRef::Scope,
        ],
        series_buckets: 0,
    };
    let summary = |store: &Store| {
        let stats = store.span_stats(&request).unwrap();
        stats
            .groups
            .into_iter()
            .map(|g| (g.key, g.count, g.errors, g.histogram, g.max_ns))
            .collect::<Vec<_>>()
    };
    let old_groups = summary(&old);
    assert_eq!(old_groups.len(), 6, "{old_groups:?}");
    assert_eq!(old_groups, summary(&new));
}

#[test]
fn every_kind_of_severity_and_event_reads_back_exactly() {
    // Format 3 keeps a named severity and the event in columns only, and anything else in the
    // stored row: each comes back as it was sent.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let logs: Vec<LogRow> = [
        (9, "INFO", "order.placed"),
        (10, "INFO2", ""),
        (9, "Information", "order.placed"),
        (9, "", "order.failed"),
        (-3, "INFO", ""),
        (0, "", ""),
        (0, "custom", "e"),
        (24, "FATAL4", "shutdown"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (severity_number, severity_text, event))| LogRow {
        time_unix_nano: BASE + i as u64,
        service: "svc".into(),
        severity_number,
        severity_text: severity_text.into(),
        event: event.into(),
        body: text(&format!("row {i}")),
        ..Default::default()
    })
    .collect();
    let batch = RowBatch {
        logs: logs.clone(),
        spans: vec![],
    };
    store.index_batch(0, 1, &batch).unwrap();
    store.commit(1).unwrap();
    assert_eq!(store.partition_formats(), vec![Format::CURRENT]);
    assert_eq!(all_logs(&store, ""), sorted(logs.clone()));
    // And the columns answer their filters.
    let matching = |query: &str| all_logs(&store, query).len();
    assert_eq!(matching("event:order.placed"), 2);
    assert_eq!(matching("event:order.*"), 3);
    assert_eq!(matching("severity:INFO"), 4);
    assert_eq!(matching("severity>=FATAL"), 1);
}
