//! Evaluates a query against one log row in memory, with the same meaning as the compiled
//! tantivy query. Live tail uses it: rows are matched as they arrive, before any index has them.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use super::compile::{severity_bounds, text_tokens};
use super::{Expr, QueryError};
use crate::LogRow;
use crate::model::any_value_to_string;

/// A query ready to test rows; build it with [`LogMatcher::new`], which also validates it.
#[derive(Clone, Debug)]
pub struct LogMatcher {
    expr: Option<Expr>,
}

impl LogMatcher {
    /// Validates `expr` for logs (same errors as a search would give) and keeps it.
    pub fn new(expr: Option<Expr>) -> Result<Self, QueryError> {
        if let Some(e) = &expr {
            super::compile(e, crate::Signal::Logs)?;
        }
        Ok(LogMatcher { expr })
    }

    /// True when `row` matches.
    pub fn matches(&self, row: &LogRow) -> bool {
        match &self.expr {
            None => true,
            Some(e) => {
                let tokens = text_tokens(&row.body_text());
                eval(e, row, &tokens)
            }
        }
    }
}

fn eval(expr: &Expr, row: &LogRow, body: &[String]) -> bool {
    match expr {
        Expr::And(parts) => parts.iter().all(|p| eval(p, row, body)),
        Expr::Or(parts) => parts.iter().any(|p| eval(p, row, body)),
        Expr::Not(inner) => !eval(inner, row, body),
        Expr::Text { text, .. } => {
            if text.contains('*') {
                let pattern = text.to_lowercase();
                body.iter().any(|t| glob_match(&pattern, t))
            } else {
                contains_sequence(body, &text_tokens(text))
            }
        }
        Expr::Phrase { text, .. } => contains_sequence(body, &text_tokens(text)),
        Expr::Filter {
            field, op, value, ..
        } => {
            if let Some(key) = field.strip_prefix("attr.") {
                return attribute_matches(&row.attributes, key, value);
            }
            if let Some(key) = field.strip_prefix("resource.") {
                return attribute_matches(&row.resource, key, value);
            }
            match field.as_str() {
                "service" => glob_match(value, &row.service),
                "scope" => glob_match(value, &row.scope_name),
                "event" => glob_match(value, &row.event),
                "trace_id" => hex::encode(&row.trace_id) == value.to_ascii_lowercase(),
                "span_id" => hex::encode(&row.span_id) == value.to_ascii_lowercase(),
                "pattern" => crate::templates::body_matches(
                    &crate::templates::parse_template(value),
                    &row.body_text(),
                ),
                "severity" => severity_bounds(*op, value, 0)
                    .map(|(lo, hi)| {
                        let n = row.severity_number.max(0) as u64;
                        lo.is_none_or(|l| n >= l) && hi.is_none_or(|h| n <= h)
                    })
                    .unwrap_or(false),
                _ => false,
            }
        }
    }
}

/// True when `needle` occurs as consecutive tokens of `haystack` (an empty needle, made only of
/// punctuation, matches nothing, as in the index).
fn contains_sequence(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == text;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Finds `key` as a dotted path: either a key with dots in it, or nested maps.
fn lookup<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    if let Some(kv) = attributes.iter().rev().find(|kv| kv.key == key) {
        return kv.value.as_ref();
    }
    let mut split_at = key.len();
    while let Some(dot) = key[..split_at].rfind('.') {
        let (head, tail) = (&key[..dot], &key[dot + 1..]);
        if let Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(list)),
        }) = attributes
            .iter()
            .rev()
            .find(|kv| kv.key == head)
            .and_then(|kv| kv.value.as_ref())
            && let Some(found) = lookup(&list.values, tail)
        {
            return Some(found);
        }
        split_at = dot;
    }
    None
}

pub(crate) fn attribute_matches(attributes: &[KeyValue], key: &str, value: &str) -> bool {
    let Some(found) = lookup(attributes, key) else {
        return false;
    };
    value_matches(found, value)
}

fn value_matches(found: &AnyValue, value: &str) -> bool {
    match &found.value {
        Some(any_value::Value::ArrayValue(items)) => {
            items.values.iter().any(|v| value_matches(v, value))
        }
        Some(any_value::Value::IntValue(i)) => value.parse::<i64>() == Ok(*i),
        Some(any_value::Value::DoubleValue(d)) => value.parse::<f64>() == Ok(*d),
        Some(any_value::Value::BoolValue(b)) => value.parse::<bool>() == Ok(*b),
        _ => any_value_to_string(Some(found)) == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn row() -> LogRow {
        LogRow {
            service: "checkout".into(),
            severity_number: 17,
            event: "PaymentDeclined".into(),
            scope_name: "payments".into(),
            trace_id: vec![0xab; 16],
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    "Card declined for order 8812".into(),
                )),
            }),
            attributes: vec![
                kv("order.id", any_value::Value::StringValue("8812".into())),
                kv("amount", any_value::Value::IntValue(1999)),
                kv(
                    "card",
                    any_value::Value::KvlistValue(
                        opentelemetry_proto::tonic::common::v1::KeyValueList {
                            values: vec![kv("brand", any_value::Value::StringValue("visa".into()))],
                        },
                    ),
                ),
            ],
            ..Default::default()
        }
    }

    fn m(q: &str) -> bool {
        LogMatcher::new(parse(q).unwrap()).unwrap().matches(&row())
    }

    #[test]
    fn the_same_meaning_as_the_index() {
        assert!(m(""));
        assert!(m("declined"));
        assert!(m("DECLINED card"));
        assert!(m("\"declined for order\""));
        assert!(!m("\"order declined\""));
        assert!(m("decl*"));
        assert!(m("service:check*"));
        assert!(!m("service:cart"));
        assert!(m("severity>=WARN"));
        assert!(m("severity:ERROR"));
        assert!(!m("severity<ERROR"));
        assert!(m("event:PaymentDeclined scope:payments"));
        assert!(m(&format!("trace_id:{}", "ab".repeat(16))));
        assert!(m(
            "attr.order.id:8812 attr.amount:1999 attr.card.brand:visa"
        ));
        assert!(!m("attr.amount:2000"));
        assert!(m("cart OR declined"));
        assert!(!m("-declined"));
        assert!(m("NOT (cart OR refund)"));
    }

    #[test]
    fn invalid_queries_are_refused_up_front() {
        assert!(LogMatcher::new(parse("colour:red").unwrap()).is_err());
        assert!(LogMatcher::new(parse("severity:LOUD").unwrap()).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("a*c", "abc"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "a-b-c"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(!glob_match("ab*ba", "aba"));
    }
}
