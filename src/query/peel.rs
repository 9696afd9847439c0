//! Layer peeling: facets and field lists of logs or spans, span statistics by group (rates,
//! error ratios, percentiles, exemplars), the latency heatmap, and comparisons of a selection
//! against a baseline. Each request is built from the text parameters every endpoint shares
//! ([`PeelParams`]); the counting is `weft_index::peel`'s, summed over the cluster on a search
//! node (`super::aggregation`); what is computed from the counts is computed here.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use weft_index::Signal;
use weft_index::histogram::LatencyHistogram;
use weft_index::patterns::{Baseline, PatternRequest, PatternSet};
use weft_index::peel::{self, FieldRef, StatsRequest};
use weft_index::query::{Expr, parse};

use super::aggregation::Aggregation;
use super::requests::{count, time_range};
use super::{Error, QueryService};

/// Fields one facets request may name.
const MAX_FACET_FIELDS: usize = 20;
const DEFAULT_FACET_VALUES: usize = 10;
const MAX_FACET_VALUES: usize = 1_000;
const DEFAULT_GROUPS: usize = 100;
const MAX_GROUPS: usize = 1_000;
const DEFAULT_HEATMAP_BUCKETS: usize = 60;
const DEFAULT_FINDINGS: usize = 20;
const MAX_FINDINGS: usize = 200;

/// Parameters every peeling endpoint reads; each uses those it needs.
#[derive(Debug, Default, Deserialize)]
pub struct PeelParams {
    pub q: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub fields: Option<String>,
    pub limit: Option<String>,
    pub group_by: Option<String>,
    pub series: Option<String>,
    pub buckets: Option<String>,
    pub baseline: Option<String>,
    /// `compare` of logs: `true` adds the body templates over-represented (it reads bodies, so
    /// it is asked for, not always paid).
    pub patterns: Option<String>,
}

/// A query of `signal`, checked so a bad one is a 400 that names the signal's fields.
pub(super) fn parse_query(signal: Signal, text: Option<&str>) -> Result<Option<Expr>, Error> {
    let bad = |e| match signal {
        Signal::Logs => Error::from(e),
        Signal::Spans => Error::span_query(e),
    };
    let expr = parse(text.unwrap_or("")).map_err(bad)?;
    if let Some(e) = &expr {
        weft_index::query::compile(e, signal).map_err(bad)?;
    }
    Ok(expr)
}

/// A comma-separated list of fields.
fn parse_fields(
    signal: Signal,
    name: &str,
    text: &str,
    max: usize,
) -> Result<Vec<FieldRef>, Error> {
    let fields = text
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| FieldRef::parse(signal, f).map_err(Error::BadRequest))
        .collect::<Result<Vec<_>, _>>()?;
    if fields.len() > max {
        return Err(Error::BadRequest(format!(
            "{name} names {} fields; at most {max}",
            fields.len()
        )));
    }
    Ok(fields)
}

#[derive(Serialize)]
pub struct FacetValueJson {
    value: String,
    count: u64,
}

#[derive(Serialize)]
pub struct FacetJson {
    field: String,
    values: Vec<FacetValueJson>,
    /// Selected rows that have the field.
    with_field: u64,
    distinct: u64,
    capped: bool,
}

#[derive(Serialize)]
pub struct FacetsAnswer {
    total: u64,
    facets: Vec<FacetJson>,
    /// On a search node: ingest nodes that did not answer, whose rows not yet published are
    /// not counted.
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

impl QueryService {
    pub async fn facets(
        &self,
        signal: Signal,
        params: PeelParams,
        authorization: Option<&str>,
    ) -> Result<FacetsAnswer, Error> {
        let started = Instant::now();
        parse_query(signal, params.q.as_deref())?;
        let (start, end) = time_range(params.start.as_deref(), params.end.as_deref())?;
        let fields = match params.fields.as_deref() {
            Some(text) => parse_fields(signal, "fields", text, MAX_FACET_FIELDS)?,
            None => FieldRef::fixed(signal).to_vec(),
        };
        let limit = count(
            "limit",
            params.limit.as_deref(),
            DEFAULT_FACET_VALUES,
            MAX_FACET_VALUES,
        )?;
        let aggregation = Aggregation::ValueCounts {
            signal,
            q: params.q.unwrap_or_default(),
            start_unix_nano: start,
            end_unix_nano: end,
            fields: fields.clone(),
        };
        let found = self.aggregate(aggregation, authorization).await?;
        let missing = found.missing_nodes;
        let found = found.value;
        let mut counts = found.value_counts;
        counts.resize_with(fields.len(), Default::default);
        Ok(FacetsAnswer {
            total: found.total,
            facets: fields
                .into_iter()
                .zip(counts)
                .map(|(field, counts)| counts.facet(field, limit))
                .map(|f| FacetJson {
                    field: f.field.to_string(),
                    values: f
                        .values
                        .into_iter()
                        .map(|v| FacetValueJson {
                            value: v.value,
                            count: v.count,
                        })
                        .collect(),
                    with_field: f.with_field,
                    distinct: f.distinct,
                    capped: f.capped,
                })
                .collect(),
            partial: !missing.is_empty(),
            missing_nodes: missing,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}

#[derive(Serialize)]
pub struct FieldJson {
    field: String,
    distinct: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    with_field: Option<u64>,
    /// False for near-unique keys, whose `distinct` is an estimate over the time range.
    exact: bool,
}

#[derive(Serialize)]
pub struct FieldsAnswer {
    fields: Vec<FieldJson>,
    /// As in [`FacetsAnswer`].
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

impl QueryService {
    pub async fn fields(
        &self,
        signal: Signal,
        params: PeelParams,
        authorization: Option<&str>,
    ) -> Result<FieldsAnswer, Error> {
        let started = Instant::now();
        parse_query(signal, params.q.as_deref())?;
        let (start, end) = time_range(params.start.as_deref(), params.end.as_deref())?;
        let aggregation = Aggregation::Fields {
            signal,
            q: params.q.unwrap_or_default(),
            start_unix_nano: start,
            end_unix_nano: end,
        };
        let found = self.aggregate(aggregation, authorization).await?;
        let missing = found.missing_nodes;
        let found = found.value;
        Ok(FieldsAnswer {
            fields: found
                .fields
                .into_iter()
                .map(|(f, _)| FieldJson {
                    field: f.field.to_string(),
                    distinct: f.distinct,
                    with_field: f.with_field,
                    exact: f.exact,
                })
                .collect(),
            partial: !missing.is_empty(),
            missing_nodes: missing,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}

#[derive(Serialize)]
pub struct ExemplarJson {
    band: &'static str,
    trace_id: String,
    duration_ns: String,
}

#[derive(Serialize)]
pub struct SeriesJson {
    count: u64,
    errors: u64,
    p99_ns: Option<String>,
}

#[derive(Serialize)]
pub struct GroupJson {
    /// The group's value of each `group_by` field; null for spans without it.
    key: Vec<Option<String>>,
    count: u64,
    /// Spans per second over the range.
    rate: f64,
    errors: u64,
    error_ratio: f64,
    p50_ns: Option<String>,
    p90_ns: Option<String>,
    p99_ns: Option<String>,
    max_ns: String,
    exemplars: Vec<ExemplarJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    series: Vec<SeriesJson>,
}

#[derive(Serialize)]
pub struct StatsAnswer {
    group_by: Vec<String>,
    total: u64,
    groups: Vec<GroupJson>,
    /// More groups exist than were returned (see `limit`), or than weft tracks.
    limited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    series_bucket_ns: Option<String>,
    /// As in [`FacetsAnswer`].
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

fn nanos(value: Option<u64>) -> Option<String> {
    value.map(|v| v.to_string())
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl QueryService {
    pub async fn span_stats(
        &self,
        params: PeelParams,
        authorization: Option<&str>,
    ) -> Result<StatsAnswer, Error> {
        let started = Instant::now();
        let query = parse_query(Signal::Spans, params.q.as_deref())?;
        let (start, end) = time_range(params.start.as_deref(), params.end.as_deref())?;
        let group_by = parse_fields(
            Signal::Spans,
            "group_by",
            params.group_by.as_deref().unwrap_or("service,name"),
            peel::MAX_GROUP_BY,
        )?;
        let groups_limit = count("limit", params.limit.as_deref(), DEFAULT_GROUPS, MAX_GROUPS)?;
        let series_buckets = match params.series.as_deref() {
            None | Some("0") => 0,
            Some(text) => count("series", Some(text), 0, peel::MAX_TIME_BUCKETS)
                .map_err(|_| series_error("series", text))?,
        };
        let request = StatsRequest {
            query,
            start,
            end,
            group_by: group_by.clone(),
            series_buckets,
        };
        let found = self
            .aggregate(Aggregation::SpanStats { request }, authorization)
            .await?;
        let missing = found.missing_nodes;
        let found = found.value;
        let found = found.span_stats.unwrap_or_default();
        let seconds = (end - start) as f64 / 1e9;
        let limited = found.groups_capped || found.groups.len() > groups_limit;
        let groups = found
            .groups
            .into_iter()
            .take(groups_limit)
            .map(|g| GroupJson {
                rate: g.count as f64 / seconds,
                error_ratio: ratio(g.errors, g.count),
                p50_ns: nanos(g.histogram.quantile(0.5)),
                p90_ns: nanos(g.histogram.quantile(0.9)),
                p99_ns: nanos(g.histogram.quantile(0.99)),
                max_ns: g.max_ns.to_string(),
                exemplars: g
                    .exemplars
                    .into_iter()
                    .map(|e| ExemplarJson {
                        band: e.band,
                        trace_id: hex::encode(e.trace_id),
                        duration_ns: e.duration_ns.to_string(),
                    })
                    .collect(),
                series: g
                    .series
                    .into_iter()
                    .map(|s| SeriesJson {
                        count: s.count,
                        errors: s.errors,
                        p99_ns: nanos(s.histogram.quantile(0.99)),
                    })
                    .collect(),
                key: g.key,
                count: g.count,
                errors: g.errors,
            })
            .collect();
        Ok(StatsAnswer {
            group_by: group_by.iter().map(ToString::to_string).collect(),
            total: found.total,
            groups,
            limited,
            series_bucket_ns: (found.series_bucket_ns > 0)
                .then(|| found.series_bucket_ns.to_string()),
            partial: !missing.is_empty(),
            missing_nodes: missing,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}

fn series_error(name: &str, text: &str) -> Error {
    Error::BadRequest(format!(
        "{name} must be a number from 0 to {}, not '{text}'",
        peel::MAX_TIME_BUCKETS
    ))
}

#[derive(Serialize)]
pub struct LatencyBucketJson {
    bucket: u16,
    low_ns: String,
    high_ns: String,
}

#[derive(Serialize)]
pub struct CellJson {
    /// Index into `time_buckets`.
    t: u32,
    /// Latency row number (see `latency_buckets`).
    l: u16,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exemplar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exemplar_duration_ns: Option<String>,
}

#[derive(Serialize)]
pub struct HeatmapAnswer {
    total: u64,
    start_unix_nano: String,
    bucket_ns: String,
    buckets: usize,
    /// The latency buckets that have a cell, lowest first, with their bounds.
    latency_buckets: Vec<LatencyBucketJson>,
    cells: Vec<CellJson>,
    /// As in [`FacetsAnswer`].
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

impl QueryService {
    pub async fn span_heatmap(
        &self,
        params: PeelParams,
        authorization: Option<&str>,
    ) -> Result<HeatmapAnswer, Error> {
        let started = Instant::now();
        parse_query(Signal::Spans, params.q.as_deref())?;
        let (start, end) = time_range(params.start.as_deref(), params.end.as_deref())?;
        let buckets = count(
            "buckets",
            params.buckets.as_deref(),
            DEFAULT_HEATMAP_BUCKETS,
            peel::MAX_TIME_BUCKETS,
        )
        .map_err(|_| {
            Error::BadRequest(format!(
                "buckets must be a number from 1 to {}",
                peel::MAX_TIME_BUCKETS
            ))
        })?;
        let aggregation = Aggregation::Heatmap {
            q: params.q.unwrap_or_default(),
            start_unix_nano: start,
            end_unix_nano: end,
            buckets,
        };
        let found = self.aggregate(aggregation, authorization).await?;
        let missing = found.missing_nodes;
        let found = found.value;
        let found = found.heatmap.unwrap_or_default();
        let mut latency: Vec<u16> = found.cells.iter().map(|c| c.latency_bucket).collect();
        latency.sort_unstable();
        latency.dedup();
        Ok(HeatmapAnswer {
            total: found.total,
            start_unix_nano: start.to_string(),
            bucket_ns: found.bucket_ns.to_string(),
            buckets: found.buckets,
            latency_buckets: latency
                .into_iter()
                .map(|row| {
                    let (low, high) = LatencyHistogram::heatmap_row_bounds(row);
                    LatencyBucketJson {
                        bucket: row,
                        low_ns: low.to_string(),
                        // The next row's start, as before: the bound is exclusive.
                        high_ns: high.saturating_add(1).to_string(),
                    }
                })
                .collect(),
            cells: found
                .cells
                .into_iter()
                .map(|c| CellJson {
                    t: c.time_bucket,
                    l: c.latency_bucket,
                    count: c.count,
                    exemplar: c.exemplar.map(|(id, _)| hex::encode(id)),
                    exemplar_duration_ns: c.exemplar.map(|(_, d)| d.to_string()),
                })
                .collect(),
            partial: !missing.is_empty(),
            missing_nodes: missing,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}

#[derive(Serialize)]
pub struct FindingJson {
    field: String,
    value: String,
    selection_count: u64,
    baseline_count: u64,
    selection_share: f64,
    baseline_share: f64,
    difference: f64,
}

/// A log template over-represented in the selection.
#[derive(Serialize)]
pub struct PatternFindingJson {
    pattern: String,
    selection_count: u64,
    baseline_count: u64,
    selection_share: f64,
    baseline_share: f64,
    difference: f64,
}

#[derive(Serialize)]
pub struct CompareAnswer {
    selection_total: u64,
    baseline_total: u64,
    /// `"rest"` when the baseline is every other row of the range.
    baseline: String,
    fields_compared: Vec<String>,
    findings: Vec<FindingJson>,
    /// Logs, when asked for (`patterns=true`): the body templates whose share of the
    /// selection is above their share of the baseline, the largest difference first.
    #[serde(skip_serializing_if = "Option::is_none")]
    patterns: Option<Vec<PatternFindingJson>>,
    /// As in [`FacetsAnswer`].
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

impl QueryService {
    pub async fn compare(
        &self,
        signal: Signal,
        params: PeelParams,
        authorization: Option<&str>,
    ) -> Result<CompareAnswer, Error> {
        let started = Instant::now();
        let selection = parse_query(signal, params.q.as_deref())?.ok_or_else(|| {
            Error::BadRequest(
                "q must select the rows to compare (for example duration>=500ms)".into(),
            )
        })?;
        let baseline = parse_query(signal, params.baseline.as_deref())?;
        let (start, end) = time_range(params.start.as_deref(), params.end.as_deref())?;
        let findings_limit = count(
            "limit",
            params.limit.as_deref(),
            DEFAULT_FINDINGS,
            MAX_FINDINGS,
        )?;
        let baseline_text = params
            .baseline
            .clone()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "rest".into());
        // The selection's fields and their counts; then the baseline's counts of those worth
        // comparing (without a baseline, every row's: the selection is taken out of them).
        let selected = self
            .aggregate(
                Aggregation::Fields {
                    signal,
                    q: params.q.clone().unwrap_or_default(),
                    start_unix_nano: start,
                    end_unix_nano: end,
                },
                authorization,
            )
            .await?;
        let mut missing = selected.missing_nodes;
        let selected = selected.value;
        let (fields, selected_counts) =
            peel::comparable_fields(signal, &selection, selected.fields);
        let base = self
            .aggregate(
                Aggregation::ValueCounts {
                    signal,
                    q: params.baseline.clone().unwrap_or_default(),
                    start_unix_nano: start,
                    end_unix_nano: end,
                    fields: fields.clone(),
                },
                authorization,
            )
            .await?;
        missing.extend(base.missing_nodes);
        let base = base.value;
        missing.sort();
        missing.dedup();
        let mut base_counts = base.value_counts;
        base_counts.resize_with(fields.len(), Default::default);
        let found = peel::findings(
            (selected.total, fields, selected_counts),
            (base.total, base_counts),
            baseline.is_none(),
            findings_limit,
        );
        let with_patterns = match params.patterns.as_deref().map(str::trim) {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "patterns must be true or false, not {other:?}"
                )));
            }
        };
        let patterns = match signal {
            Signal::Logs if with_patterns => {
                let request = PatternRequest {
                    query: Some(selection),
                    start_unix_nano: start,
                    end_unix_nano: end,
                    baseline: Some(Baseline::Query(baseline)),
                    buckets: 1,
                    max_read_rows: COMPARE_PATTERN_ROWS,
                };
                let (set, more_missing) = self.pattern_set(request, authorization).await?;
                missing.extend(more_missing);
                missing.sort();
                missing.dedup();
                Some(pattern_findings(set, findings_limit))
            }
            _ => None,
        };
        Ok(CompareAnswer {
            selection_total: found.selection_total,
            baseline_total: found.baseline_total,
            baseline: baseline_text,
            fields_compared: found.fields.iter().map(ToString::to_string).collect(),
            findings: found
                .findings
                .iter()
                .map(|f| FindingJson {
                    field: f.field.to_string(),
                    value: f.value.clone(),
                    selection_count: f.selection_count,
                    baseline_count: f.baseline_count,
                    selection_share: f.selection_share,
                    baseline_share: f.baseline_share,
                    difference: f.difference(),
                })
                .collect(),
            patterns,
            partial: !missing.is_empty(),
            missing_nodes: missing,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Rows a comparison reads per side for its patterns: a sample this size finds the templates
/// that make up a share worth reporting, and keeps a comparison as quick as its field counts.
const COMPARE_PATTERN_ROWS: u64 = 2_000;

/// The templates whose share of the selection is above their share of the baseline.
fn pattern_findings(mut set: PatternSet, limit: usize) -> Vec<PatternFindingJson> {
    set.against_baseline();
    let share = |n: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let mut found: Vec<PatternFindingJson> = set
        .patterns
        .into_iter()
        .map(|p| {
            let selection_share = share(p.stats.count, set.total);
            let baseline_share = share(p.stats.baseline_count, set.baseline_total).min(1.0);
            PatternFindingJson {
                pattern: p.pattern,
                selection_count: p.stats.count,
                baseline_count: p.stats.baseline_count,
                selection_share,
                baseline_share,
                difference: selection_share - baseline_share,
            }
        })
        .filter(|f| f.difference > 0.0)
        .collect();
    found.sort_by(|a, b| b.difference.total_cmp(&a.difference));
    found.truncate(limit);
    found
}
