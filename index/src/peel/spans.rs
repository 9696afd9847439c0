//! Span statistics grouped by any fields ("RED": rate, errors, duration), and the latency
//! heatmap. Durations go into [`LatencyHistogram`]s, which merge across segments, partitions
//! and (later) nodes; exemplars are remembered per latency bucket so every band of a group, and
//! every cell of the heatmap, leads to a real trace.

use std::collections::{BTreeMap, HashMap};

use tantivy::columnar::{BytesColumn, Column};
use tantivy::schema::IndexRecordOption;
use tantivy::{BitSet, DocId, DocSet, SegmentReader, TERMINATED, Term};

use super::columns::BLOCK;
use super::fields::{FieldRef, NONE, SegmentValues, segment_values};
use super::{Selected, for_each_segment};
use crate::aggregate::filtered;
use crate::error::IndexError;
use crate::format::Format;
use crate::format::column;
use crate::histogram::LatencyHistogram;
use crate::query::Expr;
use crate::store::{PartitionRef, Scope, Store};
use crate::{Signal, span_fields};

/// Fields a statistics request may group by.
pub const MAX_GROUP_BY: usize = 4;

/// Groups one answer tracks; spans of further groups are counted in the total only, and the
/// answer says so.
pub const MAX_GROUPS: usize = 10_000;

/// Time buckets of a series or a heatmap, at most.
pub const MAX_TIME_BUCKETS: usize = 500;

/// What to compute.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeriesPoint {
    /// Spans.
    pub count: u64,
    /// Spans with status error.
    pub errors: u64,
    /// Their durations.
    pub histogram: LatencyHistogram,
}

/// A trace that shows one latency band of a group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BandExemplar {
    /// `p50`, `p90`, `p99` or `max`: the band's upper percentile.
    pub band: &'static str,
    /// The trace.
    pub trace_id: [u8; 16],
    /// Duration of the span that stands for the band.
    pub duration_ns: u64,
}

/// Statistics of one group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeatmapCell {
    /// Time bucket index.
    pub time_bucket: u32,
    /// Latency row, as [`LatencyHistogram::heatmap_row`] numbers them (a sixteenth of a
    /// doubling).
    pub latency_bucket: u16,
    /// Spans in the cell.
    pub count: u64,
    /// The slowest span's trace, and its duration.
    pub exemplar: Option<([u8; 16], u64)>,
}

/// Time buckets × latency buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// The latency bands of a group, with the percentile each ends at.
const BANDS: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)];

/// A [`BandExemplar`] as another node sends it: its band's name must be one of [`BANDS`]'.
#[derive(serde::Deserialize)]
struct BandExemplarWire {
    band: String,
    trace_id: [u8; 16],
    duration_ns: u64,
}

impl<'de> serde::Deserialize<'de> for BandExemplar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = BandExemplarWire::deserialize(d)?;
        let band = BANDS
            .iter()
            .map(|(band, _)| *band)
            .find(|band| *band == wire.band)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("unknown latency band '{}'", wire.band))
            })?;
        Ok(BandExemplar {
            band,
            trace_id: wire.trace_id,
            duration_ns: wire.duration_ns,
        })
    }
}

impl SpanStats {
    /// Adds the statistics of another part of the data (another node's): groups with the same
    /// key add up, and each band's exemplar is the slowest of the parts' exemplars that falls
    /// in or below the band's bucket of the summed histogram.
    pub fn merge(&mut self, other: SpanStats) {
        self.total += other.total;
        self.groups_capped |= other.groups_capped;
        self.values_capped |= other.values_capped;
        if self.series_bucket_ns == 0 {
            self.series_bucket_ns = other.series_bucket_ns;
        }
        let mut groups: HashMap<Vec<Option<String>>, GroupStats> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(|g| (g.key.clone(), g))
            .collect();
        for group in other.groups {
            if !groups.contains_key(&group.key) && groups.len() >= MAX_GROUPS {
                self.groups_capped = true;
                continue;
            }
            match groups.get_mut(&group.key) {
                Some(seen) => seen.merge(group),
                None => {
                    groups.insert(group.key.clone(), group);
                }
            }
        }
        self.groups = groups.into_values().collect();
        self.groups
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    }
}

impl GroupStats {
    fn merge(&mut self, other: GroupStats) {
        self.count += other.count;
        self.errors += other.errors;
        self.histogram.merge(&other.histogram);
        self.max_ns = self.max_ns.max(other.max_ns);
        if self.series.len() < other.series.len() {
            self.series
                .resize(other.series.len(), SeriesPoint::default());
        }
        for (t, s) in self.series.iter_mut().zip(other.series) {
            t.count += s.count;
            t.errors += s.errors;
            t.histogram.merge(&s.histogram);
        }
        let mut candidates: Vec<([u8; 16], u64)> = self
            .exemplars
            .drain(..)
            .chain(other.exemplars)
            .map(|e| (e.trace_id, e.duration_ns))
            .collect();
        candidates.sort_by_key(|(_, duration)| *duration);
        for (band, q) in BANDS {
            let Some(bucket) = self.histogram.quantile_bucket(q) else {
                continue;
            };
            let Some(&(trace_id, duration_ns)) = candidates
                .iter()
                .rev()
                .find(|(_, d)| LatencyHistogram::heatmap_row(*d) <= bucket / 4)
            else {
                continue;
            };
            // One trace standing for several bands is listed once, under the highest.
            if let Some(last) = self.exemplars.last_mut().filter(|e| e.trace_id == trace_id) {
                last.band = band;
                continue;
            }
            self.exemplars.push(BandExemplar {
                band,
                trace_id,
                duration_ns,
            });
        }
    }
}

impl Heatmap {
    /// Adds the heatmap of another part of the data (another node's), of the same range and
    /// buckets: counts add, and each cell keeps the slower exemplar.
    pub fn merge(&mut self, other: Heatmap) {
        self.total += other.total;
        if self.buckets == 0 {
            self.bucket_ns = other.bucket_ns;
            self.buckets = other.buckets;
        }
        let mut cells: BTreeMap<(u32, u16), HeatmapCell> = std::mem::take(&mut self.cells)
            .into_iter()
            .map(|c| ((c.time_bucket, c.latency_bucket), c))
            .collect();
        for cell in other.cells {
            match cells.get_mut(&(cell.time_bucket, cell.latency_bucket)) {
                Some(seen) => {
                    seen.count += cell.count;
                    if cell.exemplar.map(|(_, d)| d) > seen.exemplar.map(|(_, d)| d) {
                        seen.exemplar = cell.exemplar;
                    }
                }
                None => {
                    cells.insert((cell.time_bucket, cell.latency_bucket), cell);
                }
            }
        }
        self.cells = cells.into_values().collect();
    }
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
            Format::V2 | Format::V3 => column::TRACE,
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

/// The trace columns of the segments an answer read. Reading a trace ID from one is a lookup
/// in a compressed dictionary, so exemplars are kept as [`SpanRef`]s, and only those that end up
/// in the answer are read, all at once ([`TraceSources::resolve`]).
#[derive(Default)]
struct TraceSources {
    columns: Vec<Option<BytesColumn>>,
    resolved: HashMap<(u32, DocId), [u8; 16]>,
}

impl TraceSources {
    fn add(&mut self, columns: &SpanColumns) -> u32 {
        self.columns.push(columns.traces.clone());
        (self.columns.len() - 1) as u32
    }

    /// Reads the trace IDs of `spans`: per segment, their dictionary entries in one sorted sweep.
    fn resolve(&mut self, spans: impl Iterator<Item = SpanRef>) -> Result<(), IndexError> {
        let mut by_source: BTreeMap<u32, Vec<(u64, DocId)>> = BTreeMap::new();
        for span in spans {
            let Some(Some(column)) = self.columns.get(span.source as usize) else {
                continue;
            };
            if let Some(ord) = column.term_ords(span.doc).next() {
                by_source
                    .entry(span.source)
                    .or_default()
                    .push((ord, span.doc));
            }
        }
        for (source, mut wanted) in by_source {
            let Some(Some(column)) = self.columns.get(source as usize) else {
                continue;
            };
            wanted.sort_unstable();
            let mut ords: Vec<u64> = wanted.iter().map(|(ord, _)| *ord).collect();
            ords.dedup();
            let mut ids: Vec<Option<[u8; 16]>> = Vec::with_capacity(ords.len());
            column
                .dictionary()
                .sorted_ords_to_term_cb(&ords, |bytes| ids.push(bytes.try_into().ok()))?;
            for (ord, doc) in wanted {
                let Ok(at) = ords.binary_search(&ord) else {
                    continue;
                };
                if let Some(Some(id)) = ids.get(at) {
                    self.resolved.insert((source, doc), *id);
                }
            }
        }
        Ok(())
    }

    /// The trace of a span [`TraceSources::resolve`] read.
    fn trace_id(&self, span: SpanRef) -> Option<[u8; 16]> {
        self.resolved.get(&(span.source, span.doc)).copied()
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

/// A group of one segment as it is counted: plain arrays indexed by latency bucket, so a span
/// costs a few array writes. They cover only the buckets between the segment's shortest and
/// longest span (from the duration column's bounds): 64 per doubling for the counts, and one
/// slowest span per heatmap row (four buckets), enough for the exemplar of each band.
struct SegmentGroup {
    count: u64,
    errors: u64,
    min_ns: u64,
    max_ns: u64,
    /// The latency bucket of index 0.
    first_bucket: u16,
    buckets: Vec<u32>,
    /// The slowest span of each heatmap row from the first bucket's on: its duration and
    /// document.
    slowest: Vec<(u64, DocId)>,
    series: Vec<SeriesPoint>,
}

impl SegmentGroup {
    fn new(first_bucket: u16, last_bucket: u16) -> Self {
        let width = usize::from(last_bucket.saturating_sub(first_bucket)) + 1;
        SegmentGroup {
            count: 0,
            errors: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            first_bucket,
            buckets: vec![0; width],
            slowest: vec![(0, DocId::MAX); width.div_ceil(4) + 1],
            series: Vec::new(),
        }
    }

    /// The index into `slowest` of bucket index `at`: its heatmap row, from the first's.
    fn row_of(&self, at: usize) -> usize {
        (usize::from(self.first_bucket) + at) / 4 - usize::from(self.first_bucket) / 4
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
        self.min_ns = self.min_ns.min(duration);
        self.max_ns = self.max_ns.max(duration);
        let at = usize::from(LatencyHistogram::bucket(duration).saturating_sub(self.first_bucket))
            .min(self.buckets.len() - 1);
        self.buckets[at] += 1;
        let row = self.row_of(at);
        let slowest = &mut self.slowest[row];
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
    /// The slowest span of each heatmap row.
    exemplars: BTreeMap<u16, (SpanRef, u64)>,
    series: Vec<SeriesPoint>,
}

impl Group {
    fn merge(&mut self, segment: SegmentGroup, source: u32) {
        self.count += segment.count;
        self.errors += segment.errors;
        self.max_ns = self.max_ns.max(segment.max_ns);
        let mut histogram = LatencyHistogram::default();
        for (at, &n) in segment.buckets.iter().enumerate() {
            if n > 0 {
                histogram.add(segment.first_bucket + at as u16, u64::from(n));
            }
        }
        histogram.note_extremes(segment.min_ns, segment.max_ns);
        self.histogram.merge(&histogram);
        let first_row = segment.first_bucket / 4;
        for (at, &(duration, doc)) in segment.slowest.iter().enumerate() {
            if doc == DocId::MAX {
                continue;
            }
            let span = SpanRef { source, doc };
            let kept = self
                .exemplars
                .entry(first_row + at as u16)
                .or_insert((span, duration));
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

    /// The span standing for each latency band: the exemplar of the heatmap row of the band's
    /// bucket, or of the nearest row below it.
    fn band_spans(&self) -> Vec<(&'static str, SpanRef, u64)> {
        let mut spans = Vec::new();
        for (band, q) in BANDS {
            let Some(bucket) = self.histogram.quantile_bucket(q) else {
                continue;
            };
            if let Some((_, (span, duration))) = self.exemplars.range(..=bucket / 4).next_back() {
                spans.push((band, *span, *duration));
            }
        }
        spans
    }

    fn finish(self, key: Vec<Option<String>>, sources: &TraceSources) -> GroupStats {
        let mut exemplars: Vec<BandExemplar> = Vec::new();
        for (band, span, duration_ns) in self.band_spans() {
            let Some(trace_id) = sources.trace_id(span) else {
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
                duration_ns,
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
        Ok(self.span_stats_in(request, &Scope::All)?.0)
    }

    /// [`Store::span_stats`] over the partitions `scope` reads, and the local ones read.
    pub fn span_stats_in(
        &self,
        request: &StatsRequest,
        scope: &Scope,
    ) -> Result<(SpanStats, Vec<PartitionRef>), IndexError> {
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
        let partitions = self.partitions_matching_in(
            Signal::Spans,
            request.start,
            request.end,
            request.query.as_ref(),
            scope,
        )?;
        let read = partitions.local_refs();
        for partition in partitions {
            let partition = partition?;
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
        sources.resolve(
            groups
                .values()
                .flat_map(|g| g.band_spans().into_iter().map(|(_, span, _)| span)),
        )?;
        answer.groups = groups
            .into_iter()
            .map(|(key, group)| group.finish(key, &sources))
            .collect();
        answer
            .groups
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        Ok((answer, read))
    }

    /// Span counts per time bucket and latency bucket, with the slowest trace of each cell.
    pub fn span_heatmap(
        &self,
        query: Option<&Expr>,
        start: u64,
        end: u64,
        buckets: usize,
    ) -> Result<Heatmap, IndexError> {
        Ok(self
            .span_heatmap_in(query, start, end, buckets, &Scope::All)?
            .0)
    }

    /// [`Store::span_heatmap`] over the partitions `scope` reads, and the local ones read.
    pub fn span_heatmap_in(
        &self,
        query: Option<&Expr>,
        start: u64,
        end: u64,
        buckets: usize,
        scope: &Scope,
    ) -> Result<(Heatmap, Vec<PartitionRef>), IndexError> {
        let tantivy_query = filtered(query, Signal::Spans, start, end)?;
        let time = TimeBuckets::new(start, end, buckets);
        // (time bucket, latency bucket) -> count, and the slowest span's trace and duration.
        type Exemplar = Option<(SpanRef, u64)>;
        let mut sources = TraceSources::default();
        let mut cells: BTreeMap<(u32, u16), (u64, Exemplar)> = BTreeMap::new();
        let mut total = 0;
        let partitions = self.partitions_matching_in(Signal::Spans, start, end, query, scope)?;
        let read = partitions.local_refs();
        for partition in partitions {
            let partition = partition?;
            let searcher = partition.searcher();
            for_each_segment(&searcher, &tantivy_query, |reader, selected| {
                total += selected.docs.len() as u64;
                let columns = SpanColumns::open(reader)?;
                let source = sources.add(&columns);
                // Per (time bucket, latency bucket): count, slowest duration, its document.
                // Only the latency buckets between the segment's shortest and longest span.
                let first = LatencyHistogram::heatmap_row(columns.duration.min_value());
                let last = LatencyHistogram::heatmap_row(columns.duration.max_value());
                let width = usize::from(last.saturating_sub(first)) + 1;
                let mut segment = vec![(0u64, 0u64, DocId::MAX); time.count * width];
                let mut starts = [None; BLOCK];
                let mut durations = [None; BLOCK];
                for block in selected.docs.chunks(BLOCK) {
                    columns.start.first_vals(block, &mut starts[..block.len()]);
                    columns
                        .duration
                        .first_vals(block, &mut durations[..block.len()]);
                    for (i, &doc) in block.iter().enumerate() {
                        let Some(t) = starts[i].and_then(|s| time.of(s)) else {
                            continue;
                        };
                        let duration = durations[i].unwrap_or(0);
                        let latency = usize::from(
                            LatencyHistogram::heatmap_row(duration).saturating_sub(first),
                        )
                        .min(width - 1);
                        let cell = &mut segment[t * width + latency];
                        cell.0 += 1;
                        if cell.2 == DocId::MAX || duration > cell.1 {
                            cell.1 = duration;
                            cell.2 = doc;
                        }
                    }
                }
                for (at, (count, duration, doc)) in segment.into_iter().enumerate() {
                    if count == 0 {
                        continue;
                    }
                    let cell = ((at / width) as u32, first + (at % width) as u16);
                    let entry = cells.entry(cell).or_insert((0, None));
                    entry.0 += count;
                    if entry.1.is_none_or(|(_, d)| duration > d) {
                        entry.1 = Some((SpanRef { source, doc }, duration));
                    }
                }
                Ok(())
            })?;
        }
        sources.resolve(cells.values().filter_map(|(_, e)| e.map(|(span, _)| span)))?;
        let heatmap = Heatmap {
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
        };
        Ok((heatmap, read))
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
    let (first_bucket, last_bucket) = (
        LatencyHistogram::bucket(columns.duration.min_value()),
        LatencyHistogram::bucket(columns.duration.max_value()),
    );
    // Columns are read a block of documents at a time, which is several times faster than one
    // document at a time.
    let mut durations = [None; BLOCK];
    let mut starts = [None; BLOCK];
    let mut field_values = vec![[NONE; BLOCK]; values.len()];
    for block in selected.docs.chunks(BLOCK) {
        columns
            .duration
            .first_vals(block, &mut durations[..block.len()]);
        if series.is_some() {
            columns.start.first_vals(block, &mut starts[..block.len()]);
        }
        for (v, out) in values.iter().zip(field_values.iter_mut()) {
            v.fill(block, &mut out[..block.len()]);
        }
        for (i, &doc) in block.iter().enumerate() {
            let mut key = [NONE; MAX_GROUP_BY];
            let mut index = 0usize;
            for ((slot, field), radix) in key.iter_mut().zip(&field_values).zip(&radices) {
                *slot = field[i];
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
                out.groups
                    .push((key, SegmentGroup::new(first_bucket, last_bucket)));
                if combinations.is_some() {
                    dense[index] = slot as u32;
                } else {
                    sparse.insert(key, slot as u32);
                }
                slot
            };
            let duration = durations[i].unwrap_or(0);
            let error = columns.errors.contains(doc);
            let series_at = series.and_then(|s| Some((s.of(starts[i]?)?, s.count)));
            out.groups[slot].1.record(doc, duration, error, series_at);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(key: &str, durations: &[u64], trace: u8) -> GroupStats {
        let mut histogram = LatencyHistogram::default();
        for d in durations {
            histogram.record(*d);
        }
        let slowest = *durations.iter().max().unwrap();
        let median = durations[durations.len() / 2];
        let mut exemplars = vec![BandExemplar {
            band: "max",
            trace_id: [trace; 16],
            duration_ns: slowest,
        }];
        if median != slowest {
            exemplars.insert(
                0,
                BandExemplar {
                    band: "p50",
                    trace_id: [trace + 100; 16],
                    duration_ns: median,
                },
            );
        }
        GroupStats {
            key: vec![Some(key.to_string())],
            count: durations.len() as u64,
            errors: 1,
            histogram,
            max_ns: slowest,
            exemplars,
            series: vec![SeriesPoint {
                count: durations.len() as u64,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn statistics_of_two_parts_add_up_and_the_slowest_exemplar_stands_for_max() {
        let mut stats = SpanStats {
            total: 3,
            groups: vec![group("cart", &[1_000, 2_000, 3_000], 1)],
            ..Default::default()
        };
        let part = SpanStats {
            total: 4,
            groups: vec![
                group("cart", &[5_000_000], 2),
                group("pay", &[10, 20, 30], 3),
            ],
            ..Default::default()
        };
        let part: SpanStats = serde_json::from_str(&serde_json::to_string(&part).unwrap()).unwrap();
        stats.merge(part);
        assert_eq!(stats.total, 7);
        let cart = &stats.groups[0];
        assert_eq!(cart.key, [Some("cart".to_string())]);
        assert_eq!((cart.count, cart.errors, cart.max_ns), (4, 2, 5_000_000));
        assert_eq!(cart.histogram.count(), 4);
        assert_eq!(cart.series[0].count, 4);
        let max = cart.exemplars.iter().find(|e| e.band == "max").unwrap();
        assert_eq!(max.trace_id, [2; 16]);
        let p50 = cart.exemplars.iter().find(|e| e.band == "p50").unwrap();
        assert_eq!(
            p50.trace_id, [101; 16],
            "the p50 bucket holds part one's median span"
        );
        assert_eq!(stats.groups[1].count, 3);
    }

    #[test]
    fn heatmaps_of_two_parts_add_up_cell_by_cell() {
        let cell = |t, l, count, trace: u8, duration| HeatmapCell {
            time_bucket: t,
            latency_bucket: l,
            count,
            exemplar: Some(([trace; 16], duration)),
        };
        let mut heatmap = Heatmap {
            total: 3,
            bucket_ns: 10,
            buckets: 2,
            cells: vec![cell(0, 40, 2, 1, 900), cell(1, 41, 1, 1, 1_100)],
        };
        heatmap.merge(Heatmap {
            total: 2,
            bucket_ns: 10,
            buckets: 2,
            cells: vec![cell(0, 40, 1, 2, 950), cell(0, 39, 1, 2, 500)],
        });
        assert_eq!(heatmap.total, 5);
        assert_eq!(
            heatmap
                .cells
                .iter()
                .map(|c| (
                    c.time_bucket,
                    c.latency_bucket,
                    c.count,
                    c.exemplar.unwrap().0[0]
                ))
                .collect::<Vec<_>>(),
            [(0, 39, 1, 2), (0, 40, 3, 2), (1, 41, 1, 1)]
        );
    }
}
