//! Layer peeling on a data set whose answer is known: twenty hosts, one of them (`h7`) slow,
//! one kernel version (`6.8`, hosts 15–19) failing. Facets, grouped statistics, the heatmap and
//! the comparison must each point at them, across partitions and segments.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use weft_index::histogram::LatencyHistogram;
use weft_index::peel::{FieldRef, StatsRequest};
use weft_index::query::parse;
use weft_index::{LogRow, PARTITION_NANOS, RowBatch, Signal, SpanRow, Store};

const HOUR: u64 = PARTITION_NANOS;
const BASE: u64 = 1_800_000_000 * 1_000_000_000 / HOUR * HOUR;
const MS: u64 = 1_000_000;
const HOSTS: u64 = 20;
const PER_HOST: u64 = 50;

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
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

fn kernel(host: u64) -> &'static str {
    if host >= 15 { "6.8" } else { "6.1" }
}

fn resource(host: u64) -> Vec<KeyValue> {
    vec![
        string("host.name", &format!("h{host}")),
        string("host.kernel", kernel(host)),
    ]
}

/// Span `i` of host `host`: its own trace; `h7` takes 800+ ms, the rest 10–59 ms; on kernel 6.8
/// every third span fails.
fn span(host: u64, i: u64) -> SpanRow {
    let n = host * PER_HOST + i;
    let mut trace_id = vec![0u8; 16];
    trace_id[..8].copy_from_slice(&n.to_be_bytes());
    trace_id[8] = 1;
    let ms = if host == 7 { 800 + i } else { 10 + i % 50 };
    // Half the spans in the first hour, half in the second, in two batches each.
    let start = BASE + (i % 2) * HOUR + n * MS;
    SpanRow {
        trace_id,
        span_id: (n + 1).to_be_bytes().to_vec(),
        name: if i.is_multiple_of(2) {
            "GET /cart"
        } else {
            "POST /pay"
        }
        .into(),
        service: "checkout".into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + ms * MS,
        status_code: if kernel(host) == "6.8" && i.is_multiple_of(3) {
            2
        } else {
            1
        },
        attributes: vec![int(
            "http.status_code",
            if i.is_multiple_of(5) { 404 } else { 200 },
        )],
        resource: resource(host).into(),
        ..Default::default()
    }
}

/// Log `i` of host `host`: kernel 6.8 logs ERROR every other record, the rest INFO; each with
/// a unique order ID (a near-unique key).
fn log(host: u64, i: u64) -> LogRow {
    let n = host * PER_HOST + i;
    LogRow {
        time_unix_nano: BASE + n * MS,
        service: "checkout".into(),
        severity_number: if kernel(host) == "6.8" && i.is_multiple_of(2) {
            17
        } else {
            9
        },
        attributes: vec![string("order.id", &format!("o{n}"))],
        resource: resource(host).into(),
        ..Default::default()
    }
}

fn trace_of(host: u64, i: u64) -> [u8; 16] {
    span(host, i).trace_id.try_into().unwrap()
}

fn loaded() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut lsn = 0;
    for half in 0..2 {
        let mut batch = RowBatch {
            logs: vec![],
            spans: vec![],
        };
        for host in 0..HOSTS {
            for i in (0..PER_HOST).filter(|i| (i / 10) % 2 == half) {
                batch.spans.push(span(host, i));
                batch.logs.push(log(host, i));
            }
        }
        store.index_batch(lsn, lsn + 1, &batch).unwrap();
        lsn += 1;
        // A commit per half: two segments per partition.
        store.commit(lsn).unwrap();
    }
    (dir, store)
}

const END: u64 = BASE + 3 * HOUR;

fn q(text: &str) -> Option<weft_index::query::Expr> {
    parse(text).unwrap()
}

#[test]
fn facets_count_every_value_and_follow_the_query() {
    let (_dir, store) = loaded();
    let fields = [
        FieldRef::parse(Signal::Spans, "resource.host.name").unwrap(),
        FieldRef::parse(Signal::Spans, "attr.http.status_code").unwrap(),
        FieldRef::parse(Signal::Spans, "status").unwrap(),
    ];
    let all = store
        .facets(Signal::Spans, None, BASE, END, &fields, 5)
        .unwrap();
    assert_eq!(all.total, HOSTS * PER_HOST);
    let hosts = &all.facets[0];
    assert_eq!(hosts.distinct, HOSTS);
    assert_eq!(hosts.with_field, HOSTS * PER_HOST);
    assert_eq!(hosts.values.len(), 5, "limited to 5");
    assert!(hosts.values.iter().all(|v| v.count == PER_HOST));
    let codes: Vec<(&str, u64)> = all.facets[1]
        .values
        .iter()
        .map(|v| (v.value.as_str(), v.count))
        .collect();
    assert_eq!(
        codes,
        [("200", 800), ("404", 200)],
        "integer attributes as text"
    );
    let errors = all.facets[2].values.iter().find(|v| v.value == "error");
    // Hosts 15-19, spans 0, 3, …, 48 of each: 17 each.
    assert_eq!(errors.map(|v| v.count), Some(5 * 17));

    let slow = store
        .facets(
            Signal::Spans,
            q("duration>=500ms").as_ref(),
            BASE,
            END,
            &fields[..1],
            5,
        )
        .unwrap();
    assert_eq!(slow.total, PER_HOST);
    assert_eq!(slow.facets[0].distinct, 1);
    assert_eq!(slow.facets[0].values[0].value, "h7");

    let logs = store
        .facets(
            Signal::Logs,
            q("severity>=error").as_ref(),
            BASE,
            END,
            &[FieldRef::Severity, FieldRef::Resource("host.kernel".into())],
            5,
        )
        .unwrap();
    assert_eq!(logs.total, 5 * 25);
    assert_eq!(logs.facets[0].values[0].value, "error");
    assert_eq!(logs.facets[1].values.len(), 1);
    assert_eq!(logs.facets[1].values[0].value, "6.8");
}

#[test]
fn the_field_list_has_undeclared_keys_and_marks_near_unique_ones() {
    let (_dir, store) = loaded();
    let fields = store.field_list(Signal::Logs, None, BASE, END).unwrap();
    let find = |name: &str| fields.iter().find(|f| f.field.to_string() == name);
    let kernel = find("resource.host.kernel").expect("resource.host.kernel listed");
    assert!(kernel.exact);
    assert_eq!(kernel.distinct, 2);
    assert_eq!(kernel.with_field, Some(HOSTS * PER_HOST));
    let order = find("attr.order.id").expect("attr.order.id listed");
    assert_eq!((order.distinct, order.with_field), (1000, Some(1000)));
    assert!(find("service").is_some() && find("severity").is_some());
    assert!(find("event").is_none(), "no record has an event ID");

    let spans = store
        .field_list(Signal::Spans, q("duration>=500ms").as_ref(), BASE, END)
        .unwrap();
    let host = spans
        .iter()
        .find(|f| f.field.to_string() == "resource.host.name")
        .unwrap();
    assert_eq!((host.distinct, host.with_field), (1, Some(PER_HOST)));

    // A key with more values in one segment than are counted one by one: listed with an
    // estimate.
    let later = BASE + 2 * HOUR;
    let logs = (0..1500)
        .map(|n| LogRow {
            time_unix_nano: later + n,
            service: "checkout".into(),
            attributes: vec![string("request.id", &format!("r{n}"))],
            ..Default::default()
        })
        .collect();
    store
        .index_batch(
            2,
            3,
            &RowBatch {
                logs,
                spans: vec![],
            },
        )
        .unwrap();
    store.commit(3).unwrap();
    let fields = store
        .field_list(Signal::Logs, None, later, later + HOUR)
        .unwrap();
    let request = fields
        .iter()
        .find(|f| f.field.to_string() == "attr.request.id")
        .unwrap();
    assert_eq!(
        (request.exact, request.distinct, request.with_field),
        (false, 1500, None)
    );
}

#[test]
fn stats_by_host_single_out_the_slow_one_with_its_traces() {
    let (_dir, store) = loaded();
    let stats = store
        .span_stats(&StatsRequest {
            query: None,
            start: BASE,
            end: END,
            group_by: vec![FieldRef::Resource("host.name".into())],
            series_buckets: 3,
        })
        .unwrap();
    assert_eq!(stats.total, HOSTS * PER_HOST);
    assert_eq!(stats.groups.len(), HOSTS as usize);
    for group in &stats.groups {
        assert_eq!(group.count, PER_HOST);
        let p99 = group.histogram.quantile(0.99).unwrap();
        let host = group.key[0].as_deref().unwrap();
        if host == "h7" {
            assert!(p99 >= 800 * MS, "{host}: {p99}");
            assert_eq!(group.max_ns, 849 * MS);
            let h7: Vec<[u8; 16]> = (0..PER_HOST).map(|i| trace_of(7, i)).collect();
            assert!(!group.exemplars.is_empty());
            for e in &group.exemplars {
                assert!(
                    h7.contains(&e.trace_id),
                    "exemplar of {host} is its own trace"
                );
            }
            assert_eq!(group.exemplars.last().unwrap().band, "max");
            assert_eq!(group.exemplars.last().unwrap().duration_ns, 849 * MS);
        } else {
            assert!(p99 < 80 * MS, "{host}: {p99}");
        }
        // Series: three buckets of an hour; the spans fall in the first two.
        assert_eq!(group.series.len(), 3);
        assert_eq!(group.series.iter().map(|s| s.count).sum::<u64>(), PER_HOST);
        assert_eq!(group.series[2].count, 0);
    }

    let by_kernel = store
        .span_stats(&StatsRequest {
            query: None,
            start: BASE,
            end: END,
            group_by: vec![FieldRef::Resource("host.kernel".into()), FieldRef::Name],
            series_buckets: 0,
        })
        .unwrap();
    assert_eq!(by_kernel.groups.len(), 4);
    for group in &by_kernel.groups {
        let failing = group.key[0].as_deref() == Some("6.8");
        assert_eq!(group.errors > 0, failing, "{:?}", group.key);
    }
    let errors: u64 = by_kernel.groups.iter().map(|g| g.errors).sum();
    assert_eq!(errors, 5 * 17);
}

#[test]
fn the_heatmap_puts_the_slow_host_in_its_own_band() {
    let (_dir, store) = loaded();
    let heatmap = store.span_heatmap(None, BASE, END, 6).unwrap();
    assert_eq!(heatmap.total, HOSTS * PER_HOST);
    assert_eq!(heatmap.buckets, 6);
    assert_eq!(
        heatmap.cells.iter().map(|c| c.count).sum::<u64>(),
        HOSTS * PER_HOST
    );
    let h7: Vec<[u8; 16]> = (0..PER_HOST).map(|i| trace_of(7, i)).collect();
    let slow_band = LatencyHistogram::heatmap_row(500 * MS);
    let slow: Vec<_> = heatmap
        .cells
        .iter()
        .filter(|c| c.latency_bucket >= slow_band)
        .collect();
    assert_eq!(slow.iter().map(|c| c.count).sum::<u64>(), PER_HOST);
    for cell in slow {
        let (trace, duration) = cell.exemplar.unwrap();
        assert!(h7.contains(&trace));
        let (low, high) = LatencyHistogram::heatmap_row_bounds(cell.latency_bucket);
        assert!(
            low <= duration && duration <= high,
            "{duration} in {low}..={high}"
        );
    }
}

#[test]
fn comparisons_name_the_slow_host_and_the_failing_kernel() {
    let (_dir, store) = loaded();
    let slow = store
        .compare(
            Signal::Spans,
            &q("duration>=500ms").unwrap(),
            None,
            BASE,
            END,
            10,
        )
        .unwrap();
    assert_eq!(slow.selection_total, PER_HOST);
    assert_eq!(slow.baseline_total, (HOSTS - 1) * PER_HOST);
    let top = &slow.findings[0];
    assert_eq!(
        (top.field.to_string().as_str(), top.value.as_str()),
        ("resource.host.name", "h7")
    );
    assert_eq!((top.selection_share, top.baseline_share), (1.0, 0.0));

    let errors = store
        .compare(
            Signal::Logs,
            &q("severity>=error").unwrap(),
            None,
            BASE,
            END,
            10,
        )
        .unwrap();
    let top = &errors.findings[0];
    assert_eq!(
        (top.field.to_string().as_str(), top.value.as_str()),
        ("resource.host.kernel", "6.8")
    );
    assert!(
        !errors
            .fields
            .iter()
            .any(|f| f.to_string() == "attr.order.id"),
        "near-unique keys are not compared"
    );
    // A baseline given explicitly: the failed spans against all spans of kernel 6.8.
    let against = store
        .compare(
            Signal::Spans,
            &q("status:error").unwrap(),
            q("resource.host.kernel:6.8").as_ref(),
            BASE,
            END,
            50,
        )
        .unwrap();
    assert_eq!(against.baseline_total, 5 * PER_HOST);
    assert_eq!(against.selection_total, 5 * 17);
    assert!(
        !against.fields.contains(&FieldRef::Status),
        "the field the selection is made by is not compared"
    );
    assert!(
        against
            .findings
            .iter()
            .all(|f| f.field.to_string() != "resource.host.kernel"),
        "kernel 6.8 is the whole of both: no difference"
    );
}

#[test]
fn a_duration_band_selects_and_excludes_its_spans() {
    let (_dir, store) = loaded();
    let count = |text: &str| {
        store
            .facets(
                Signal::Spans,
                q(text).as_ref(),
                BASE,
                END,
                &[FieldRef::Service],
                1,
            )
            .unwrap()
            .total
    };
    // h7's spans take 800-849 ms, every other span under 60 ms.
    assert_eq!(count("duration>=500ms duration<900ms"), PER_HOST);
    assert_eq!(
        count("service:checkout duration>=500ms duration<900ms"),
        PER_HOST
    );
    assert_eq!(
        count("service:checkout -(duration>=500ms duration<900ms)"),
        (HOSTS - 1) * PER_HOST
    );
    assert_eq!(
        count("-(duration>=500ms duration<900ms)"),
        (HOSTS - 1) * PER_HOST
    );
}
