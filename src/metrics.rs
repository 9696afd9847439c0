//! weft's own counters, rendered as Prometheus text at `/metrics`.
//!
//! Plain atomics: every label value is fixed (signal names), so there is no registry to grow.

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
        out
    }
}
