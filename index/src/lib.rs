//! Time-partitioned tantivy storage for weft's logs and spans.
//!
//! Layout, from a row to an answer:
//! - [`model`]: the rows (`LogRow`, `SpanRow`), their JSON view, and a WAL entry's packed
//!   encoding (`RowBatch::encode_packed`: each run of rows with one origin holds it once).
//! - `schema`: tantivy fields per signal and the documents built from rows; `attributes`: OTLP
//!   attributes handed to tantivy's JSON fields by reference.
//! - `format`: partition format numbers and the names of their columns; `rows`: how formats 2
//!   and 3 split a row between the doc store and columns, and rebuild it; `ids`: ID lookups in
//!   every format; `column_scan`: scanning a column for IDs.
//! - `partition`: one hour of one signal, with the WAL position of its last commit; `merge`:
//!   how its segments grow (the merge policy and its cap).
//! - [`store`]: all partitions, by job: writing (within a cap on open writers), commit and
//!   checkpoint, rollback after a failure (`store/write.rs`); retention (`store/retention.rs`);
//!   with object storage, sealing, publishing, eviction and fetching back
//!   (`store/splits.rs`; the storage itself is the caller's, behind [`store::SplitFetcher`]);
//!   which partitions a read opens (`store/read.rs`); calls (`store/calls.rs`).
//! - [`split`]: a sealed partition packed into one file (files + hot cache + footer), and
//!   unpacked; `split::hot_cache`: which byte ranges opening a partition reads, recorded at
//!   packing; `split::directory`: a split in object storage read in place by ranged reads;
//!   `trace_filter`: the trace IDs a sealed partition holds, so that a trace lookup fetches
//!   only the splits that may have the trace.
//! - [`query`]: the query language (`service:checkout severity>=WARN "card declined"`), parsed
//!   into an expression and compiled per signal into tantivy queries; [`text`]: the one parser
//!   of each kind of value (durations, times, IDs, status names); [`severity`]: severity names.
//! - The questions, each an `impl Store` block beside its algorithm: `search` (log search with
//!   cursors), `lookup` (a trace's rows in one searcher) and `traces` (a trace, summaries, trace
//!   search), [`aggregate`] (histogram and catalogs from fast fields), [`peel`] (facets of any
//!   field, span statistics by any fields, the latency heatmap, what is over-represented in a
//!   selection), [`patterns`] (the templates of a selection's log bodies, clustered by
//!   [`templates`], which the `pattern:` filter also uses).
//! - [`calls`]: calls between services, paired while indexing and committed with each span
//!   partition (the dependency graph, the service map); [`clock`]: each service's clock
//!   offset estimated from those calls; [`histogram`]: mergeable latencies.
//! - [`faults`]: faults on demand for tests (full disk, failing writes), and the tantivy
//!   directory that injects them; [`footprint`]: where the bytes go, per part of tantivy's
//!   format and per field (`weft inspect`).
//!
//! One circle among these modules is kept on purpose: `error` wraps the query language's
//! errors (`query::QueryError`), the query compiler builds ID lookups (`ids`), which read the
//! partition format (`format`), whose checks fail with `error::IndexError`. Each error type
//! stays with its module and [`IndexError`] wraps them, as tantivy's own error does; breaking
//! the circle would mean an error type that knows no module. `scripts/modgraph.py index/src`
//! lists the modules and what each uses.
//!
//! The crate is synchronous and knows nothing of HTTP or gRPC; weft calls it from dedicated
//! threads.
#![deny(missing_docs)]

pub mod aggregate;
mod attributes;
pub mod calls;
pub mod clock;
mod column_scan;
mod error;
pub mod faults;
pub mod footprint;
mod format;
pub mod histogram;
mod ids;
mod lookup;
mod merge;
pub mod model;
mod partition;
pub mod patterns;
pub mod peel;
pub mod query;
mod rows;
mod schema;
mod search;
pub mod severity;
pub mod split;
pub mod store;
pub mod templates;
pub mod text;
mod trace_filter;
mod traces;

pub use error::IndexError;
pub use format::Format;
pub use lookup::TraceRows;
pub use merge::SEGMENT_MAX_DOCS;
pub use model::{LogRow, RowBatch, SpanRow};
pub use partition::{PARTITION_NANOS, partition_start};
pub use search::{LogCursor, LogPage, LogSearch};
pub use store::{CommitStats, RetentionPolicy, Store, StoreOptions};
pub use traces::{
    Candidates, MAX_CANDIDATE_TRACES, SummaryPart, TraceCandidate, TraceSearch, TraceSearchResult,
    TraceSummary,
};

use schema::{LogFields, SpanFields};
use std::sync::OnceLock;

/// The two kinds of rows weft stores, each in partitions of its own.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Log records.
    Logs,
    /// Spans.
    Spans,
}

impl Signal {
    /// Directory name under the data root.
    pub fn dir_name(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Spans => "spans",
        }
    }

    fn schema(self, format: Format) -> tantivy::schema::Schema {
        match self {
            Signal::Logs => LogFields::schema(format),
            Signal::Spans => SpanFields::schema(format),
        }
    }
}

/// Field handles are the same for every partition of a signal, so they are built once.
pub(crate) fn log_fields() -> &'static LogFields {
    static FIELDS: OnceLock<LogFields> = OnceLock::new();
    FIELDS.get_or_init(LogFields::new)
}

pub(crate) fn span_fields() -> &'static SpanFields {
    static FIELDS: OnceLock<SpanFields> = OnceLock::new();
    FIELDS.get_or_init(SpanFields::new)
}
