//! Top values of fields in a selection, and the fields a selection holds.

use std::collections::{BTreeMap, HashMap};

use tantivy::query::{EnableScoring, Query};

use super::Selected;
use super::columns::origin_resource_keys;
use super::fields::{FieldRef, json_keys, segment_counts, segment_within, whole_segment_values};
use crate::aggregate::filtered;
use crate::error::IndexError;
use crate::query::Expr;
use crate::store::{PartitionRef, Scope, Store};
use crate::{Signal, log_fields, span_fields};

/// Distinct values of one field an answer tracks; past it, further values are left out and the
/// facet says it is capped (its counts are then lower bounds).
pub const MAX_DISTINCT: usize = 100_000;

/// Keys with at most this many distinct values in a segment are counted exactly in the field
/// list; keys with more (IDs, order numbers) are listed with the segment's count as an estimate.
const EXACT_KEY_VALUES: u64 = 1_000;

/// One value of a field and how many selected rows have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FacetValue {
    /// The value as the query language writes it.
    pub value: String,
    /// Selected rows with it.
    pub count: u64,
}

/// The values of one field in a selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facet {
    /// The field.
    pub field: FieldRef,
    /// The most frequent values, most frequent first (ties by value).
    pub values: Vec<FacetValue>,
    /// Selected rows that have the field at all.
    pub with_field: u64,
    /// Distinct values in the selection.
    pub distinct: u64,
    /// True when a segment held more values than weft reads for one field, or the answer more
    /// than [`MAX_DISTINCT`]: counts and `distinct` are then lower bounds.
    pub capped: bool,
}

/// Facets of a selection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facets {
    /// Rows selected.
    pub total: u64,
    /// One facet per field asked for, in that order.
    pub facets: Vec<Facet>,
}

/// A field present in a selection.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldInfo {
    /// The field.
    pub field: FieldRef,
    /// Distinct values: exact in the selection when `exact`, otherwise the most any one segment
    /// of the time range holds (the key is near-unique; it is not counted value by value).
    pub distinct: u64,
    /// Selected rows that have it, when `exact`.
    pub with_field: Option<u64>,
    /// Whether the numbers were counted over the selection.
    pub exact: bool,
}

/// The rows a query selects, and something for each field of them.
pub type PerField<T> = (u64, Vec<T>);

/// A field of a selection, with the counts of its values when they were counted exactly.
pub type CountedField = (FieldInfo, Option<ValueCounts>);

/// Counts of every value of one field, merged over segments and partitions (and, on a
/// search node, over the nodes' parts).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ValueCounts {
    /// Rows per value.
    pub counts: HashMap<String, u64>,
    /// More than [`MAX_DISTINCT`] values, or a segment held more than weft reads: the counts
    /// are lower bounds.
    pub capped: bool,
}

impl ValueCounts {
    /// Adds another part of the data's counts.
    pub fn merge(&mut self, other: ValueCounts) {
        self.capped |= other.capped;
        for (value, count) in other.counts {
            self.add(&value, count);
        }
    }

    pub(crate) fn add(&mut self, value: &str, count: u64) {
        if let Some(n) = self.counts.get_mut(value) {
            *n += count;
        } else if self.counts.len() < MAX_DISTINCT {
            self.counts.insert(value.to_string(), count);
        } else {
            self.capped = true;
        }
    }

    /// The facet of `field` these counts make: its `limit` most frequent values.
    pub fn facet(self, field: FieldRef, limit: usize) -> Facet {
        let with_field = self.counts.values().sum();
        let distinct = self.counts.len() as u64;
        let mut values: Vec<FacetValue> = self
            .counts
            .into_iter()
            .map(|(value, count)| FacetValue { value, count })
            .collect();
        values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        values.truncate(limit);
        Facet {
            field,
            values,
            with_field,
            distinct,
            capped: self.capped,
        }
    }
}

impl Store {
    /// Counts of every value of `fields` among the rows `query` selects in `[start, end)`:
    /// the total, and per field its counts.
    pub(crate) fn value_counts(
        &self,
        signal: Signal,
        query: Option<&Expr>,
        start: u64,
        end: u64,
        fields: &[FieldRef],
    ) -> Result<(u64, Vec<ValueCounts>), IndexError> {
        Ok(self
            .value_counts_in(signal, query, start, end, fields, &Scope::All)?
            .0)
    }

    /// [`Store::value_counts`] over the partitions `scope` reads, and the local ones read.
    pub fn value_counts_in(
        &self,
        signal: Signal,
        query: Option<&Expr>,
        start: u64,
        end: u64,
        fields: &[FieldRef],
        scope: &Scope,
    ) -> Result<(PerField<ValueCounts>, Vec<PartitionRef>), IndexError> {
        let tantivy_query = filtered(query, signal, start, end)?;
        let mut total = 0u64;
        let mut counts: Vec<ValueCounts> = fields.iter().map(|_| ValueCounts::default()).collect();
        let partitions = self.partitions_matching_in(signal, start, end, query, scope)?;
        let read = partitions.local_refs();
        for partition in partitions {
            let partition = partition?;
            let searcher = partition.searcher();
            let weight = tantivy_query.weight(EnableScoring::disabled_from_searcher(&searcher))?;
            for reader in searcher.segment_readers() {
                // Everything of a segment inside the range: the term dictionary has the counts.
                if query.is_none() && segment_within(signal, reader, start, end)? {
                    total += u64::from(reader.num_docs());
                    for (field, merged) in fields.iter().zip(counts.iter_mut()) {
                        merged.capped |= whole_segment_values(signal, field, reader, |name, n| {
                            merged.add(name, n)
                        })?;
                    }
                    continue;
                }
                let selected = Selected::of(weight.as_ref(), reader)?;
                total += selected.docs.len() as u64;
                if selected.docs.is_empty() {
                    continue;
                }
                for (field, merged) in fields.iter().zip(counts.iter_mut()) {
                    merged.capped |=
                        segment_counts(signal, field, reader, &selected, |name, n| {
                            merged.add(name, n)
                        })?;
                }
            }
        }
        Ok(((total, counts), read))
    }

    /// The `limit` most frequent values of each of `fields` among the rows `query` selects in
    /// `[start, end)`.
    pub fn facets(
        &self,
        signal: Signal,
        query: Option<&Expr>,
        start: u64,
        end: u64,
        fields: &[FieldRef],
        limit: usize,
    ) -> Result<Facets, IndexError> {
        let (total, counts) = self.value_counts(signal, query, start, end, fields)?;
        let facets = fields
            .iter()
            .cloned()
            .zip(counts)
            .map(|(field, counts)| counts.facet(field, limit))
            .collect();
        Ok(Facets { total, facets })
    }

    /// The fields present among the rows `query` selects in `[start, end)`, with how many
    /// distinct values each has: the signal's fixed fields, then every attribute and resource
    /// key seen, whether or not anyone declared it.
    pub fn field_list(
        &self,
        signal: Signal,
        query: Option<&Expr>,
        start: u64,
        end: u64,
    ) -> Result<Vec<FieldInfo>, IndexError> {
        let (_, fields) = self.fields_with_counts(signal, query, start, end)?;
        Ok(fields.into_iter().map(|(info, _)| info).collect())
    }

    /// [`Store::field_list`], with the selection's total and the counts of every value of the
    /// fields counted exactly (a comparison goes on from them).
    pub(crate) fn fields_with_counts(
        &self,
        signal: Signal,
        query: Option<&Expr>,
        start: u64,
        end: u64,
    ) -> Result<(u64, Vec<CountedField>), IndexError> {
        Ok(self
            .fields_with_counts_in(signal, query, start, end, &Scope::All)?
            .0)
    }

    /// [`Store::fields_with_counts`] over the partitions `scope` reads, and the local ones
    /// read.
    pub fn fields_with_counts_in(
        &self,
        signal: Signal,
        query: Option<&Expr>,
        start: u64,
        end: u64,
        scope: &Scope,
    ) -> Result<(PerField<CountedField>, Vec<PartitionRef>), IndexError> {
        let (attr, resource) = match signal {
            Signal::Logs => (log_fields().attr, log_fields().resource),
            Signal::Spans => (span_fields().attr, span_fields().resource),
        };
        // Keys and the most distinct values any segment holds for them.
        let mut keys: BTreeMap<FieldRef, u64> = BTreeMap::new();
        for partition in self.partitions_matching_in(signal, start, end, None, scope)? {
            let partition = partition?;
            for reader in partition.searcher().segment_readers() {
                for (json, make) in [
                    (attr, FieldRef::Attr as fn(String) -> FieldRef),
                    (resource, FieldRef::Resource),
                ] {
                    // Format 3 keeps resource attributes in the origin column only.
                    let found = if reader.schema().get_field_entry(json).is_indexed() {
                        json_keys(reader, json)?
                    } else {
                        origin_resource_keys(signal, reader)?
                    };
                    for (key, distinct) in found {
                        let entry = keys.entry(make(key)).or_default();
                        *entry = (*entry).max(distinct);
                    }
                }
            }
        }
        let mut exact: Vec<FieldRef> = FieldRef::fixed(signal).to_vec();
        let mut estimated = Vec::new();
        for (field, distinct) in keys {
            if distinct <= EXACT_KEY_VALUES {
                exact.push(field);
            } else {
                estimated.push(FieldInfo {
                    field,
                    distinct,
                    with_field: None,
                    exact: false,
                });
            }
        }
        let ((total, counts), read) =
            self.value_counts_in(signal, query, start, end, &exact, scope)?;
        let mut fields: Vec<CountedField> = exact
            .into_iter()
            .zip(counts)
            .filter(|(_, c)| !c.counts.is_empty())
            .map(|(field, c)| {
                let info = FieldInfo {
                    field,
                    distinct: c.counts.len() as u64,
                    with_field: Some(c.counts.values().sum()),
                    exact: !c.capped,
                };
                (info, Some(c))
            })
            .collect();
        fields.extend(estimated.into_iter().map(|info| (info, None)));
        Ok(((total, fields), read))
    }
}

/// The fields of two parts of one selection, as one list: a field counted exactly in both is
/// counted exactly in the whole; one estimated in either is estimated, by the larger
/// estimate. Exactly counted fields come first, in [`FieldRef`]'s order (the fixed fields,
/// then attribute and resource keys by name), then the estimated ones, as one node lists them.
pub fn merge_counted_fields(
    into: Vec<CountedField>,
    other: Vec<CountedField>,
) -> Vec<CountedField> {
    let mut merged: BTreeMap<FieldRef, CountedField> = BTreeMap::new();
    for (info, counts) in into.into_iter().chain(other) {
        let field = info.field.clone();
        match merged.remove(&field) {
            None => {
                merged.insert(field, (info, counts));
            }
            Some((mut seen, seen_counts)) => {
                let counts = match (seen_counts, counts) {
                    (Some(mut a), Some(b)) => {
                        a.merge(b);
                        seen.distinct = a.counts.len() as u64;
                        seen.with_field = Some(a.counts.values().sum());
                        seen.exact = !a.capped;
                        Some(a)
                    }
                    (a, b) => {
                        let largest = |c: &Option<ValueCounts>, i: &FieldInfo| {
                            c.as_ref().map_or(i.distinct, |c| c.counts.len() as u64)
                        };
                        seen.distinct = largest(&a, &seen).max(largest(&b, &info));
                        seen.with_field = None;
                        seen.exact = false;
                        None
                    }
                };
                merged.insert(field, (seen, counts));
            }
        }
    }
    // Exactly counted fields first (the fixed ones lead, as FieldRef orders them), then the
    // estimated keys, as a single node lists them.
    let (mut exact, estimated): (Vec<_>, Vec<_>) = merged
        .into_values()
        .partition(|(_, counts)| counts.is_some());
    exact.extend(estimated);
    exact
}
