//! Runtime severity control: rules that drop or remap log records at ingest, with expiry and an
//! audit trail, and the view services poll to filter at the source.

pub mod control;
pub mod rules;
pub mod store;

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use weft_index::LogRow;
use weft_index::severity::text_for_number;

pub use control::{Clock, CreateRule, SeverityControl, SeverityError, TtlLimits, system_clock};
pub use rules::{CompiledRules, Decision};

/// Attribute that keeps a remapped record's original severity.
pub const ORIGINAL_SEVERITY: &str = "weft.original_severity";

/// Applies the rules to normalized rows: drops what a rule says to drop, remaps what a rule
/// remaps. Returns how many rows each rule dropped.
pub fn apply(rules: &CompiledRules, rows: &mut Vec<LogRow>, now: u64) -> HashMap<String, u64> {
    let mut dropped: HashMap<String, u64> = HashMap::new();
    if rules.is_empty() {
        return dropped;
    }
    // (service, scope) → the rules without an event selector that match it.
    let mut pairs: Vec<(String, String, Vec<usize>)> = Vec::new();
    rows.retain_mut(|row| {
        let position = pairs
            .iter()
            .position(|(service, scope, _)| *service == row.service && *scope == row.scope_name)
            .unwrap_or_else(|| {
                let others = rules.others_matching(&row.service, &row.scope_name);
                pairs.push((row.service.clone(), row.scope_name.clone(), others));
                pairs.len() - 1
            });
        let others = &pairs[position].2;
        match rules.decide_with(
            others,
            &row.service,
            &row.scope_name,
            &row.event,
            row.severity_number,
            now,
        ) {
            Decision::Keep => true,
            Decision::Drop { rule } => {
                *dropped.entry(rules.rules()[rule].id.clone()).or_default() += 1;
                false
            }
            Decision::Remap { severity, .. } => {
                let original = if row.severity_text.is_empty() {
                    row.severity_number.to_string()
                } else {
                    row.severity_text.clone()
                };
                row.attributes.push(KeyValue {
                    key: ORIGINAL_SEVERITY.into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(original)),
                    }),
                    ..Default::default()
                });
                row.severity_number = severity;
                row.severity_text = text_for_number(severity);
                true
            }
        }
    });
    dropped
}
