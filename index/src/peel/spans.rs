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
}

/// A span found in some segment: which segment's trace column (an index into
/// [`TraceSources`]) and its document there.
#[derive(Clone, Copy)]
struct SpanRef {
    source: u32,
    doc: DocId,
}

/// The trace columns of the segments an answer read. Reading a trace ID from one is a
/// dictionary lookup, so exemplars are kept as [`SpanRef`]s and only the few that end up in the
/// answer are read.
#[derive(Default)]
struct TraceSources(Vec<Option<BytesColumn>>);

impl TraceSources {
    fn add(&mut self, columns: &SpanColumns) -> u32 {
        self.0.push(columns.traces.clone());
        (self.0.len() - 1) as u32
    }

    fn trace_id(&self, span: SpanRef) -> Option<[u8; 16]> {
        let column = self.0.get(span.source as usize)?.as_ref()?;
        let ord = column.term_ords(span.doc).next()?;
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

/// Latency buckets a duration can fall in.
const LATENCY_BUCKETS: usize = 256;

/// A group of one segment as it is counted: plain arrays indexed by latency bucket, so a span
/// costs a few array writes.
struct SegmentGroup {
    count: u64,
    errors: u64,
    max_ns: u64,
    buckets: Box<[u32; LATENCY_BUCKETS]>,
    /// The slowest span of each latency bucket: its duration and document.
    slowest: Box<[(u64, DocId); LATENCY_BUCKETS]>,
    series: Vec<SeriesPoint>,
}

impl SegmentGroup {
    fn new() -> Self {
        SegmentGroup {
            count: 0,
            errors: 0,
            max_ns: 0,
            buckets: Box::new([0; LATENCY_BUCKETS]),
            slowest: Box::new([(0, DocId::MAX); LATENCY_BUCKETS]),
            series: Vec::new(),
        }
    }

    #[inline]
    fn record(
        &mut self,
        doc: DocId,
        duration: u64,
        error: bool,
        series_at: Option<(usize, usize)>,
    ) {
        self.count += 1;
        self.errors += u64::from(error);
        self.max_ns = self.max_ns.max(duration);
        let bucket = usize::from(LatencyHistogram::bucket(duration));
        self.buckets[bucket] += 1;
        let slowest = &mut self.slowest[bucket];
        if slowest.1 == DocId::MAX || duration > slowest.0 {
            *slowest = (duration, doc);
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
}

/// A group merged over segments and partitions; exemplars are kept per latency bucket.
#[derive(Default)]
struct Group {
    count: u64,
    errors: u64,
    histogram: LatencyHistogram,
    max_ns: u64,
    exemplars: BTreeMap<u8, (SpanRef, u64)>,
    series: Vec<SeriesPoint>,
}

impl Group {
    fn merge(&mut self, segment: SegmentGroup, source: u32) {
        self.count += segment.count;
        self.errors += segment.errors;
        self.max_ns = self.max_ns.max(segment.max_ns);
        for (bucket, (&n, &(duration, doc))) in segment
            .buckets
            .iter()
            .zip(segment.slowest.iter())
            .enumerate()
        {
            if n == 0 {
                continue;
            }
            let bucket = bucket as u8;
            self.histogram.add(bucket, u64::from(n));
            let span = SpanRef { source, doc };
            let kept = self.exemplars.entry(bucket).or_insert((span, duration));
            if duration > kept.1 {
                *kept = (span, duration);
            }
        }
        if !segment.series.is_empty() {
            if self.series.is_empty() {
                self.series = vec![SeriesPoint::default(); segment.series.len()];
            }
            for (t, s) in self.series.iter_mut().zip(segment.series) {
                t.count += s.count;
                t.errors += s.errors;
                t.histogram.merge(&s.histogram);
            }
        }
    }

    fn finish(self, key: Vec<Option<String>>, sources: &TraceSources) -> GroupStats {
        let mut exemplars: Vec<BandExemplar> = Vec::new();
        for (band, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
            let Some(bucket) = self.histogram.quantile_bucket(q) else {
                continue;
            };
            // The exemplar of the band's bucket, or of the nearest bucket below it.
            let Some((_, (span, duration_ns))) = self.exemplars.range(..=bucket).next_back() else {
                continue;
            };
            let Some(trace_id) = sources.trace_id(*span) else {
                continue;
            };
            // One trace standing for several bands is listed once, under the highest.
            if let Some(last) = exemplars.last_mut().filter(|e| e.trace_id == trace_id) {
                last.band = band;
                continue;
            }
            exemplars.push(BandExemplar {
                band,
                trace_id,
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
        let mut groups: HashMap<Vec<Option<String>>, Group> = HashMap::new();
        let mut sources = TraceSources::default();
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
                let source = sources.add(&columns);
                let segment = group_segment(selected, &columns, &values, series.as_ref());
                answer.groups_capped |= segment.capped;
                for (ords, group) in segment.groups {
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
                    total.merge(group, source);
                }
                Ok(())
            })?;
        }
        answer.groups = groups
            .into_iter()
            .map(|(key, group)| group.finish(key, &sources))
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
        type Exemplar = Option<(SpanRef, u64)>;
        let mut sources = TraceSources::default();
        let mut cells: BTreeMap<(u32, u8), (u64, Exemplar)> = BTreeMap::new();
        let mut total = 0;
        for partition in self.partitions_overlapping(Signal::Spans, start, end) {
            let searcher = partition.searcher();
            for_each_segment(&searcher, &tantivy_query, |reader, selected| {
                total += selected.docs.len() as u64;
                let columns = SpanColumns::open(reader)?;
                let source = sources.add(&columns);
                // Per (time bucket, latency bucket): count, slowest duration, its document.
                let mut segment = vec![(0u64, 0u64, DocId::MAX); time.count * LATENCY_BUCKETS];
                for &doc in &selected.docs {
                    let Some(t) = columns.start.first(doc).and_then(|s| time.of(s)) else {
                        continue;
                    };
                    let duration = columns.duration.first(doc).unwrap_or(0);
                    let latency = usize::from(LatencyHistogram::bucket(duration));
                    let cell = &mut segment[t * LATENCY_BUCKETS + latency];
                    cell.0 += 1;
                    if cell.2 == DocId::MAX || duration > cell.1 {
                        cell.1 = duration;
                        cell.2 = doc;
                    }
                }
                for (at, (count, duration, doc)) in segment.into_iter().enumerate() {
                    if count == 0 {
                        continue;
                    }
                    let cell = ((at / LATENCY_BUCKETS) as u32, (at % LATENCY_BUCKETS) as u8);
                    let entry = cells.entry(cell).or_insert((0, None));
                    entry.0 += count;
                    if entry.1.is_none_or(|(_, d)| duration > d) {
                        entry.1 = Some((SpanRef { source, doc }, duration));
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
                        exemplar: exemplar
                            .and_then(|(span, duration)| Some((sources.trace_id(span)?, duration))),
                    },
                )
                .collect(),
        })
    }
}

/// One segment's groups, each with its value ordinals.
struct SegmentGroups {
    groups: Vec<([u32; MAX_GROUP_BY], SegmentGroup)>,
    capped: bool,
}

/// Most combinations of value ordinals indexed through a plain array; beyond it, a hash map.
const DENSE_KEYS: usize = 1 << 16;

/// One segment's selected spans counted per group.
fn group_segment(
    selected: &Selected,
    columns: &SpanColumns,
    values: &[SegmentValues],
    series: Option<&TimeBuckets>,
) -> SegmentGroups {
    // A key's ordinals, mixed-radix: each field's ordinal plus one (zero: no value).
    let radices: Vec<usize> = values.iter().map(|v| v.names.len() + 1).collect();
    let combinations = radices
        .iter()
        .try_fold(1usize, |n, r| n.checked_mul(*r))
        .filter(|n| *n <= DENSE_KEYS);
    let mut dense: Vec<u32> = vec![NONE; combinations.unwrap_or(0)];
    let mut sparse: HashMap<[u32; MAX_GROUP_BY], u32> = HashMap::new();
    let mut out = SegmentGroups {
        groups: Vec::new(),
        capped: false,
    };
    for &doc in &selected.docs {
        let mut key = [NONE; MAX_GROUP_BY];
        let mut index = 0usize;
        for ((slot, v), radix) in key.iter_mut().zip(values).zip(&radices) {
            *slot = v.get(doc);
            index = index * radix + slot.wrapping_add(1) as usize;
        }
        let known = if combinations.is_some() {
            dense[index]
        } else {
            sparse.get(&key).copied().unwrap_or(NONE)
        };
        let slot = if known != NONE {
            known as usize
        } else if out.groups.len() >= MAX_GROUPS {
            out.capped = true;
            continue;
        } else {
            let slot = out.groups.len();
            out.groups.push((key, SegmentGroup::new()));
            if combinations.is_some() {
                dense[index] = slot as u32;
            } else {
                sparse.insert(key, slot as u32);
            }
            slot
        };
        let duration = columns.duration.first(doc).unwrap_or(0);
        let error = columns.errors.contains(doc);
        let series_at = series.and_then(|s| {
            let at = s.of(columns.start.first(doc)?)?;
            Some((at, s.count))
        });
        out.groups[slot].1.record(doc, duration, error, series_at);
    }
    out
}
