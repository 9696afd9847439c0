//! Span statistics grouped by any fields ("RED": rate, errors, duration), and the latency
//! heatmap. Durations go into [`LatencyHistogram`]s, which merge across segments, partitions
//! and (later) nodes; exemplars are remembered per latency bucket so every band of a group, and
//! every cell of the heatmap, leads to a real trace.

use std::collections::{BTreeMap, HashMap};

use tantivy::columnar::{BytesColumn, Column};
use tantivy::schema::IndexRecordOption;
use tantivy::{BitSet, DocId, DocSet, SegmentReader, TERMINATED, Term};

use super::fields::{FieldRef, NONE, SegmentValues, segment_values};
use super::{Selected, for_each_segment};
use crate::aggregate::filtered;
use crate::error::IndexError;
use crate::format::Format;
use crate::histogram::LatencyHistogram;
use crate::query::Expr;
use crate::schema::column;
use crate::store::Store;
use crate::{Signal, span_fields};

/// Fields a statistics request may group by.
pub const MAX_GROUP_BY: usize = 4;

/// Groups one answer tracks; spans of further groups are counted in the total only, and the
/// answer says so.
pub const MAX_GROUPS: usize = 10_000;

/// Time buckets of a series or a heatmap, at most.
pub const MAX_TIME_BUCKETS: usize = 500;

/// What to compute.
#[derive(Clone, Debug)]
pub struct StatsRequest {
    /// Spans to count (everything when `None`).
    pub query: Option<Expr>,
    /// Range start (unix nanoseconds).
    pub start: u64,
    /// Range end, exclusive.
    pub end: u64,
    /// Fields to group by, at most [`MAX_GROUP_BY`]; none puts every span in one group.
    pub group_by: Vec<FieldRef>,
    /// Time buckets of each group's series (for sparklines); 0 for none.
    pub series_buckets: usize,
}

/// One time bucket of a group's series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesPoint {
    /// Spans.
    pub count: u64,
    /// Spans with status error.
    pub errors: u64,
    /// Their durations.
    pub histogram: LatencyHistogram,
}

/// A trace that shows one latency band of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandExemplar {
    /// `p50`, `p90`, `p99` or `max`: the band's upper percentile.
    pub band: &'static str,
    /// The trace.
    pub trace_id: [u8; 16],
    /// Duration of the span that stands for the band.
    pub duration_ns: u64,
}

/// Statistics of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStats {
    /// The group's value of each `group_by` field (`None`: spans without it).
    pub key: Vec<Option<String>>,
    /// Spans.
    pub count: u64,
    /// Spans with status error.
    pub errors: u64,
    /// Their durations.
    pub histogram: LatencyHistogram,
    /// The longest duration, exact.
    pub max_ns: u64,
    /// A trace per latency band, slowest band last.
    pub exemplars: Vec<BandExemplar>,
    /// Counts per time bucket, when asked for.
    pub series: Vec<SeriesPoint>,
}

/// Statistics of a selection of spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanStats {
    /// Spans selected.
    pub total: u64,
    /// Groups, most spans first.
    pub groups: Vec<GroupStats>,
    /// True when more than [`MAX_GROUPS`] groups were found: the rest are left out.
    pub groups_capped: bool,
    /// True when a grouping field had more values than weft reads in one segment.
    pub values_capped: bool,
    /// Width of a series bucket.
    pub series_bucket_ns: u64,
}

/// One non-empty cell of a heatmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeatmapCell {
    /// Time bucket index.
    pub time_bucket: u32,
    /// Latency bucket, as [`LatencyHistogram::bucket`] numbers them.
    pub latency_bucket: u8,
    /// Spans in the cell.
    pub count: u64,
    /// The slowest span's trace, and its duration.
    pub exemplar: Option<([u8; 16], u64)>,
}

/// Time buckets × latency buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heatmap {
    /// Spans selected.
    pub total: u64,
    /// Width of a time bucket.
    pub bucket_ns: u64,
    /// Time buckets.
    pub buckets: usize,
    /// Non-empty cells, by time then latency.
    pub cells: Vec<HeatmapCell>,
}

/// The columns one segment's spans are read from.
struct SpanColumns {
    start: Column<u64>,
    duration: Column<u64>,
    traces: Option<BytesColumn>,
    errors: BitSet,
}

impl SpanColumns {
    fn open(reader: &SegmentReader) -> Result<Self, IndexError> {
        let fast = reader.fast_fields();
        let trace_column = match Format::of_checked_schema(reader.schema()) {
            Format::V1 => "trace_id",
            Format::V2 => column::TRACE,
        };
        let mut errors = BitSet::with_max_value(reader.max_doc().max(1));
        let status = span_fields().status;
        let term = Term::from_field_text(status, "error");
        if let Some(mut postings) = reader
            .inverted_index(status)?
            .read_postings(&term, IndexRecordOption::Basic)?
        {
            let mut doc = postings.doc();
            while doc != TERMINATED {
                errors.insert(doc);
                doc = postings.advance();
            }
        }
        Ok(SpanColumns {
            start: fast.u64("start")?,
            duration: fast.u64("duration")?,
            traces: fast.bytes(trace_column)?,
            errors,
        })
    }

    fn trace_id(&self, doc: DocId) -> Option<[u8; 16]> {
        let column = self.traces.as_ref()?;
        let ord = column.term_ords(doc).next()?;
        let mut bytes = Vec::with_capacity(16);
        if !column.ord_to_bytes(ord, &mut bytes).ok()? {
            return None;
        }
        bytes.try_into().ok()
    }
}

/// Equal time buckets over `[start, end)`: their width, and the index of a time.
struct TimeBuckets {
    start: u64,
    width: u64,
    count: usize,
}

impl TimeBuckets {
    fn new(start: u64, end: u64, count: usize) -> Self {
        let count = count.clamp(1, MAX_TIME_BUCKETS);
        TimeBuckets {
            start,
            width: end.saturating_sub(start).div_ceil(count as u64).max(1),
            count,
        }
    }

    fn of(&self, time: u64) -> Option<usize> {
        let i = (time.checked_sub(self.start)? / self.width) as usize;
        (i < self.count).then_some(i)
    }
}

/// A group as it is being counted; exemplars are kept per latency bucket.
#[derive(Default)]
struct Accumulator<E> {
    count: u64,
    errors: u64,
    histogram: LatencyHistogram,
    max_ns: u64,
    exemplars: BTreeMap<u8, (E, u64)>,
    series: Vec<SeriesPoint>,
}

impl<E: Copy> Accumulator<E> {
    fn record(
        &mut self,
        duration: u64,
        error: bool,
        exemplar: E,
        series_at: Option<(usize, usize)>,
    ) {
        self.count += 1;
        self.errors += u64::from(error);
        self.histogram.record(duration);
        self.max_ns = self.max_ns.max(duration);
        let bucket = LatencyHistogram::bucket(duration);
        let kept = self.exemplars.entry(bucket).or_insert((exemplar, duration));
        // The slowest span of the bucket stands for it.
        if duration > kept.1 {
            *kept = (exemplar, duration);
        }
        if let Some((at, len)) = series_at {
            if self.series.is_empty() {
                self.series = vec![SeriesPoint::default(); len];
            }
            let point = &mut self.series[at];
            point.count += 1;
            point.errors += u64::from(error);
            point.histogram.record(duration);
        }
    }

    fn merge_into(
        self,
        total: &mut Accumulator<[u8; 16]>,
        resolve: impl Fn(E) -> Option<[u8; 16]>,
    ) {
        total.count += self.count;
        total.errors += self.errors;
        total.histogram.merge(&self.histogram);
        total.max_ns = total.max_ns.max(self.max_ns);
        for (bucket, (e, duration)) in self.exemplars {
            let Some(id) = resolve(e) else { continue };
            let kept = total.exemplars.entry(bucket).or_insert((id, duration));
            if duration > kept.1 {
                *kept = (id, duration);
            }
        }
        if !self.series.is_empty() {
            if total.series.is_empty() {
                total.series = vec![SeriesPoint::default(); self.series.len()];
            }
            for (t, s) in total.series.iter_mut().zip(self.series) {
                t.count += s.count;
                t.errors += s.errors;
                t.histogram.merge(&s.histogram);
            }
        }
    }
}

impl Accumulator<[u8; 16]> {
    fn finish(self, key: Vec<Option<String>>) -> GroupStats {
        let mut exemplars: Vec<BandExemplar> = Vec::new();
        for (band, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
            let Some(bucket) = self.histogram.quantile_bucket(q) else {
                continue;
            };
            // The exemplar of the band's bucket, or of the nearest bucket below it.
            let Some((_, (trace_id, duration_ns))) = self.exemplars.range(..=bucket).next_back()
            else {
                continue;
            };
            // One trace standing for several bands is listed once, under the highest.
            if let Some(last) = exemplars.last_mut().filter(|e| e.trace_id == *trace_id) {
                last.band = band;
                continue;
            }
            exemplars.push(BandExemplar {
                band,
                trace_id: *trace_id,
                duration_ns: *duration_ns,
            });
        }
        GroupStats {
            key,
            count: self.count,
            errors: self.errors,
            histogram: self.histogram,
            max_ns: self.max_ns,
            exemplars,
            series: self.series,
        }
    }
}

impl Store {
    /// Span statistics per group of `request.group_by` values.
    pub fn span_stats(&self, request: &StatsRequest) -> Result<SpanStats, IndexError> {
        if request.group_by.len() > MAX_GROUP_BY {
            return Err(crate::query::QueryError::syntax(
                0,
                format!("group by at most {MAX_GROUP_BY} fields"),
            )
            .into());
        }
        let query = filtered(
            request.query.as_ref(),
            Signal::Spans,
            request.start,
            request.end,
        )?;
        let series = (request.series_buckets > 0)
            .then(|| TimeBuckets::new(request.start, request.end, request.series_buckets));
        let mut answer = SpanStats {
            series_bucket_ns: series.as_ref().map_or(0, |s| s.width),
            ..Default::default()
        };
        let mut groups: HashMap<Vec<Option<String>>, Accumulator<[u8; 16]>> = HashMap::new();
        for partition in self.partitions_overlapping(Signal::Spans, request.start, request.end) {
            let searcher = partition.searcher();
            for_each_segment(&searcher, &query, |reader, selected| {
                answer.total += selected.docs.len() as u64;
                let columns = SpanColumns::open(reader)?;
                let mut values: Vec<SegmentValues> = Vec::new();
                for field in &request.group_by {
                    let (v, capped) = segment_values(Signal::Spans, field, reader, selected)?;
                    answer.values_capped |= capped;
                    values.push(v);
                }
                let segment = group_segment(selected, &columns, &values, series.as_ref());
                for (ords, acc) in segment {
                    let key: Vec<Option<String>> = values
                        .iter()
                        .zip(ords)
                        .map(|(v, ord)| (ord != NONE).then(|| v.names[ord as usize].clone()))
                        .collect();
                    if !groups.contains_key(&key) && groups.len() >= MAX_GROUPS {
                        answer.groups_capped = true;
                        continue;
                    }
                    let total = groups.entry(key).or_default();
                    acc.merge_into(total, |doc| columns.trace_id(doc));
                }
                Ok(())
            })?;
        }
        answer.groups = groups
            .into_iter()
            .map(|(key, acc)| acc.finish(key))
            .collect();
        answer
            .groups
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        Ok(answer)
    }

    /// Span counts per time bucket and latency bucket, with the slowest trace of each cell.
    pub fn span_heatmap(
        &self,
        query: Option<&Expr>,
        start: u64,
        end: u64,
        buckets: usize,
    ) -> Result<Heatmap, IndexError> {
        let tantivy_query = filtered(query, Signal::Spans, start, end)?;
        let time = TimeBuckets::new(start, end, buckets);
        // (time bucket, latency bucket) -> count, and the slowest span's trace and duration.
        type Exemplar = Option<([u8; 16], u64)>;
        let mut cells: BTreeMap<(u32, u8), (u64, Exemplar)> = BTreeMap::new();
        let mut total = 0;
        for partition in self.partitions_overlapping(Signal::Spans, start, end) {
            let searcher = partition.searcher();
            for_each_segment(&searcher, &tantivy_query, |reader, selected| {
                total += selected.docs.len() as u64;
                let columns = SpanColumns::open(reader)?;
                let mut segment: HashMap<(u32, u8), (u64, DocId, u64)> = HashMap::new();
                for &doc in &selected.docs {
                    let Some(t) = columns.start.first(doc).and_then(|s| time.of(s)) else {
                        continue;
                    };
                    let duration = columns.duration.first(doc).unwrap_or(0);
                    let cell = (t as u32, LatencyHistogram::bucket(duration));
                    let entry = segment.entry(cell).or_insert((0, doc, duration));
                    entry.0 += 1;
                    if duration > entry.2 {
                        entry.1 = doc;
                        entry.2 = duration;
                    }
                }
                for (cell, (count, doc, duration)) in segment {
                    let entry = cells.entry(cell).or_insert((0, None));
                    entry.0 += count;
                    if entry.1.is_none_or(|(_, d)| duration > d)
                        && let Some(id) = columns.trace_id(doc)
                    {
                        entry.1 = Some((id, duration));
                    }
                }
                Ok(())
            })?;
        }
        Ok(Heatmap {
            total,
            bucket_ns: time.width,
            buckets: time.count,
            cells: cells
                .into_iter()
                .map(
                    |((time_bucket, latency_bucket), (count, exemplar))| HeatmapCell {
                        time_bucket,
                        latency_bucket,
                        count,
                        exemplar,
                    },
                )
                .collect(),
        })
    }
}

/// One segment's selected spans counted per group, keyed by value ordinals.
fn group_segment(
    selected: &Selected,
    columns: &SpanColumns,
    values: &[SegmentValues],
    series: Option<&TimeBuckets>,
) -> HashMap<[u32; MAX_GROUP_BY], Accumulator<DocId>> {
    let mut groups: HashMap<[u32; MAX_GROUP_BY], Accumulator<DocId>> = HashMap::new();
    for &doc in &selected.docs {
        let mut key = [NONE; MAX_GROUP_BY];
        for (slot, v) in key.iter_mut().zip(values) {
            *slot = v.get(doc);
        }
        let duration = columns.duration.first(doc).unwrap_or(0);
        let error = columns.errors.contains(doc);
        let series_at = series.and_then(|s| {
            let at = s.of(columns.start.first(doc)?)?;
            Some((at, s.count))
        });
        groups
            .entry(key)
            .or_default()
            .record(duration, error, doc, series_at);
    }
    groups
}
