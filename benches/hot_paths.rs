//! Micro-benchmarks of weft's hot paths, each per record so they compare with `weft bench`:
//! OTLP decode + normalize, WAL append (with and without fsync), index write (weft's and a bare
//! tantivy loop over equivalent documents, the ceiling weft is measured against), and trace
//! assembly.
//!
//! `cargo bench --bench hot_paths`

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use tantivy::schema::{FAST, JsonObjectOptions, STRING, Schema, TEXT};
use tantivy::{Index, TantivyDocument};
use weft::bench::traffic::{Generator, TrafficConfig, logs_request};
use weft::normalize;
use weft::pipeline::wal::Wal;
use weft_index::{RowBatch, Store};

const BATCH: usize = 1000;

fn sample_request() -> ExportLogsServiceRequest {
    let mut generator = Generator::new(
        42,
        TrafficConfig {
            services: 8,
            error_rate: 0.02,
            profile: weft::bench::traffic::Profile::Default,
        },
    );
    let mut records = Vec::new();
    while records.len() < BATCH {
        records.extend(generator.trace(1_800_000_000_000_000_000).logs);
    }
    records.truncate(BATCH);
    logs_request(records)
}

fn sample_rows() -> RowBatch {
    RowBatch {
        logs: normalize::logs(sample_request(), 1).rows,
        spans: Vec::new(),
    }
}

fn decode_and_normalize(c: &mut Criterion) {
    let bytes = sample_request().encode_to_vec();
    let mut group = c.benchmark_group("decode_normalize");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("logs_1000", |b| {
        b.iter(|| {
            let request = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
            let rows = normalize::logs(request, 1);
            RowBatch {
                logs: rows.rows,
                spans: Vec::new(),
            }
            .encode_packed()
        })
    });
    group.finish();
}

fn wal_append(c: &mut Criterion) {
    let payload = sample_rows().encode_to_vec();
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), 64 << 20, 0).unwrap();
    let mut group = c.benchmark_group("wal_append");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("batch_of_1000_no_sync", |b| {
        b.iter(|| wal.append(&payload).unwrap());
    });
    group.bench_function("batch_of_1000_with_fsync", |b| {
        b.iter(|| {
            wal.append(&payload).unwrap();
            wal.sync().unwrap();
        })
    });
    group.finish();
}

fn index_write(c: &mut Criterion) {
    let rows = sample_rows();
    let mut group = c.benchmark_group("index_write");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(10));
    group.sample_size(20);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut lsn = 0;
    // As the indexer does: the WAL entry's bytes come along, so rows are not encoded again.
    let payload = rows.clone().encode_packed();
    group.bench_function("weft_store_1000", |b| {
        b.iter(|| {
            lsn += 1;
            store
                .index_encoded_batch(lsn, lsn + 1, &rows, &payload)
                .unwrap()
        })
    });

    // The ceiling: tantivy alone, documents with the same text, keywords, numbers and JSON.
    let mut builder = Schema::builder();
    let time = builder.add_u64_field("time", FAST);
    let service = builder.add_text_field("service", STRING | FAST);
    let severity = builder.add_u64_field("severity", FAST);
    let event = builder.add_text_field("event", STRING | FAST);
    let body = builder.add_text_field("body", TEXT);
    let attr = builder.add_json_field(
        "attr",
        JsonObjectOptions::default().set_indexing_options(
            tantivy::schema::TextFieldIndexing::default().set_tokenizer("raw"),
        ),
    );
    let bare_dir = tempfile::tempdir().unwrap();
    let index = Index::create_in_dir(bare_dir.path(), builder.build()).unwrap();
    let writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 64 << 20).unwrap();
    group.bench_function("bare_tantivy_1000", |b| {
        b.iter_batched(
            || rows.logs.clone(),
            |logs| {
                for row in logs {
                    let mut doc = TantivyDocument::default();
                    doc.add_u64(time, row.time_unix_nano);
                    doc.add_text(service, &row.service);
                    doc.add_u64(severity, row.severity_number as u64);
                    doc.add_text(event, &row.event);
                    doc.add_text(body, row.body_text());
                    if let serde_json::Value::Object(map) =
                        weft_index::model::attributes_to_json(&row.attributes)
                    {
                        doc.add_object(attr, map.into_iter().map(|(k, v)| (k, v.into())).collect());
                    }
                    writer.add_document(doc).unwrap();
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn trace_assembly(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut generator = Generator::new(
        7,
        TrafficConfig {
            services: 8,
            error_rate: 0.02,
            profile: weft::bench::traffic::Profile::Default,
        },
    );
    let mut wanted = None;
    for lsn in 0..200u64 {
        let trace = generator.trace(1_800_000_000_000_000_000);
        let request = logs_request(trace.logs);
        let spans = weft::bench::traffic::spans_request(trace.spans);
        let batch = RowBatch {
            logs: normalize::logs(request, 1).rows,
            spans: normalize::spans(spans).rows,
        };
        if lsn == 100 {
            wanted = Some(trace.trace_id);
        }
        store.index_batch(lsn, lsn + 1, &batch).unwrap();
    }
    store.commit(1_000).unwrap();
    let id = wanted.unwrap();
    c.bench_function("trace_assembly_one_of_200", |b| {
        b.iter(|| store.trace(&id, 10_000, 50_000).unwrap())
    });
}

/// Severity rules evaluated for every record of a batch, with 1, 100 and 10,000 rules in force
/// (a mix of service, scope and event selectors, as operators create them).
fn severity_rules(c: &mut Criterion) {
    use weft::severity::rules::{Action, CompiledRules, Rule, Selector};
    let rows = sample_rows().logs;
    let mut group = c.benchmark_group("severity_rules");
    group.throughput(Throughput::Elements(rows.len() as u64));
    // 0 rules measures what handing a batch through costs (cloning and dropping rows), to
    // subtract from the others.
    for count in [0usize, 1, 100, 10_000] {
        let rules: Vec<Rule> = (0..count)
            .map(|i| Rule {
                id: format!("r{i}"),
                selector: match i % 3 {
                    0 => Selector {
                        service: Some(format!("svc{i}*")),
                        ..Default::default()
                    },
                    1 => Selector {
                        event: Some(format!("Event{i}")),
                        ..Default::default()
                    },
                    _ => Selector {
                        service: Some("checkout".into()),
                        scope: Some(format!("scope{i}")),
                        ..Default::default()
                    },
                },
                action: Action {
                    min_severity: Some(9),
                    set_severity: None,
                },
                expires_at: u64::MAX,
                reason: String::new(),
                created_by: "bench".into(),
                created_at: i as u64,
            })
            .collect();
        let compiled = CompiledRules::new(rules);
        group.bench_function(format!("{count}_rules_1000_records"), |b| {
            b.iter_batched(
                || rows.clone(),
                |mut rows| weft::severity::apply(&compiled, &mut rows, 0),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    decode_and_normalize,
    wal_append,
    index_write,
    trace_assembly,
    severity_rules
);
criterion_main!(benches);
