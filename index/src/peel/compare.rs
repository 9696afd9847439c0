//! "What is different here": field values over-represented in a selection against a baseline.

use super::FieldInfo;
use super::facets::{CountedField, ValueCounts};
use super::fields::FieldRef;
use crate::Signal;
use crate::error::IndexError;
use crate::query::Expr;
use crate::store::Store;

/// Fields with more distinct values than this are not compared, nor fields whose values are
/// mostly unique: a near-unique value (an order number) is "over-represented" wherever it
/// occurs, which says nothing.
const MAX_COMPARED_VALUES: u64 = 1_000;

fn worth_comparing(info: &FieldInfo) -> bool {
    let mostly_unique = info.distinct > 10 && info.distinct * 2 > info.with_field.unwrap_or(0);
    info.exact && info.distinct <= MAX_COMPARED_VALUES && !mostly_unique
}

/// Fields a query filters on: what it selects by cannot be what distinguishes the selection.
fn filtered_fields(signal: Signal, expr: &Expr, out: &mut Vec<FieldRef>) {
    match expr {
        Expr::Filter { field, .. } => out.extend(FieldRef::parse(signal, field).ok()),
        Expr::And(parts) | Expr::Or(parts) => {
            for part in parts {
                filtered_fields(signal, part, out);
            }
        }
        Expr::Not(_) | Expr::Text { .. } | Expr::Phrase { .. } => {}
    }
}

/// A value more frequent in the selection than in the baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The field.
    pub field: FieldRef,
    /// Its value.
    pub value: String,
    /// Selected rows with the value.
    pub selection_count: u64,
    /// Baseline rows with it.
    pub baseline_count: u64,
    /// Share of the selection with the value (0..=1).
    pub selection_share: f64,
    /// Share of the baseline with it.
    pub baseline_share: f64,
}

impl Finding {
    /// How much more common the value is in the selection, in shares (the ranking).
    pub fn difference(&self) -> f64 {
        self.selection_share - self.baseline_share
    }
}

/// A comparison's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Rows selected.
    pub selection_total: u64,
    /// Rows of the baseline.
    pub baseline_total: u64,
    /// Fields compared.
    pub fields: Vec<FieldRef>,
    /// Over-represented values, the largest difference first.
    pub findings: Vec<Finding>,
}

impl Store {
    /// Values over-represented among the rows `selection` picks in `[start, end)`, against the
    /// rows of `baseline` (default: every other row of the range). Every fixed field and every
    /// attribute key of the selection with at most [`MAX_COMPARED_VALUES`] values is compared,
    /// except those the selection filters on.
    pub fn compare(
        &self,
        signal: Signal,
        selection: &Expr,
        baseline: Option<&Expr>,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Comparison, IndexError> {
        // The selection's fields and their counts, in one pass.
        let (selection_total, listed) =
            self.fields_with_counts(signal, Some(selection), start, end)?;
        let (fields, selected) = comparable_fields(signal, selection, listed);
        // Without a baseline, everything: the selection is taken out of it below. Counting
        // everything needs no query and is read from term dictionaries where segments lie
        // wholly inside the range.
        let base = self.value_counts(signal, baseline, start, end, &fields)?;
        Ok(findings(
            (selection_total, fields, selected),
            base,
            baseline.is_none(),
            limit,
        ))
    }
}

/// The fields of a selection's field list (`listed`, from [`Store::fields_with_counts_in`])
/// worth comparing, with their counts: not near-unique, and not what the selection filters
/// on.
pub fn comparable_fields(
    signal: Signal,
    selection: &Expr,
    listed: Vec<CountedField>,
) -> (Vec<FieldRef>, Vec<ValueCounts>) {
    let mut selected_by = Vec::new();
    filtered_fields(signal, selection, &mut selected_by);
    listed
        .into_iter()
        // A key longer than a user may name (stored data is not bounded so) cannot be asked
        // of another node either: it is left out rather than failing the comparison.
        .filter(|(info, _)| {
            worth_comparing(info)
                && !selected_by.contains(&info.field)
                && info.field.check().is_ok()
        })
        .filter_map(|(info, counts)| Some((info.field, counts?)))
        .unzip()
}

/// The comparison of a selection (its total, and the counts of `fields`) with a baseline's
/// counts of the same fields; when `base_is_everything`, the baseline is every row of the
/// range and the selection is taken out of it. The `limit` largest differences.
pub fn findings(
    (selection_total, fields, selected): (u64, Vec<FieldRef>, Vec<ValueCounts>),
    (base_total, mut base): (u64, Vec<ValueCounts>),
    base_is_everything: bool,
    limit: usize,
) -> Comparison {
    let baseline_total = if base_is_everything {
        for (all, selected) in base.iter_mut().zip(&selected) {
            for (value, n) in &selected.counts {
                if let Some(count) = all.counts.get_mut(value) {
                    *count = count.saturating_sub(*n);
                }
            }
        }
        base_total.saturating_sub(selection_total)
    } else {
        base_total
    };
    let share = |n: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let mut findings = Vec::new();
    for ((field, selected), base) in fields.iter().zip(selected).zip(base) {
        for (value, selection_count) in selected.counts {
            let baseline_count = base.counts.get(&value).copied().unwrap_or(0);
            let finding = Finding {
                field: field.clone(),
                value,
                selection_count,
                baseline_count,
                selection_share: share(selection_count, selection_total),
                baseline_share: share(baseline_count, baseline_total),
            };
            if finding.difference() > 0.0 {
                findings.push(finding);
            }
        }
    }
    findings.sort_by(|a, b| {
        b.difference()
            .total_cmp(&a.difference())
            .then_with(|| a.field.cmp(&b.field))
            .then_with(|| a.value.cmp(&b.value))
    });
    findings.truncate(limit);
    Comparison {
        selection_total,
        baseline_total,
        fields,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(field: FieldRef) -> CountedField {
        let info = FieldInfo {
            field,
            distinct: 2,
            with_field: Some(10),
            exact: true,
        };
        (info, Some(ValueCounts::default()))
    }

    #[test]
    fn a_key_no_user_could_name_is_not_compared() {
        let selection = crate::query::parse("severity>=ERROR")
            .expect("parses")
            .expect("a query");
        let (fields, counts) = comparable_fields(
            Signal::Logs,
            &selection,
            vec![
                listed(FieldRef::Attr("k".repeat(300))),
                listed(FieldRef::Attr("http.route".into())),
                listed(FieldRef::Severity),
            ],
        );
        assert_eq!(fields, [FieldRef::Attr("http.route".into())]);
        assert_eq!(counts.len(), 1);
    }
}
