//! Log patterns: the templates of a selection's bodies, with what each template's records add
//! up to.
//!
//! - `crate::templates`: a body as masked tokens, and the clustering of lines into templates;
//! - `read`: the records a selection picks in a partition's segments, read from the index
//!   (all of them, or an even sample of chunks when there are more than [`MAX_READ_ROWS`]).
//!
//! Nothing is computed at ingest: the bodies are read and clustered when asked. What one node
//! or partition finds ([`PatternSet`]) merges with what others found (the same tree takes
//! their templates as lines), so a search node's answer covers the cluster.
//!
//! A template is also a filter: `pattern:"user <*> logged in"` keeps the records whose masked
//! body has the template's length and its constant tokens (`crate::query`).

mod read;

pub use read::MAX_READ_ROWS;

use serde::{Deserialize, Serialize};

use crate::query::Expr;
use crate::templates::{Drain, Payload};

/// Buckets of a pattern's series, at most.
pub const MAX_SERIES_BUCKETS: usize = 120;

/// Which patterns to find.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatternRequest {
    /// The records (all when `None`).
    pub query: Option<Expr>,
    /// Range start, inclusive.
    pub start_unix_nano: u64,
    /// Range end, exclusive.
    pub end_unix_nano: u64,
    /// What the records are set against, counted apart in `baseline_count`.
    pub baseline: Option<Baseline>,
    /// Buckets of each pattern's series over the range.
    pub buckets: usize,
    /// Rows read per side before an even sample is read instead (at most [`MAX_READ_ROWS`]).
    #[serde(default = "default_read_rows")]
    pub max_read_rows: u64,
}

fn default_read_rows() -> u64 {
    MAX_READ_ROWS
}

/// The records a selection is set against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// The query's records before this time (the selection is those from it on): which
    /// patterns are new since then.
    Before(u64),
    /// The records of this query in the range; when `None`, every record the selection
    /// leaves out (the rest).
    Query(Option<Expr>),
}

/// A template as clustered, with its records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PatternStats {
    /// Records (estimated when the set is sampled).
    pub count: u64,
    /// Records of the baseline that may fit the template ([`PatternSet::against_baseline`]).
    #[serde(default)]
    pub baseline_count: u64,
    /// Oldest record's time.
    pub first_unix_nano: u64,
    /// Newest record's time.
    pub last_unix_nano: u64,
    /// Severity bands seen, a bit per band (`crate::aggregate::BANDS`).
    pub bands: u8,
    /// A record of the template: the newest read.
    pub sample: Option<Sample>,
    /// Selected records per bucket of the range.
    pub series: Vec<u64>,
}

/// A record shown for its pattern.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Its time.
    pub time_unix_nano: u64,
    /// Its service.
    pub service: String,
    /// Its body as text.
    pub body: String,
    /// Its trace, hex (empty when none).
    pub trace_id: String,
}

impl Payload for PatternStats {
    fn merge(&mut self, other: Self) {
        if self.count == 0 {
            *self = other;
            return;
        }
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.baseline_count += other.baseline_count;
        self.first_unix_nano = self.first_unix_nano.min(other.first_unix_nano);
        self.last_unix_nano = self.last_unix_nano.max(other.last_unix_nano);
        self.bands |= other.bands;
        let newer = match (&self.sample, &other.sample) {
            (Some(a), Some(b)) => b.time_unix_nano > a.time_unix_nano,
            (None, Some(_)) => true,
            _ => false,
        };
        if newer {
            self.sample = other.sample;
        }
        if self.series.len() < other.series.len() {
            self.series.resize(other.series.len(), 0);
        }
        for (mine, theirs) in self.series.iter_mut().zip(other.series) {
            *mine += theirs;
        }
    }
}

/// One pattern found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// The template, tokens separated by a space, variable ones [`crate::templates::WILDCARD`].
    pub pattern: String,
    /// What its records add up to.
    #[serde(flatten)]
    pub stats: PatternStats,
}

/// The patterns of a selection, or part of one, ready to merge with other parts.
///
/// The baseline is clustered apart from the selection: clustered together, a template new in
/// the selection would merge with a similar old one (`user <*> logged out` with `user <*>
/// logged in`) and hide. Each selected pattern is set against the baseline's at the end
/// ([`PatternSet::against_baseline`]), once every part is merged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PatternSet {
    /// The selection's patterns, largest first.
    pub patterns: Vec<Pattern>,
    /// The baseline's, when there is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<Pattern>,
    /// Records selected.
    pub total: u64,
    /// Records of the baseline.
    pub baseline_total: u64,
    /// Records read and clustered, of both sides: less than the totals when sampled, and then
    /// the counts are estimates.
    pub read: u64,
}

impl PatternSet {
    /// Whether the counts are estimated from a sample.
    pub fn estimated(&self) -> bool {
        self.read < self.total + self.baseline_total
    }

    /// Adds another part's patterns: equal templates add up, a template another covers is
    /// folded into it, and similar ones merge as lines do.
    pub fn merge(self, other: PatternSet) -> PatternSet {
        PatternSet {
            patterns: merged(self.patterns, other.patterns),
            baseline: merged(self.baseline, other.baseline),
            total: self.total + other.total,
            baseline_total: self.baseline_total + other.baseline_total,
            read: self.read + other.read,
        }
    }

    /// Gives each selected pattern its `baseline_count`: the baseline records of the
    /// templates some line could fit along with it (same length, and where both are constant,
    /// the same token). A pattern with none is new against the baseline.
    pub fn against_baseline(&mut self) {
        let baseline: Vec<(Vec<&str>, u64)> = self
            .baseline
            .iter()
            .map(|b| (b.pattern.split(' ').collect(), b.stats.count))
            .collect();
        for pattern in &mut self.patterns {
            let tokens: Vec<&str> = pattern.pattern.split(' ').collect();
            pattern.stats.baseline_count = baseline
                .iter()
                .filter(|(b, _)| crate::templates::overlap(&tokens, b))
                .map(|(_, n)| n)
                .sum();
        }
    }
}

/// Largest first, then alphabetical: the order of every list of patterns.
fn largest_first(a: &Pattern, b: &Pattern) -> std::cmp::Ordering {
    (b.stats.count, &a.pattern).cmp(&(a.stats.count, &b.pattern))
}

/// Two parts' patterns as one list: equal templates add up, a template another covers folds
/// into it, and similar ones merge as lines do.
fn merged(a: Vec<Pattern>, b: Vec<Pattern>) -> Vec<Pattern> {
    if b.is_empty() {
        return a;
    }
    let mut drain = Drain::default();
    for pattern in a.into_iter().chain(b) {
        let tokens: Vec<&str> = pattern.pattern.split(' ').collect();
        drain.add(&tokens, pattern.stats);
    }
    let mut patterns: Vec<Pattern> = drain
        .into_templates()
        .into_iter()
        .map(|t| Pattern {
            pattern: crate::templates::join(&t.tokens),
            stats: t.payload,
        })
        .collect();
    patterns.sort_by(largest_first);
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[(&str, u64)]) -> PatternSet {
        PatternSet {
            patterns: patterns
                .iter()
                .map(|(p, n)| Pattern {
                    pattern: p.to_string(),
                    stats: PatternStats {
                        count: *n,
                        first_unix_nano: 10,
                        last_unix_nano: 20,
                        series: vec![*n],
                        ..Default::default()
                    },
                })
                .collect(),
            baseline: Vec::new(),
            total: patterns.iter().map(|(_, n)| n).sum(),
            baseline_total: 0,
            read: patterns.iter().map(|(_, n)| n).sum(),
        }
    }

    #[test]
    fn parts_merge_by_template() {
        let merged = set(&[("user <*> logged in", 5), ("disk full", 1)])
            .merge(set(&[("user bob logged in", 2), ("disk full", 3)]));
        let found: Vec<(&str, u64)> = merged
            .patterns
            .iter()
            .map(|p| (p.pattern.as_str(), p.stats.count))
            .collect();
        assert_eq!(found, [("user <*> logged in", 7), ("disk full", 4)]);
        assert_eq!(merged.patterns[1].stats.series, [4]);
        assert_eq!(merged.total, 11);
        assert!(!merged.estimated());
    }
}

#[cfg(test)]
mod baseline_tests {
    use super::*;

    #[test]
    fn a_pattern_is_new_when_no_baseline_template_could_hold_its_lines() {
        let pattern = |p: &str, n: u64| Pattern {
            pattern: p.to_string(),
            stats: PatternStats {
                count: n,
                ..Default::default()
            },
        };
        let mut set = PatternSet {
            patterns: vec![
                pattern("user <*> logged out", 4),
                pattern("user <*> logged in", 9),
                pattern("disk <*> full", 1),
            ],
            baseline: vec![
                pattern("user alice logged in", 3),
                pattern("disk sda1 full", 2),
            ],
            ..Default::default()
        };
        set.against_baseline();
        let counts: Vec<u64> = set
            .patterns
            .iter()
            .map(|p| p.stats.baseline_count)
            .collect();
        assert_eq!(counts, [0, 3, 2]);
    }
}
