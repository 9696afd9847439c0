//! The records of a selection (and of its baseline), read from the partitions and clustered.
//!
//! The query runs over every segment first, which only walks postings and columns: that gives
//! each side's exact total. Then the bodies are read from the doc store, the costly part (a
//! block of rows is decompressed for any row of it): all of them up to [`MAX_READ_ROWS`] per
//! side, beyond that an even sample of runs of [`CHUNK`] consecutive selected rows, so each
//! block read serves many rows. Each row read then stands for `total / read` rows of its side,
//! and the counts are estimates (`PatternSet::read` says how many rows they rest on).
//!
//! Where the line is: reading and clustering 100,000 rows a side took 1.5 s (p50) on the bench
//! machine at 10 M records of random text, the worst case for the clustering (BENCHMARKS.md,
//! "Log patterns"); 30,000 rows aim at the one-second budget, and a sample that size still
//! counts a template of 1 % of the records within a few tenths of a percent.

use tantivy::columnar::Column;
use tantivy::query::{EnableScoring, Query};
use tantivy::schema::Value;
use tantivy::{BitSet, DocAddress, Searcher, TantivyDocument};

use super::{Baseline, Pattern, PatternRequest, PatternSet, PatternStats, Sample};
use crate::aggregate::filtered;
use crate::error::IndexError;
use crate::peel::Selected;
use crate::query::stored_body;
use crate::rows::RowReader;
use crate::severity::band_index;
use crate::store::{PartitionRef, Scope, Store};
use crate::templates::{Drain, Payload, tokens};
use crate::{Signal, log_fields};

/// Rows read per side (selection, baseline) before sampling, at most (a request may ask for
/// fewer: `PatternRequest::max_read_rows`).
pub const MAX_READ_ROWS: u64 = 30_000;
/// Consecutive selected rows read together when sampling.
const CHUNK: usize = 64;
/// Longest sample body in an answer, in bytes.
const SAMPLE_BYTES: usize = 1024;

/// Which side of the comparison a row is on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Selection,
    Baseline,
}

/// One segment's selected rows of one side.
struct Picked {
    searcher: usize,
    segment: u32,
    side: Side,
    docs: Vec<u32>,
}

/// A bucket series, allocated only once a template has more than one line; each line weighs
/// the rows it stands for.
#[derive(Clone, Debug, Default)]
enum Series {
    #[default]
    Empty,
    One(usize, f64),
    Many(Vec<f64>),
}

impl Series {
    fn into_vec(self, buckets: usize) -> Vec<f64> {
        match self {
            Series::Empty => vec![0.0; buckets],
            Series::One(bucket, weight) => {
                let mut out = vec![0.0; buckets];
                out[bucket] += weight;
                out
            }
            Series::Many(all) => all,
        }
    }
}

/// What the lines of a template read so far add up to, each weighted by the rows it stands
/// for.
#[derive(Clone, Debug, Default)]
struct Tally {
    count: f64,
    first: u64,
    last: u64,
    bands: u8,
    /// The newest line: its time and where it is.
    newest: Option<(u64, usize, DocAddress)>,
    series: Series,
    buckets: usize,
}

impl Payload for Tally {
    fn merge(&mut self, other: Self) {
        if self.count == 0.0 {
            *self = other;
            return;
        }
        self.count += other.count;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.bands |= other.bands;
        if other.newest.map(|n| n.0) > self.newest.map(|n| n.0) {
            self.newest = other.newest;
        }
        let mut mine = std::mem::take(&mut self.series).into_vec(self.buckets);
        match other.series {
            Series::Empty => {}
            Series::One(bucket, weight) => {
                if let Some(slot) = mine.get_mut(bucket) {
                    *slot += weight;
                }
            }
            Series::Many(theirs) => {
                for (m, t) in mine.iter_mut().zip(theirs) {
                    *m += t;
                }
            }
        }
        self.series = Series::Many(mine);
    }
}

/// The selection's query, and the baseline's when there is one.
type SideQueries = (Box<dyn Query>, Option<Box<dyn Query>>);

/// The selection's and the baseline's queries.
fn side_queries(request: &PatternRequest) -> Result<SideQueries, IndexError> {
    let (start, end) = (request.start_unix_nano, request.end_unix_nano);
    let query = request.query.as_ref();
    Ok(match &request.baseline {
        None => (Box::new(filtered(query, Signal::Logs, start, end)?), None),
        Some(Baseline::Before(split)) => {
            let split = (*split).clamp(start, end);
            (
                Box::new(filtered(query, Signal::Logs, split, end)?),
                Some(Box::new(filtered(query, Signal::Logs, start, split)?)),
            )
        }
        Some(Baseline::Query(Some(baseline))) => (
            Box::new(filtered(query, Signal::Logs, start, end)?),
            Some(Box::new(filtered(
                Some(baseline),
                Signal::Logs,
                start,
                end,
            )?)),
        ),
        // Every record of the range: the selection's are taken out segment by segment.
        Some(Baseline::Query(None)) => (
            Box::new(filtered(query, Signal::Logs, start, end)?),
            Some(Box::new(filtered(None, Signal::Logs, start, end)?)),
        ),
    })
}

/// The templates of one side as patterns, largest first, counts weighed, with where each
/// one's newest line is.
fn settle(
    drain: Drain<Tally>,
    weight: f64,
    buckets: usize,
) -> Vec<(Pattern, Option<(usize, DocAddress)>)> {
    let mut patterns: Vec<_> = drain
        .into_templates()
        .into_iter()
        .map(|t| {
            let tally = t.payload;
            let stats = PatternStats {
                count: (tally.count * weight).round() as u64,
                baseline_count: 0,
                first_unix_nano: tally.first,
                last_unix_nano: tally.last,
                bands: tally.bands,
                sample: None,
                series: tally
                    .series
                    .into_vec(buckets)
                    .into_iter()
                    .map(|n| n.round() as u64)
                    .collect(),
            };
            let pattern = Pattern {
                pattern: crate::templates::join(&t.tokens),
                stats,
            };
            (pattern, tally.newest.map(|(_, s, a)| (s, a)))
        })
        .collect();
    patterns.sort_by(|(a, _), (b, _)| super::largest_first(a, b));
    patterns
}

/// Whether the `index`th chunk of a side is read, at `ratio` of its rows: spread evenly.
fn chunk_read(index: usize, ratio: f64) -> bool {
    ratio >= 1.0 || ((index + 1) as f64 * ratio).floor() > (index as f64 * ratio).floor()
}

impl Store {
    /// The patterns of the log records `request` selects, over the partitions `scope` reads,
    /// and the local ones read.
    pub fn patterns_in(
        &self,
        request: &PatternRequest,
        scope: &Scope,
    ) -> Result<(PatternSet, Vec<PartitionRef>), IndexError> {
        let (start, end) = (request.start_unix_nano, request.end_unix_nano);
        let buckets = request.buckets.clamp(1, super::MAX_SERIES_BUCKETS);
        let width = (end.saturating_sub(start) / buckets as u64).max(1);
        let (selection, baseline) = side_queries(request)?;
        // The baseline may hold other services than the selection: only the selection alone
        // may rule partitions out.
        let prune = match request.baseline {
            None | Some(Baseline::Before(_)) => request.query.as_ref(),
            Some(Baseline::Query(_)) => None,
        };
        // The baseline is the rest of the range: every record less the selection's.
        let rest = matches!(request.baseline, Some(Baseline::Query(None)));
        let partitions = self.partitions_matching_in(Signal::Logs, start, end, prune, scope)?;
        let read_refs = partitions.local_refs();

        // Each side's rows, segment by segment.
        let mut searchers: Vec<Searcher> = Vec::new();
        let mut picked: Vec<Picked> = Vec::new();
        let mut totals = [0u64; 2];
        for partition in partitions {
            let searcher = partition?.searcher();
            let sides = [
                (Side::Selection, Some(&selection)),
                (Side::Baseline, baseline.as_ref()),
            ];
            let mut selected_sets: Vec<BitSet> = Vec::new();
            for (side, query) in sides {
                let Some(query) = query else { continue };
                let weight = query.weight(EnableScoring::disabled_from_searcher(&searcher))?;
                for (ord, reader) in searcher.segment_readers().iter().enumerate() {
                    let mut selected = Selected::of(weight.as_ref(), reader)?;
                    if side == Side::Baseline
                        && rest
                        && let Some(taken) = selected_sets.get(ord)
                    {
                        selected.docs.retain(|&doc| !taken.contains(doc));
                    }
                    // Kept only to take the selection out of the rest.
                    if side == Side::Selection && rest {
                        selected_sets.push(selected.set.clone());
                    }
                    if selected.docs.is_empty() {
                        continue;
                    }
                    totals[side as usize] += selected.docs.len() as u64;
                    picked.push(Picked {
                        searcher: searchers.len(),
                        segment: ord as u32,
                        side,
                        docs: selected.docs,
                    });
                }
            }
            searchers.push(searcher);
        }

        // Read, cluster.
        let budget = request.max_read_rows.clamp(1, MAX_READ_ROWS);
        let ratio = |side: Side| {
            let total = totals[side as usize];
            if total <= budget {
                1.0
            } else {
                budget as f64 / total as f64
            }
        };
        let mut drains: [Drain<Tally>; 2] = [Drain::default(), Drain::default()];
        let mut chunks = [0usize; 2];
        let mut read = [0u64; 2];
        let source = log_fields().source;
        for part in &picked {
            let searcher = &searchers[part.searcher];
            let reader = searcher.segment_reader(part.segment);
            let time: Column<u64> = reader.fast_fields().u64("time")?;
            let severity: Column<u64> = reader.fast_fields().u64("severity")?;
            let side = part.side as usize;
            let ratio = ratio(part.side);
            for chunk in part.docs.chunks(CHUNK) {
                let index = chunks[side];
                chunks[side] += 1;
                if !chunk_read(index, ratio) {
                    continue;
                }
                read[side] += chunk.len() as u64;
                for &doc in chunk {
                    let address = DocAddress::new(part.segment, doc);
                    let stored: TantivyDocument = searcher.doc(address)?;
                    let bytes = stored
                        .get_first(source)
                        .and_then(|v| v.as_bytes())
                        .unwrap_or_default();
                    let body = stored_body(bytes)?;
                    let at = time.first(doc).unwrap_or(0);
                    let band = band_index(severity.first(doc).unwrap_or(0));
                    let bucket = ((at.saturating_sub(start)) / width) as usize;
                    drains[side].add(
                        &tokens(&body),
                        Tally {
                            count: 1.0,
                            first: at,
                            last: at,
                            bands: 1 << band,
                            newest: Some((at, part.searcher, address)),
                            // Each line weighs the rows it stands for.
                            series: if bucket < buckets {
                                Series::One(bucket, 1.0 / ratio)
                            } else {
                                Series::Empty
                            },
                            buckets,
                        },
                    );
                }
            }
        }

        // Each row read stands for `total / read` rows of its side.
        let [selection_drain, baseline_drain] = drains;
        let weight = |side: Side| {
            let (total, read) = (totals[side as usize], read[side as usize]);
            if read == 0 {
                0.0
            } else {
                total as f64 / read as f64
            }
        };
        let selected = settle(selection_drain, weight(Side::Selection), buckets);
        let baseline = settle(baseline_drain, weight(Side::Baseline), buckets);

        // A sample of each selected pattern, read whole.
        let mut readers: Vec<Option<RowReader>> = searchers.iter().map(|_| None).collect();
        let mut patterns = Vec::with_capacity(selected.len());
        for (mut pattern, newest) in selected {
            if let Some((s, address)) = newest {
                let reader = readers[s].get_or_insert_with(|| RowReader::new(&searchers[s]));
                let (row, _) = reader.log(address)?;
                let mut body = row.body_text();
                if body.len() > SAMPLE_BYTES {
                    let mut cut = SAMPLE_BYTES;
                    while !body.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    body.truncate(cut);
                    body.push('…');
                }
                pattern.stats.sample = Some(Sample {
                    time_unix_nano: row.time_unix_nano,
                    service: row.service,
                    body,
                    trace_id: hex::encode(&row.trace_id),
                });
            }
            patterns.push(pattern);
        }
        Ok((
            PatternSet {
                patterns,
                baseline: baseline.into_iter().map(|(p, _)| p).collect(),
                total: totals[Side::Selection as usize],
                baseline_total: totals[Side::Baseline as usize],
                read: read[0] + read[1],
            },
            read_refs,
        ))
    }
}
