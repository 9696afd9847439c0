//! Aggregations over fast fields: the log histogram by severity band, and the service and
//! event catalogs. They read columns, never stored rows, so they stay cheap on large partitions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use crate::error::IndexError;
use crate::query::{CmpOp, Expr, compile};
use crate::search::time_range;
use crate::store::{PartitionRef, Scope, Store};
use crate::{Signal, log_fields, span_fields};

/// Severity bands of the histogram, in order.
pub use crate::severity::BAND_NAMES as BANDS;
pub(crate) use crate::severity::band_index;

/// Span names (operations), each with the span kinds seen ([`SPAN_KINDS`]).
pub type Operations = BTreeMap<String, BTreeSet<&'static str>>;

/// Span kinds by name, as the catalog of operations lists them.
pub const SPAN_KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

/// Counts in one histogram bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramBucket {
    /// Bucket start.
    pub start_unix_nano: u64,
    /// Count per severity band, indexed like [`BANDS`].
    pub counts: [u64; 7],
}

struct HistogramCollector {
    start: u64,
    width: u64,
    buckets: usize,
}

struct HistogramSegment {
    time: Column<u64>,
    severity: Column<u64>,
    start: u64,
    width: u64,
    counts: Vec<[u64; 7]>,
}

impl Collector for HistogramCollector {
    type Fruit = Vec<[u64; 7]>;
    type Child = HistogramSegment;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<HistogramSegment> {
        Ok(HistogramSegment {
            time: reader.fast_fields().u64("time")?,
            severity: reader.fast_fields().u64("severity")?,
            start: self.start,
            width: self.width,
            counts: vec![[0; 7]; self.buckets],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<[u64; 7]>>) -> tantivy::Result<Vec<[u64; 7]>> {
        let mut total = vec![[0u64; 7]; self.buckets];
        for fruit in fruits {
            for (t, f) in total.iter_mut().zip(fruit) {
                for band in 0..7 {
                    t[band] += f[band];
                }
            }
        }
        Ok(total)
    }
}

impl SegmentCollector for HistogramSegment {
    type Fruit = Vec<[u64; 7]>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(time) = self.time.first(doc) else {
            return;
        };
        let bucket = (time.saturating_sub(self.start) / self.width) as usize;
        if let Some(counts) = self.counts.get_mut(bucket) {
            let band = band_index(self.severity.first(doc).unwrap_or(0));
            counts[band] += 1;
        }
    }

    fn harvest(self) -> Vec<[u64; 7]> {
        self.counts
    }
}

/// What a service was seen doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStats {
    /// Spans.
    pub spans: u64,
    /// Log records.
    pub logs: u64,
    /// Latest row time.
    pub last_seen_unix_nano: u64,
}

impl ServiceStats {
    /// Adds what another part of the data saw.
    pub fn merge(&mut self, other: &ServiceStats) {
        self.spans += other.spans;
        self.logs += other.logs;
        self.last_seen_unix_nano = self.last_seen_unix_nano.max(other.last_seen_unix_nano);
    }
}

/// One entry of the event catalog.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventStats {
    /// Records with this event ID.
    pub count: u64,
    /// Earliest record time.
    pub first_seen_unix_nano: u64,
    /// Latest record time.
    pub last_seen_unix_nano: u64,
    /// Services that logged it.
    pub services: BTreeSet<String>,
    /// Severity bands seen (see [`BANDS`]).
    pub severities: BTreeSet<String>,
}

impl Default for EventStats {
    /// Nothing seen yet: the first record seen is the earliest.
    fn default() -> Self {
        EventStats {
            count: 0,
            first_seen_unix_nano: u64::MAX,
            last_seen_unix_nano: 0,
            services: BTreeSet::new(),
            severities: BTreeSet::new(),
        }
    }
}

impl EventStats {
    /// Adds what another part of the data saw.
    pub fn merge(&mut self, other: EventStats) {
        self.count += other.count;
        self.first_seen_unix_nano = self.first_seen_unix_nano.min(other.first_seen_unix_nano);
        self.last_seen_unix_nano = self.last_seen_unix_nano.max(other.last_seen_unix_nano);
        self.services.extend(other.services);
        self.severities.extend(other.severities);
    }
}

/// Per-segment state keyed by term ordinal; converted to strings at harvest.
#[derive(Default, Clone)]
struct OrdStats {
    count: u64,
    first: u64,
    last: u64,
    bands: u8,
    services: BTreeSet<u64>,
}

struct KeyedCollector {
    key_field: &'static str,
    time_field: &'static str,
    with_details: bool,
}

struct KeyedSegment {
    keys: Option<StrColumn>,
    services: Option<StrColumn>,
    time: Column<u64>,
    severity: Option<Column<u64>>,
    with_details: bool,
    stats: HashMap<u64, OrdStats>,
}

type KeyedFruit = HashMap<String, EventStats>;

impl Collector for KeyedCollector {
    type Fruit = KeyedFruit;
    type Child = KeyedSegment;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<KeyedSegment> {
        let fast = reader.fast_fields();
        Ok(KeyedSegment {
            keys: fast.str(self.key_field)?,
            services: if self.with_details {
                fast.str("service")?
            } else {
                None
            },
            time: fast.u64(self.time_field)?,
            severity: if self.with_details {
                Some(fast.u64("severity")?)
            } else {
                None
            },
            with_details: self.with_details,
            stats: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<KeyedFruit>) -> tantivy::Result<KeyedFruit> {
        let mut total = KeyedFruit::new();
        for fruit in fruits {
            merge_keyed(&mut total, fruit);
        }
        Ok(total)
    }
}

fn merge_keyed(total: &mut KeyedFruit, part: KeyedFruit) {
    for (key, stats) in part {
        total.entry(key).or_default().merge(stats);
    }
}

impl SegmentCollector for KeyedSegment {
    type Fruit = KeyedFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(keys) = &self.keys else { return };
        let Some(key) = keys.term_ords(doc).next() else {
            return;
        };
        let time = self.time.first(doc).unwrap_or(0);
        let stats = self.stats.entry(key).or_insert(OrdStats {
            first: u64::MAX,
            ..Default::default()
        });
        stats.count += 1;
        stats.first = stats.first.min(time);
        stats.last = stats.last.max(time);
        if self.with_details {
            if let Some(severity) = &self.severity {
                stats.bands |= 1 << band_index(severity.first(doc).unwrap_or(0));
            }
            if let Some(service) = self.services.as_ref().and_then(|s| s.term_ords(doc).next()) {
                stats.services.insert(service);
            }
        }
    }

    fn harvest(self) -> KeyedFruit {
        let mut out = KeyedFruit::new();
        let Some(keys) = &self.keys else { return out };
        let mut name = String::new();
        for (ord, stats) in self.stats {
            name.clear();
            if !keys.ord_to_str(ord, &mut name).unwrap_or(false) || name.is_empty() {
                continue;
            }
            let mut services = BTreeSet::new();
            if let Some(column) = &self.services {
                for s in stats.services {
                    let mut service = String::new();
                    if column.ord_to_str(s, &mut service).unwrap_or(false) {
                        services.insert(service);
                    }
                }
            }
            let severities = (0..7)
                .filter(|b| stats.bands & (1 << b) != 0)
                .map(|b| BANDS[b].to_string())
                .collect();
            out.insert(
                name.clone(),
                EventStats {
                    count: stats.count,
                    first_seen_unix_nano: stats.first,
                    last_seen_unix_nano: stats.last,
                    services,
                    severities,
                },
            );
        }
        out
    }
}

impl Store {
    /// Log counts in `buckets` equal buckets over `[start, end)`, split by severity band.
    pub fn log_histogram(
        &self,
        query: Option<&Expr>,
        start: u64,
        end: u64,
        buckets: usize,
    ) -> Result<Vec<HistogramBucket>, IndexError> {
        Ok(self
            .log_histogram_in(query, start, end, buckets, &Scope::All)?
            .0)
    }

    /// [`Store::log_histogram`] over the partitions `scope` reads; also returns the local
    /// partitions it read (see [`Store::search_logs_in`]).
    pub fn log_histogram_in(
        &self,
        query: Option<&Expr>,
        start: u64,
        end: u64,
        buckets: usize,
        scope: &Scope,
    ) -> Result<(Vec<HistogramBucket>, Vec<PartitionRef>), IndexError> {
        let buckets = buckets.max(1);
        let width = (end.saturating_sub(start)).div_ceil(buckets as u64).max(1);
        let expr = query;
        let query = filtered(expr, Signal::Logs, start, end)?;
        let collector = HistogramCollector {
            start,
            width,
            buckets,
        };
        let mut totals = vec![[0u64; 7]; buckets];
        let partitions = self.partitions_matching_in(Signal::Logs, start, end, expr, scope)?;
        let read = partitions.local_refs();
        for partition in partitions {
            let partition = partition?;
            let counts = partition.searcher().search(&query, &collector)?;
            for (t, c) in totals.iter_mut().zip(counts) {
                for band in 0..7 {
                    t[band] += c[band];
                }
            }
        }
        let totals = totals
            .into_iter()
            .enumerate()
            .map(|(i, counts)| HistogramBucket {
                start_unix_nano: start + i as u64 * width,
                counts,
            })
            .collect();
        Ok((totals, read))
    }

    /// Every service seen in `[start, end)` with its span and log counts.
    pub fn services(
        &self,
        start: u64,
        end: u64,
    ) -> Result<BTreeMap<String, ServiceStats>, IndexError> {
        Ok(self.services_in(start, end, &Scope::All)?.0)
    }

    /// [`Store::services`] over the partitions `scope` reads, and the local ones it read.
    pub fn services_in(
        &self,
        start: u64,
        end: u64,
        scope: &Scope,
    ) -> Result<(BTreeMap<String, ServiceStats>, Vec<PartitionRef>), IndexError> {
        let mut read = Vec::new();
        let mut out: BTreeMap<String, ServiceStats> = BTreeMap::new();
        for (signal, time_field) in [(Signal::Logs, "time"), (Signal::Spans, "start")] {
            let collector = KeyedCollector {
                key_field: "service",
                time_field,
                with_details: false,
            };
            let query = filtered(None, signal, start, end)?;
            let mut found = KeyedFruit::new();
            let partitions = self.partitions_matching_in(signal, start, end, None, scope)?;
            read.extend(partitions.local_refs());
            for partition in partitions {
                let partition = partition?;
                merge_keyed(&mut found, partition.searcher().search(&query, &collector)?);
            }
            for (service, stats) in found {
                let entry = out.entry(service).or_default();
                match signal {
                    Signal::Logs => entry.logs += stats.count,
                    Signal::Spans => entry.spans += stats.count,
                }
                entry.last_seen_unix_nano =
                    entry.last_seen_unix_nano.max(stats.last_seen_unix_nano);
            }
        }
        Ok((out, read))
    }

    /// Span names (operations) of a service in `[start, end)`, each with the span kinds seen.
    pub fn operations(
        &self,
        service: &str,
        start: u64,
        end: u64,
    ) -> Result<Operations, IndexError> {
        Ok(self.operations_in(service, start, end, &Scope::All)?.0)
    }

    /// [`Store::operations`] over the partitions `scope` reads, and the local ones it read.
    pub fn operations_in(
        &self,
        service: &str,
        start: u64,
        end: u64,
        scope: &Scope,
    ) -> Result<(Operations, Vec<PartitionRef>), IndexError> {
        let mut out = Operations::new();
        let mut read = Vec::new();
        for kind in SPAN_KINDS {
            let expr = Expr::And(vec![
                Expr::filter("service", CmpOp::Eq, service),
                Expr::filter("kind", CmpOp::Eq, kind),
            ]);
            let query = filtered(Some(&expr), Signal::Spans, start, end)?;
            let collector = KeyedCollector {
                key_field: "name",
                time_field: "start",
                with_details: false,
            };
            let mut found = KeyedFruit::new();
            let partitions = self.partitions_matching_in(Signal::Spans, start, end, None, scope)?;
            if read.is_empty() {
                read = partitions.local_refs();
            }
            for partition in partitions {
                let partition = partition?;
                merge_keyed(&mut found, partition.searcher().search(&query, &collector)?);
            }
            for name in found.into_keys() {
                out.entry(name).or_default().insert(kind);
            }
        }
        Ok((out, read))
    }

    /// The event-ID catalog of `[start, end)`, optionally for one service.
    pub fn events(
        &self,
        service: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<BTreeMap<String, EventStats>, IndexError> {
        Ok(self.events_in(service, start, end, &Scope::All)?.0)
    }

    /// [`Store::events`] over the partitions `scope` reads, and the local ones it read.
    pub fn events_in(
        &self,
        service: Option<&str>,
        start: u64,
        end: u64,
        scope: &Scope,
    ) -> Result<(BTreeMap<String, EventStats>, Vec<PartitionRef>), IndexError> {
        let expr = service.map(|s| Expr::filter("service", CmpOp::Eq, s));
        let query = filtered(expr.as_ref(), Signal::Logs, start, end)?;
        let collector = KeyedCollector {
            key_field: "event",
            time_field: "time",
            with_details: true,
        };
        let mut found = KeyedFruit::new();
        let partitions = self.partitions_matching_in(Signal::Logs, start, end, None, scope)?;
        let read = partitions.local_refs();
        for partition in partitions {
            let partition = partition?;
            merge_keyed(&mut found, partition.searcher().search(&query, &collector)?);
        }
        Ok((found.into_iter().collect(), read))
    }
}

impl Store {
    /// Log records matching `query` in the partitions `scope` reads that overlap
    /// `[start, end)`, counted per service, and the local partitions read. (No time filter
    /// inside those partitions: callers look rows up by ID.)
    pub(crate) fn count_by_service_in(
        &self,
        query: &dyn Query,
        start: u64,
        end: u64,
        scope: &Scope,
    ) -> Result<(BTreeMap<String, u64>, Vec<PartitionRef>), IndexError> {
        let collector = KeyedCollector {
            key_field: "service",
            time_field: "time",
            with_details: false,
        };
        let mut found = KeyedFruit::new();
        let partitions = self.partitions_matching_in(Signal::Logs, start, end, None, scope)?;
        let read = partitions.local_refs();
        for partition in partitions {
            let partition = partition?;
            merge_keyed(&mut found, partition.searcher().search(query, &collector)?);
        }
        Ok((found.into_iter().map(|(k, v)| (k, v.count)).collect(), read))
    }
}

/// `query` (or everything) restricted to `[start, end)` on the signal's time field.
pub(crate) fn filtered(
    query: Option<&Expr>,
    signal: Signal,
    start: u64,
    end: u64,
) -> Result<BooleanQuery, IndexError> {
    let matcher: Box<dyn Query> = match query {
        Some(e) => compile(e, signal)?,
        None => Box::new(AllQuery),
    };
    let time_field = match signal {
        Signal::Logs => log_fields().time,
        Signal::Spans => span_fields().start,
    };
    Ok(BooleanQuery::new(vec![
        (Occur::Must, matcher),
        (Occur::Must, time_range(time_field, start, end)),
    ]))
}
