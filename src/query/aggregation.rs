//! The catalogs (services, operations, event IDs), the log histogram and the counts behind
//! facets, field lists and comparisons, over this node or,
//! on a search node, over the whole cluster: each live ingest node adds up its rows not yet
//! published (`POST /api/v1/internal/aggregate`), the search node the published splits they
//! do not stand for, and the parts are summed. Counts add; first and last times take the
//! extremes; sets unite. So a service or an event seen only by an ingest node's newest rows
//! is in the catalog within a second of its ack, as on one node.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use weft_index::aggregate::{EventStats, HistogramBucket, ServiceStats};
use weft_index::calls::{ANSWER_EXEMPLARS, CallStats, ServiceCall};
use weft_index::clock::ClockOffset;
use weft_index::patterns::{PatternRequest, PatternSet};
use weft_index::peel::{
    CountedField, FieldRef, Heatmap, SpanStats, StatsRequest, ValueCounts, merge_counted_fields,
};
use weft_index::query::parse;
use weft_index::store::{PartitionRef, Scope};
use weft_index::{Signal, Store};

use super::{Answer, Error, QueryService};

/// An aggregation, as a search node asks an ingest node for its part.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Aggregation {
    /// Log records matching `q` in `buckets` equal buckets of `[start, end)`, by severity band.
    Histogram {
        q: String,
        start_unix_nano: u64,
        end_unix_nano: u64,
        buckets: usize,
    },
    /// Services with their span and log counts.
    Services {
        start_unix_nano: u64,
        end_unix_nano: u64,
    },
    /// A service's span names, with the span kinds of each.
    Operations {
        service: String,
        start_unix_nano: u64,
        end_unix_nano: u64,
    },
    /// Event IDs, of one service or all.
    Events {
        service: Option<String>,
        start_unix_nano: u64,
        end_unix_nano: u64,
    },
    /// The rows of `signal` matching `q` (all when empty), and the counts of every value of
    /// `fields` among them: facets, and a comparison's baseline.
    ValueCounts {
        signal: Signal,
        q: String,
        start_unix_nano: u64,
        end_unix_nano: u64,
        fields: Vec<FieldRef>,
    },
    /// The rows of `signal` matching `q`, and the fields they hold, counted exactly where a
    /// field has few values: the field list, and a comparison's selection.
    Fields {
        signal: Signal,
        q: String,
        start_unix_nano: u64,
        end_unix_nano: u64,
    },
    /// Calls between services whose called span started in the range.
    Calls {
        start_unix_nano: u64,
        end_unix_nano: u64,
    },
    /// Span statistics by group.
    SpanStats { request: StatsRequest },
    /// The templates of the log bodies a request selects (and of its baseline).
    Patterns { request: PatternRequest },
    /// The spans matching `q` by time bucket and latency bucket.
    Heatmap {
        q: String,
        start_unix_nano: u64,
        end_unix_nano: u64,
        buckets: usize,
    },
}

/// An aggregation's answer: the fields of its kind hold it (`total` with `value_counts` or
/// `fields`; one field for each other kind).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Aggregated {
    /// Histogram counts per bucket, per severity band (`weft_index::aggregate::BANDS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub histogram: Vec<[u64; 7]>,
    /// Services by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceStats>,
    /// With the services: each one's clock offset, as the node that indexed its calls
    /// estimates it (`weft_index::clock`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clock: BTreeMap<String, ClockOffset>,
    /// Span names, each with its span kinds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operations: BTreeMap<String, BTreeSet<String>>,
    /// Event IDs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub events: BTreeMap<String, EventStats>,
    /// Rows selected (value counts and fields).
    #[serde(default)]
    pub total: u64,
    /// Counts of each field's values, in the order the fields were asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_counts: Vec<ValueCounts>,
    /// Fields held, with their counts where counted exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<CountedField>,
    /// Calls between services, by calling then called service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<ServiceCall>,
    /// Span statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_stats: Option<SpanStats>,
    /// A latency heatmap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<Heatmap>,
    /// Log patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<PatternSet>,
}

/// An error naming the first of `fields` whose key is out of bounds.
fn check_fields(fields: &[FieldRef]) -> Result<(), Error> {
    fields
        .iter()
        .try_for_each(FieldRef::check)
        .map_err(Error::BadRequest)
}

/// Most histogram buckets one aggregation asks for.
pub const MAX_BUCKETS: usize = 1000;
/// Most fields one aggregation counts the values of (a comparison counts every field of its
/// selection that has few values).
pub const MAX_COUNTED_FIELDS: usize = 10_000;

impl Aggregation {
    /// An error when the aggregation asks for more than any answer may hold: the HTTP API
    /// bounds what users ask, and this bounds what another node asks.
    pub fn check_bounds(&self) -> Result<(), Error> {
        let too_many = |what: &str, n: usize, max: usize| {
            Err(Error::BadRequest(format!(
                "{what} must be at most {max}, not {n}"
            )))
        };
        match self {
            Aggregation::Histogram { buckets, .. } if *buckets > MAX_BUCKETS => {
                too_many("buckets", *buckets, MAX_BUCKETS)
            }
            Aggregation::Heatmap { buckets, .. }
                if *buckets > weft_index::peel::MAX_TIME_BUCKETS =>
            {
                too_many("buckets", *buckets, weft_index::peel::MAX_TIME_BUCKETS)
            }
            Aggregation::ValueCounts { fields, .. } if fields.len() > MAX_COUNTED_FIELDS => {
                too_many(
                    "the fields counted at once",
                    fields.len(),
                    MAX_COUNTED_FIELDS,
                )
            }
            Aggregation::ValueCounts { fields, .. } => check_fields(fields),
            Aggregation::SpanStats { request } => {
                check_fields(&request.group_by)?;
                if request.group_by.len() > weft_index::peel::MAX_GROUP_BY {
                    too_many(
                        "group_by",
                        request.group_by.len(),
                        weft_index::peel::MAX_GROUP_BY,
                    )
                } else if request.series_buckets > weft_index::peel::MAX_TIME_BUCKETS {
                    too_many(
                        "series",
                        request.series_buckets,
                        weft_index::peel::MAX_TIME_BUCKETS,
                    )
                } else {
                    Ok(())
                }
            }
            Aggregation::Patterns { request }
                if request.buckets > weft_index::patterns::MAX_SERIES_BUCKETS =>
            {
                too_many(
                    "buckets",
                    request.buckets,
                    weft_index::patterns::MAX_SERIES_BUCKETS,
                )
            }
            _ => Ok(()),
        }
    }

    /// This aggregation over the partitions of `store` that `scope` reads; also the local
    /// partitions it read.
    pub fn run(
        &self,
        store: &Store,
        scope: &Scope,
    ) -> Result<(Aggregated, Vec<PartitionRef>), Error> {
        let mut out = Aggregated::default();
        let read = match self {
            Aggregation::Histogram {
                q,
                start_unix_nano,
                end_unix_nano,
                buckets,
            } => {
                let query = parse(q)?;
                let (found, read) = store.log_histogram_in(
                    query.as_ref(),
                    *start_unix_nano,
                    *end_unix_nano,
                    *buckets,
                    scope,
                )?;
                out.histogram = found.into_iter().map(|b| b.counts).collect();
                read
            }
            Aggregation::Services {
                start_unix_nano,
                end_unix_nano,
            } => {
                let (found, read) = store.services_in(*start_unix_nano, *end_unix_nano, scope)?;
                out.services = found;
                out.clock = store.clock_offsets();
                read
            }
            Aggregation::Operations {
                service,
                start_unix_nano,
                end_unix_nano,
            } => {
                let (found, read) =
                    store.operations_in(service, *start_unix_nano, *end_unix_nano, scope)?;
                out.operations = found
                    .into_iter()
                    .map(|(name, kinds)| (name, kinds.into_iter().map(str::to_string).collect()))
                    .collect();
                read
            }
            Aggregation::Events {
                service,
                start_unix_nano,
                end_unix_nano,
            } => {
                let (found, read) =
                    store.events_in(service.as_deref(), *start_unix_nano, *end_unix_nano, scope)?;
                out.events = found;
                read
            }
            Aggregation::ValueCounts {
                signal,
                q,
                start_unix_nano,
                end_unix_nano,
                fields,
            } => {
                let query = parse(q)?;
                let ((total, counts), read) = store.value_counts_in(
                    *signal,
                    query.as_ref(),
                    *start_unix_nano,
                    *end_unix_nano,
                    fields,
                    scope,
                )?;
                out.total = total;
                out.value_counts = counts;
                read
            }
            Aggregation::Fields {
                signal,
                q,
                start_unix_nano,
                end_unix_nano,
            } => {
                let query = parse(q)?;
                let ((total, fields), read) = store.fields_with_counts_in(
                    *signal,
                    query.as_ref(),
                    *start_unix_nano,
                    *end_unix_nano,
                    scope,
                )?;
                out.total = total;
                out.fields = fields;
                read
            }
            Aggregation::Calls {
                start_unix_nano,
                end_unix_nano,
            } => {
                let (calls, read) = store.calls_in(*start_unix_nano, *end_unix_nano, scope)?;
                out.calls = calls;
                read
            }
            Aggregation::SpanStats { request } => {
                let (stats, read) = store.span_stats_in(request, scope)?;
                out.span_stats = Some(stats);
                read
            }
            Aggregation::Patterns { request } => {
                let (patterns, read) = store.patterns_in(request, scope)?;
                out.patterns = Some(patterns);
                read
            }
            Aggregation::Heatmap {
                q,
                start_unix_nano,
                end_unix_nano,
                buckets,
            } => {
                let query = parse(q)?;
                let (heatmap, read) = store.span_heatmap_in(
                    query.as_ref(),
                    *start_unix_nano,
                    *end_unix_nano,
                    *buckets,
                    scope,
                )?;
                out.heatmap = Some(heatmap);
                read
            }
        };
        Ok((out, read))
    }
}

impl Aggregated {
    /// Adds another part of the data's answer to this one.
    pub fn merge(&mut self, other: Aggregated) {
        if self.histogram.len() < other.histogram.len() {
            self.histogram.resize(other.histogram.len(), [0; 7]);
        }
        for (total, part) in self.histogram.iter_mut().zip(other.histogram) {
            for (t, p) in total.iter_mut().zip(part) {
                *t += p;
            }
        }
        for (name, stats) in other.services {
            self.services.entry(name).or_default().merge(&stats);
        }
        // Nodes see different calls; the estimate resting on the most of them stands.
        for (name, offset) in other.clock {
            let kept = self.clock.entry(name).or_insert(offset);
            if offset.pairs > kept.pairs {
                *kept = offset;
            }
        }
        for (name, kinds) in other.operations {
            self.operations.entry(name).or_default().extend(kinds);
        }
        for (event, stats) in other.events {
            self.events.entry(event).or_default().merge(stats);
        }
        self.total += other.total;
        if self.value_counts.len() < other.value_counts.len() {
            self.value_counts
                .resize_with(other.value_counts.len(), ValueCounts::default);
        }
        for (total, part) in self.value_counts.iter_mut().zip(other.value_counts) {
            total.merge(part);
        }
        if !other.fields.is_empty() {
            let fields = std::mem::take(&mut self.fields);
            self.fields = merge_counted_fields(fields, other.fields);
        }
        if !other.calls.is_empty() {
            let mut calls: BTreeMap<(String, String), CallStats> = std::mem::take(&mut self.calls)
                .into_iter()
                .map(|c| ((c.parent, c.child), c.stats))
                .collect();
            for call in other.calls {
                calls
                    .entry((call.parent, call.child))
                    .or_default()
                    .merge(&call.stats, ANSWER_EXEMPLARS);
            }
            self.calls = calls
                .into_iter()
                .map(|((parent, child), stats)| ServiceCall {
                    parent,
                    child,
                    stats,
                })
                .collect();
        }
        match (&mut self.span_stats, other.span_stats) {
            (Some(stats), Some(part)) => stats.merge(part),
            (stats @ None, part) => *stats = part,
            (Some(_), None) => {}
        }
        match (&mut self.heatmap, other.heatmap) {
            (Some(heatmap), Some(part)) => heatmap.merge(part),
            (heatmap @ None, part) => *heatmap = part,
            (Some(_), None) => {}
        }
        self.patterns = match (self.patterns.take(), other.patterns) {
            (Some(mine), Some(theirs)) => Some(mine.merge(theirs)),
            (mine, theirs) => mine.or(theirs),
        };
    }

    /// The histogram's buckets, the first starting at `start`, each `width` wide.
    pub fn histogram_buckets(&self, start: u64, width: u64) -> Vec<HistogramBucket> {
        self.histogram
            .iter()
            .enumerate()
            .map(|(i, counts)| HistogramBucket {
                start_unix_nano: start + i as u64 * width,
                counts: *counts,
            })
            .collect()
    }
}

impl QueryService {
    /// `aggregation` over this node, or over the whole cluster on a search node, missing the
    /// ingest nodes that did not answer (their rows not yet published are not counted).
    /// `authorization` (the caller's) is passed on to them.
    pub(crate) async fn aggregate(
        &self,
        aggregation: Aggregation,
        authorization: Option<&str>,
    ) -> Result<Answer<Aggregated>, Error> {
        let Some(fanout) = self.fanout().cloned() else {
            let (total, _) = self
                .run_query(move |store, _| aggregation.run(store, &Scope::All))
                .await?;
            return Ok(Answer::whole(total));
        };
        let gathered = fanout.aggregate(&aggregation, authorization).await;
        let answered = Scope::Except(gathered.covered());
        let (mut total, _) = self
            .run_query(move |store, _| aggregation.run(store, &answered))
            .await?;
        for answer in gathered.answers {
            total.merge(answer.value);
        }
        Ok(Answer::missing(total, gathered.missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up() {
        let mut total = Aggregated {
            histogram: vec![[1, 0, 0, 2, 0, 0, 0]],
            services: BTreeMap::from([(
                "cart".to_string(),
                ServiceStats {
                    spans: 2,
                    logs: 1,
                    last_seen_unix_nano: 50,
                },
            )]),
            operations: BTreeMap::from([("GET".to_string(), BTreeSet::from(["server".into()]))]),
            events: BTreeMap::from([(
                "E1".to_string(),
                EventStats {
                    count: 1,
                    first_seen_unix_nano: 10,
                    last_seen_unix_nano: 10,
                    services: BTreeSet::from(["cart".into()]),
                    severities: BTreeSet::from(["info".into()]),
                },
            )]),
            ..Default::default()
        };
        let part = Aggregated {
            histogram: vec![[0, 0, 0, 1, 0, 3, 0], [0, 0, 0, 0, 0, 0, 4]],
            services: BTreeMap::from([(
                "cart".to_string(),
                ServiceStats {
                    spans: 0,
                    logs: 5,
                    last_seen_unix_nano: 40,
                },
            )]),
            operations: BTreeMap::from([("GET".to_string(), BTreeSet::from(["client".into()]))]),
            events: BTreeMap::from([(
                "E1".to_string(),
                EventStats {
                    count: 2,
                    first_seen_unix_nano: 5,
                    last_seen_unix_nano: 8,
                    services: BTreeSet::from(["pay".into()]),
                    severities: BTreeSet::from(["error".into()]),
                },
            )]),
            ..Default::default()
        };
        // Through JSON, as an ingest node's part travels.
        let part: Aggregated =
            serde_json::from_str(&serde_json::to_string(&part).unwrap()).unwrap();
        total.merge(part);
        assert_eq!(
            total.histogram,
            [[1, 0, 0, 3, 0, 3, 0], [0, 0, 0, 0, 0, 0, 4]]
        );
        assert_eq!(
            total.services["cart"],
            ServiceStats {
                spans: 2,
                logs: 6,
                last_seen_unix_nano: 50
            }
        );
        assert_eq!(total.operations["GET"].len(), 2);
        let e1 = &total.events["E1"];
        assert_eq!(
            (e1.count, e1.first_seen_unix_nano, e1.last_seen_unix_nano),
            (3, 5, 10)
        );
        assert_eq!(e1.services.len(), 2);
        assert_eq!(e1.severities.len(), 2);
    }
}
