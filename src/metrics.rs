//! weft's own counters, rendered as Prometheus text at `/metrics`.
//!
//! Plain atomics: every label value is fixed (signal names), so there is no registry to grow.
//! The one family labelled by what clients send, the services' clock offsets, is rendered from
//! the index's estimate at each scrape and capped at [`CLOCK_OFFSET_SERVICES`].
//! A leaf: it names no other module. The pipeline's conditions (`crate::pipeline::health`) and
//! the refusals of the auth layer (`crate::auth::RefusalCounters`) render their own families
//! beside these.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for one signal.
#[derive(Default, Debug)]
pub struct SignalCounters {
    /// Records accepted into the write-ahead log.
    pub received: AtomicU64,
    /// Records rejected as invalid (counted in `partial_success`).
    pub rejected: AtomicU64,
    /// Records refused because weft was saturated or shutting down.
    pub dropped: AtomicU64,
}

/// Object storage: uploads, downloads, deletions and what waits.
#[derive(Default, Debug)]
pub struct StorageCounters {
    /// Splits uploaded and published.
    pub uploads: AtomicU64,
    /// Bytes of those splits.
    pub uploaded_bytes: AtomicU64,
    /// Failed attempts to pack, stage, upload or publish a split (each retried).
    pub upload_errors: AtomicU64,
    /// Sealed partitions waiting to be published.
    pub pending_uploads: AtomicU64,
    /// Splits downloaded whole, for late rows.
    pub fetches: AtomicU64,
    /// Bytes downloaded.
    pub fetched_bytes: AtomicU64,
    /// Ranged reads of splits read in place by queries (opening one is one read).
    pub reads: AtomicU64,
    /// Bytes of those reads.
    pub read_bytes: AtomicU64,
    /// Downloads and reads that failed (a query asking was answered 503).
    pub fetch_errors: AtomicU64,
    /// Splits deleted (retention, or replaced by a newer split).
    pub deletes: AtomicU64,
    /// Failed deletions (retried).
    pub delete_errors: AtomicU64,
    /// Local partition copies deleted to keep within `cache_bytes`.
    pub evictions: AtomicU64,
    /// Partitions kept only in object storage now.
    pub remote_partitions: AtomicU64,
}

/// Every counter and gauge weft exports.
#[derive(Default, Debug)]
pub struct Metrics {
    /// Log counters.
    pub logs: SignalCounters,
    /// Span counters.
    pub spans: SignalCounters,
    /// Log records dropped at ingest by severity rules.
    pub dropped_by_rules: AtomicU64,
    /// Requests refused with 503 / UNAVAILABLE.
    pub requests_refused: AtomicU64,
    /// WAL entries written.
    pub wal_entries: AtomicU64,
    /// fsyncs of the WAL (one per group commit).
    pub wal_syncs: AtomicU64,
    /// Bytes held by WAL segments.
    pub wal_bytes: AtomicU64,
    /// Position just past the last WAL entry.
    pub wal_end: AtomicU64,
    /// Position through which the index is committed.
    pub index_checkpoint: AtomicU64,
    /// Arrival time (unix ns) of the oldest row not yet searchable; 0 when none.
    pub oldest_unindexed_unix_nano: AtomicU64,
    /// Index commits made.
    pub commits: AtomicU64,
    /// Total time spent in index commits, microseconds.
    pub commit_micros_total: AtomicU64,
    /// Duration of the last index commit, microseconds.
    pub last_commit_micros: AtomicU64,
    /// Rows indexed.
    pub rows_indexed: AtomicU64,
    /// Partitions deleted by retention.
    pub partitions_deleted: AtomicU64,
    /// Bytes of index partitions on disk (refreshed by the retention timer).
    pub index_bytes: AtomicU64,
    /// Groups whose WAL append or fsync failed (each refused, none acknowledged).
    pub wal_errors: AtomicU64,
    /// Indexing or commit failures (each followed by a rollback and a retry from the WAL).
    pub index_errors: AtomicU64,
    /// WAL entries that passed their checksum but did not decode, copied aside.
    pub wal_entries_quarantined: AtomicU64,
    /// Partition writers open now.
    pub open_writers: AtomicU64,
    /// The most partition writers open at once since start.
    pub open_writers_peak: AtomicU64,
    /// Export requests whose decoding panicked (answered as retryable).
    pub ingest_panics: AtomicU64,
    /// TLS configurations taken from changed files (or on SIGHUP).
    pub tls_reloads: AtomicU64,
    /// Reloads refused (unreadable or mismatched files); the previous configuration stays.
    pub tls_reload_errors: AtomicU64,
    /// Object storage (all zero without `storage`).
    pub storage: StorageCounters,
}

/// Services named in `weft_clock_offset_seconds`: the ones whose estimates rest on the most
/// calls. Service names come from clients, so the family is bounded like everything else.
pub const CLOCK_OFFSET_SERVICES: usize = 200;

/// `weft_clock_offset_seconds{service}`: each service's estimated clock offset
/// (`weft_index::clock`), for the services whose estimates rest on the most calls.
pub fn render_clock_offsets(
    offsets: &std::collections::BTreeMap<String, weft_index::clock::ClockOffset>,
) -> String {
    let mut named: Vec<_> = offsets.iter().collect();
    named.sort_by(|a, b| b.1.pairs.cmp(&a.1.pairs).then(a.0.cmp(b.0)));
    named.truncate(CLOCK_OFFSET_SERVICES);
    named.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from(
        "# HELP weft_clock_offset_seconds How far a service's clock runs ahead of its callers' (negative: behind), estimated from the calls indexed since start.\n\
         # TYPE weft_clock_offset_seconds gauge\n",
    );
    for (service, offset) in named {
        let _ = writeln!(
            out,
            "weft_clock_offset_seconds{{service=\"{}\"}} {}",
            escape_label(service),
            offset.offset_ns as f64 / 1e9
        );
    }
    out
}

/// A label value as the text format needs it: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Metrics {
    /// The counters for `signal` ("logs" or "spans").
    pub fn signal(&self, signal: weft_index::Signal) -> &SignalCounters {
        match signal {
            weft_index::Signal::Logs => &self.logs,
            weft_index::Signal::Spans => &self.spans,
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self, now_unix_nano: u64) -> String {
        let mut out = String::with_capacity(2048);
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let per_signal = |f: fn(&SignalCounters) -> &AtomicU64| {
            [
                ("{signal=\"logs\"}", get(f(&self.logs))),
                ("{signal=\"spans\"}", get(f(&self.spans))),
            ]
        };
        family(
            "weft_records_received_total",
            "counter",
            "Records accepted and written to the write-ahead log.",
            &per_signal(|c| &c.received),
        );
        family(
            "weft_records_rejected_total",
            "counter",
            "Records rejected as invalid and reported in partial_success.",
            &per_signal(|c| &c.rejected),
        );
        family(
            "weft_records_dropped_total",
            "counter",
            "Records refused because weft was saturated or shutting down.",
            &per_signal(|c| &c.dropped),
        );
        family(
            "weft_records_dropped_by_rules_total",
            "counter",
            "Log records dropped at ingest by severity rules (per rule: GET /api/v1/severity/rules).",
            &[("", get(&self.dropped_by_rules))],
        );
        family(
            "weft_requests_refused_total",
            "counter",
            "Export requests answered with 503 or UNAVAILABLE.",
            &[("", get(&self.requests_refused))],
        );
        family(
            "weft_wal_entries_total",
            "counter",
            "Entries appended to the write-ahead log.",
            &[("", get(&self.wal_entries))],
        );
        family(
            "weft_wal_syncs_total",
            "counter",
            "fsyncs of the write-ahead log; entries per sync shows group commit at work.",
            &[("", get(&self.wal_syncs))],
        );
        let st = &self.storage;
        for (name, kind, help, value) in [
            (
                "weft_storage_uploads_total",
                "counter",
                "Splits uploaded to object storage and published.",
                &st.uploads,
            ),
            (
                "weft_storage_uploaded_bytes_total",
                "counter",
                "Bytes of the splits uploaded.",
                &st.uploaded_bytes,
            ),
            (
                "weft_storage_upload_errors_total",
                "counter",
                "Failed attempts to pack, stage, upload or publish a split; each is retried.",
                &st.upload_errors,
            ),
            (
                "weft_storage_pending_uploads",
                "gauge",
                "Sealed partitions waiting to be published.",
                &st.pending_uploads,
            ),
            (
                "weft_storage_fetches_total",
                "counter",
                "Splits downloaded whole from object storage, for late records.",
                &st.fetches,
            ),
            (
                "weft_storage_fetched_bytes_total",
                "counter",
                "Bytes of splits downloaded whole.",
                &st.fetched_bytes,
            ),
            (
                "weft_storage_reads_total",
                "counter",
                "Ranged reads of splits that queries read in place.",
                &st.reads,
            ),
            (
                "weft_storage_read_bytes_total",
                "counter",
                "Bytes of ranged reads of splits.",
                &st.read_bytes,
            ),
            (
                "weft_storage_fetch_errors_total",
                "counter",
                "Downloads and ranged reads that failed; a query asking was answered 503.",
                &st.fetch_errors,
            ),
            (
                "weft_storage_deletes_total",
                "counter",
                "Splits deleted by retention or replaced by a newer split.",
                &st.deletes,
            ),
            (
                "weft_storage_delete_errors_total",
                "counter",
                "Failed split deletions; each is retried.",
                &st.delete_errors,
            ),
            (
                "weft_storage_evictions_total",
                "counter",
                "Local partition copies deleted to stay within cache_bytes.",
                &st.evictions,
            ),
            (
                "weft_storage_remote_partitions",
                "gauge",
                "Partitions kept only in object storage.",
                &st.remote_partitions,
            ),
        ] {
            family(name, kind, help, &[("", get(value))]);
        }
        family(
            "weft_wal_bytes",
            "gauge",
            "Bytes held by write-ahead log segments.",
            &[("", get(&self.wal_bytes))],
        );
        let lag_bytes = get(&self.wal_end).saturating_sub(get(&self.index_checkpoint));
        family(
            "weft_index_lag_bytes",
            "gauge",
            "Write-ahead log bytes not yet committed to the index.",
            &[("", lag_bytes)],
        );
        let oldest = get(&self.oldest_unindexed_unix_nano);
        let lag_seconds = if oldest == 0 {
            0.0
        } else {
            now_unix_nano.saturating_sub(oldest) as f64 / 1e9
        };
        let _ = writeln!(
            out,
            "# HELP weft_index_lag_seconds Age of the oldest acknowledged row not yet searchable.\n\
             # TYPE weft_index_lag_seconds gauge\nweft_index_lag_seconds {lag_seconds}"
        );
        let commits = get(&self.commits);
        let _ = writeln!(
            out,
            "# HELP weft_index_commit_duration_seconds Time spent committing the index.\n\
             # TYPE weft_index_commit_duration_seconds summary\n\
             weft_index_commit_duration_seconds_sum {}\n\
             weft_index_commit_duration_seconds_count {commits}",
            get(&self.commit_micros_total) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP weft_index_last_commit_duration_seconds Duration of the last index commit.\n\
             # TYPE weft_index_last_commit_duration_seconds gauge\n\
             weft_index_last_commit_duration_seconds {}",
            get(&self.last_commit_micros) as f64 / 1e6
        );
        let mut family = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        family(
            "weft_rows_indexed_total",
            "counter",
            "Rows added to the index.",
            get(&self.rows_indexed),
        );
        family(
            "weft_partitions_deleted_total",
            "counter",
            "Partitions deleted by retention.",
            get(&self.partitions_deleted),
        );
        family(
            "weft_index_bytes",
            "gauge",
            "Bytes of index partitions on disk.",
            get(&self.index_bytes),
        );
        family(
            "weft_wal_errors_total",
            "counter",
            "Write-ahead log appends or fsyncs that failed; their requests were refused, not acknowledged.",
            get(&self.wal_errors),
        );
        family(
            "weft_index_errors_total",
            "counter",
            "Indexing or commit failures, each followed by a rollback and a retry from the write-ahead log.",
            get(&self.index_errors),
        );
        family(
            "weft_wal_entries_quarantined_total",
            "counter",
            "Write-ahead log entries that did not decode, copied to wal-quarantine/ and skipped.",
            get(&self.wal_entries_quarantined),
        );
        family(
            "weft_index_open_writers",
            "gauge",
            "Partition writers open now (at most max_open_partitions).",
            get(&self.open_writers),
        );
        family(
            "weft_index_open_writers_peak",
            "gauge",
            "The most partition writers open at once since start, counted as each one opens.",
            get(&self.open_writers_peak),
        );
        family(
            "weft_ingest_panics_total",
            "counter",
            "Export requests whose processing panicked; answered UNAVAILABLE / 503 so the client retries.",
            get(&self.ingest_panics),
        );
        family(
            "weft_tls_reloads_total",
            "counter",
            "TLS certificates taken from changed files or on SIGHUP.",
            get(&self.tls_reloads),
        );
        family(
            "weft_tls_reload_errors_total",
            "counter",
            "TLS reloads refused (unreadable files, a key that does not match); the previous certificate stays in use.",
            get(&self.tls_reload_errors),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weft_index::clock::ClockOffset;

    use super::*;

    #[test]
    fn clock_offsets_escape_names_and_keep_the_best_founded() {
        let mut offsets = BTreeMap::new();
        for i in 0..CLOCK_OFFSET_SERVICES + 5 {
            let pairs = if i < 5 { 1 } else { 100 };
            offsets.insert(
                format!("svc-{i:04}"),
                ClockOffset {
                    offset_ns: 0,
                    pairs,
                },
            );
        }
        offsets.insert(
            "quote\"back\\slash\nline".to_string(),
            ClockOffset {
                offset_ns: -1_500_000_000,
                pairs: 1000,
            },
        );
        let text = render_clock_offsets(&offsets);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), CLOCK_OFFSET_SERVICES);
        assert!(
            samples
                .contains(&r#"weft_clock_offset_seconds{service="quote\"back\\slash\nline"} -1.5"#),
            "{text}"
        );
        // The five resting on one call each are the ones left out.
        assert!(!text.contains("svc-0000"), "{text}");
        assert!(text.contains("svc-0005"), "{text}");
    }
}
