//! Layer peeling: the aggregations a user drills down with when looking for a cause.
//!
//! - `fields`: which fields can be aggregated ([`FieldRef`]), and the value each selected row
//!   has for one, read per segment from the inverted index (any attribute key, declared or not)
//!   or, through `columns`, from a column (severity, service, name, kind, event, and format 2's
//!   origin for scope and resource keys) — never from stored rows;
//! - `facets`: the top values of fields, and the fields present in a selection;
//! - `spans`: span statistics grouped by any fields (count, errors, latency percentiles from
//!   [`LatencyHistogram`](crate::histogram::LatencyHistogram), exemplars) and the latency heatmap;
//! - `compare`: which field values are over-represented in a selection against a baseline.
//!
//! Every aggregation first runs the query over a segment into a [`Selected`] set of documents,
//! then reads only what it needs for those documents. Attribute values come from the term
//! dictionary and postings that search already keeps, so making undeclared keys aggregatable
//! costs no bytes and no ingest work; the price is paid at query time, in proportion to the
//! postings of the fields asked for.

mod columns;
mod compare;
mod facets;
mod fields;
mod spans;

pub use compare::{Comparison, Finding, comparable_fields, findings};
pub use facets::{
    CountedField, Facet, FacetValue, Facets, FieldInfo, PerField, ValueCounts, merge_counted_fields,
};
pub use fields::FieldRef;
pub use spans::{
    BandExemplar, GroupStats, Heatmap, HeatmapCell, MAX_GROUP_BY, MAX_GROUPS, MAX_TIME_BUCKETS,
    SeriesPoint, SpanStats, StatsRequest,
};

use tantivy::query::{EnableScoring, Query, Weight};
use tantivy::{BitSet, DocId, Searcher, SegmentReader};

use crate::error::IndexError;

/// The documents of one segment a query selected, in ascending order and as a set.
pub(crate) struct Selected {
    pub(crate) docs: Vec<DocId>,
    pub(crate) set: BitSet,
}

impl Selected {
    pub(crate) fn of(weight: &dyn Weight, reader: &SegmentReader) -> Result<Self, IndexError> {
        let mut docs = Vec::new();
        let mut set = BitSet::with_max_value(reader.max_doc().max(1));
        weight.for_each_no_score(reader, &mut |found: &[DocId]| {
            for &doc in found {
                if set.insert(doc) {
                    docs.push(doc);
                }
            }
        })?;
        docs.sort_unstable();
        Ok(Selected { docs, set })
    }
}

/// Runs `query` over every segment of `searcher`, handing each segment's selection to `visit`.
pub(crate) fn for_each_segment(
    searcher: &Searcher,
    query: &dyn Query,
    mut visit: impl FnMut(&SegmentReader, &Selected) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    for reader in searcher.segment_readers() {
        let selected = Selected::of(weight.as_ref(), reader)?;
        if !selected.docs.is_empty() {
            visit(reader, &selected)?;
        }
    }
    Ok(())
}
