//! Log patterns: the templates of a selection's bodies (`weft_index::patterns`), over this
//! node or, on a search node, the cluster (`super::aggregation` merges the nodes' templates).
//! With `new_since`, only the templates that did not occur in the range before that time:
//! what appeared after a deploy.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use weft_index::Signal;
use weft_index::aggregate::BANDS;
use weft_index::patterns::{Baseline, PatternRequest, PatternSet};

use super::aggregation::Aggregation;
use super::peel::parse_query;
use super::requests::{count, time, time_range};
use super::{Error, QueryService};

const DEFAULT_PATTERNS: usize = 50;
const MAX_PATTERNS: usize = 1_000;
const DEFAULT_SERIES_BUCKETS: usize = 30;

/// `GET /api/v1/logs/patterns` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct PatternParams {
    pub q: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub limit: Option<String>,
    pub buckets: Option<String>,
    pub new_since: Option<String>,
}

#[derive(Serialize)]
pub struct SampleJson {
    time_unix_nano: String,
    service: String,
    body: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    trace_id: String,
}

#[derive(Serialize)]
pub struct PatternJson {
    /// The template, variable tokens `<*>`; `pattern:"…"` in a query keeps its records.
    pattern: String,
    /// Records (an estimate when the answer is `estimated`).
    count: u64,
    first_unix_nano: String,
    last_unix_nano: String,
    /// Severity bands seen, lowest first.
    severities: Vec<&'static str>,
    /// The newest record read of it.
    sample: Option<SampleJson>,
    /// Records per bucket of the range.
    series: Vec<u64>,
}

#[derive(Serialize)]
pub struct PatternsAnswer {
    patterns: Vec<PatternJson>,
    /// Records selected (with `new_since`: from then on).
    total: u64,
    /// True when more records were selected than are read whole: the counts are then
    /// estimated from `sampled_records` records.
    estimated: bool,
    sampled_records: u64,
    /// With `new_since`: the records before it, whose patterns are left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    before_total: Option<u64>,
    series_start_unix_nano: String,
    series_bucket_ns: String,
    /// As in the facets answer.
    partial: bool,
    missing_nodes: Vec<String>,
    took_ms: u64,
}

impl QueryService {
    /// The patterns of the records a request selects, merged over the cluster.
    pub(crate) async fn pattern_set(
        &self,
        request: PatternRequest,
        authorization: Option<&str>,
    ) -> Result<(PatternSet, Vec<String>), Error> {
        let found = self
            .aggregate(Aggregation::Patterns { request }, authorization)
            .await?;
        Ok((
            found.value.patterns.unwrap_or_default(),
            found.missing_nodes,
        ))
    }

    pub async fn patterns(
        &self,
        params: PatternParams,
        authorization: Option<&str>,
    ) -> Result<PatternsAnswer, Error> {
        let started = Instant::now();
        let query = parse_query(Signal::Logs, params.q.as_deref())?;
        let (start, end) = time_range(params.start.as_deref(), params.end.as_deref())?;
        let limit = count(
            "limit",
            params.limit.as_deref(),
            DEFAULT_PATTERNS,
            MAX_PATTERNS,
        )?;
        let buckets = count(
            "buckets",
            params.buckets.as_deref(),
            DEFAULT_SERIES_BUCKETS,
            weft_index::patterns::MAX_SERIES_BUCKETS,
        )?;
        let new_since = match params.new_since.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(text) => {
                let at = time("new_since", text)?;
                if at <= start || at >= end {
                    return Err(Error::BadRequest(format!(
                        "new_since ({at}) must lie inside the range ({start} to {end}): the \
                         patterns after it are set against those before it"
                    )));
                }
                Some(at)
            }
        };
        let request = PatternRequest {
            query,
            start_unix_nano: start,
            end_unix_nano: end,
            baseline: new_since.map(Baseline::Before),
            buckets,
            max_read_rows: weft_index::patterns::MAX_READ_ROWS,
        };
        let (mut found, missing) = self.pattern_set(request, authorization).await?;
        found.against_baseline();
        let estimated = found.estimated();
        let bucket_ns = (end - start) / buckets as u64;
        let patterns = found
            .patterns
            .into_iter()
            // New since: none of its records before.
            .filter(|p| new_since.is_none() || (p.stats.baseline_count == 0 && p.stats.count > 0))
            .take(limit)
            .map(|p| {
                let s = p.stats;
                PatternJson {
                    pattern: p.pattern,
                    count: s.count,
                    first_unix_nano: s.first_unix_nano.to_string(),
                    last_unix_nano: s.last_unix_nano.to_string(),
                    severities: (0..BANDS.len())
                        .filter(|b| s.bands & (1 << b) != 0)
                        .map(|b| BANDS[b])
                        .collect(),
                    sample: s.sample.map(|r| SampleJson {
                        time_unix_nano: r.time_unix_nano.to_string(),
                        service: r.service,
                        body: r.body,
                        trace_id: r.trace_id,
                    }),
                    series: s.series,
                }
            })
            .collect();
        Ok(PatternsAnswer {
            patterns,
            total: found.total,
            estimated,
            sampled_records: found.read,
            before_total: new_since.map(|_| found.baseline_total),
            series_start_unix_nano: start.to_string(),
            series_bucket_ns: bucket_ns.to_string(),
            partial: !missing.is_empty(),
            missing_nodes: missing,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}
