//! Time-partitioned tantivy storage for weft's logs and spans.
//!
//! Layout:
//! - [`model`]: the rows (`LogRow`, `SpanRow`), their JSON view, and a WAL entry's packed
//!   encoding (`RowBatch::encode_packed`: each run of rows with one origin holds it once).
//! - `schema`: tantivy fields per signal and the documents built from rows; `attributes`: OTLP
//!   attributes handed to tantivy's JSON fields by reference.
//! - `format`: partition format numbers; `rows`: how formats 2 and 3 split a row between the
//!   doc store and columns, and rebuild it; `ids`: ID lookups in every format.
//! - `partition`: one hour of one signal, with the WAL position of its last commit.
//! - [`store`]: all partitions; writing (within a cap on open writers), commit and checkpoint,
//!   rollback after a failure, retention; with object storage, sealing, eviction from the
//!   local cache and fetching back (the storage itself is the caller's, behind
//!   [`store::SplitFetcher`]).
//! - [`split`]: a sealed partition packed into one file (files + hot cache + footer), and
//!   unpacked; `hot_cache`: which byte ranges opening a partition reads, recorded at packing;
//!   `split_directory`: a split in object storage read in place by ranged reads, for queries;
//!   `trace_filter`: the trace IDs a sealed partition holds, so that a trace lookup fetches
//!   only the splits that may have the trace.
//! - [`faults`]: faults on demand for tests (full disk, failing writes), and the tantivy
//!   directory that injects them.
//! - [`query`]: the query language (`service:checkout severity>=WARN "card declined"`), parsed
//!   into an expression and compiled per signal into tantivy queries.
//! - `search`: log search with cursors, trace assembly; `traces`: summaries and trace search;
//!   [`aggregate`]: histogram and catalogs from fast fields.
//! - [`calls`]: calls between services, paired while indexing and committed with each span
//!   partition (the dependency graph, the service map); [`histogram`]: mergeable latencies.
//! - [`peel`]: layer peeling — facets of any field (attribute keys included), span statistics
//!   grouped by any fields, the latency heatmap, and what is over-represented in a selection.
//! - [`footprint`]: where the bytes go, per part of tantivy's format and per field
//!   (`weft inspect`).
//!
//! The crate is synchronous and knows nothing of HTTP or gRPC; weft calls it from dedicated
//! threads.
#![deny(missing_docs)]

pub mod aggregate;
mod attributes;
pub mod calls;
mod column_scan;
mod error;
pub mod faults;
pub mod footprint;
mod format;
pub mod histogram;
mod hot_cache;
mod ids;
pub mod model;
mod partition;
pub mod peel;
pub mod query;
mod rows;
mod schema;
mod search;
pub mod severity;
pub mod split;
mod split_directory;
pub mod store;
pub mod text;
mod trace_filter;
mod traces;

pub use error::IndexError;
pub use format::Format;
pub use model::{LogRow, RowBatch, SpanRow};
pub use partition::{PARTITION_NANOS, SEGMENT_MAX_DOCS, partition_start};
pub use search::{LogCursor, LogPage, LogSearch, TraceRows};
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
