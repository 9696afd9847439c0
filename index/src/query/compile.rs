//! Turns an [`Expr`] into a tantivy query for one signal.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery, RegexQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};

use super::columns::{ColumnFilter, ColumnSource, ValueTest};
use super::{CmpOp, Expr, QueryError};
use crate::ids::{IdKind, IdQuery};
use crate::{Signal, log_fields, severity, span_fields};

/// Compiles `expr` for `signal`; errors name the position of the filter that cannot apply.
pub fn compile(expr: &Expr, signal: Signal) -> Result<Box<dyn Query>, QueryError> {
    match expr {
        Expr::Text { text, pos } => text_query(signal, text, false, *pos),
        Expr::Phrase { text, pos } => text_query(signal, text, true, *pos),
        Expr::Filter {
            field,
            op,
            value,
            phrase,
            pos,
        } => filter_query(signal, field, *op, value, *phrase, *pos),
        Expr::And(parts) => {
            // Several bounds on one numeric field (`duration>=1s duration<2s`) become one range:
            // tantivy's range scorers on one column do not intersect with each other reliably,
            // and one scan of the column is cheaper than two anyway.
            let mut ranges: Vec<Range> = Vec::new();
            let mut clauses = Vec::new();
            for part in parts {
                match range_bounds(signal, part)? {
                    Some((field, low, high)) => match ranges.iter_mut().find(|r| r.0 == field) {
                        Some(range) => {
                            range.1 = range.1.max(low);
                            range.2 = match (range.2, high) {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            };
                        }
                        None => ranges.push((field, low, high)),
                    },
                    None => clauses.push((Occur::Must, compile(part, signal)?)),
                }
            }
            for (field, low, high) in ranges {
                let range: Box<dyn Query> = match (low, high) {
                    (Some(l), Some(h)) if l > h => Box::new(EmptyQuery),
                    _ => u64_range(field, low, high),
                };
                clauses.push((Occur::Must, range));
            }
            Ok(Box::new(BooleanQuery::new(clauses)))
        }
        Expr::Or(parts) => {
            let clauses = parts
                .iter()
                .map(|p| Ok((Occur::Should, compile(p, signal)?)))
                .collect::<Result<Vec<_>, QueryError>>()?;
            Ok(Box::new(BooleanQuery::new(clauses)))
        }
        Expr::Not(inner) => Ok(Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery)),
            (Occur::MustNot, compile(inner, signal)?),
        ]))),
    }
}

/// The analyzer of `TEXT` fields: split on non-alphanumerics, drop very long tokens, lowercase.
fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .build()
}

/// The tokens the index makes of a text field.
pub(crate) fn text_tokens(text: &str) -> Vec<String> {
    let mut analyzer = text_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

fn text_field(signal: Signal) -> Field {
    match signal {
        Signal::Logs => log_fields().body,
        Signal::Spans => span_fields().text,
    }
}

fn text_query(
    signal: Signal,
    text: &str,
    phrase: bool,
    pos: usize,
) -> Result<Box<dyn Query>, QueryError> {
    let field = text_field(signal);
    if !phrase && text.contains('*') {
        let pattern = wildcard_pattern(&text.to_lowercase());
        return regex(field, &pattern, pos);
    }
    let words = text_tokens(text);
    Ok(match words.len() {
        // Only punctuation: nothing can match it.
        0 => Box::new(EmptyQuery),
        1 => term(Term::from_field_text(field, &words[0])),
        _ => Box::new(PhraseQuery::new(
            words
                .iter()
                .map(|w| Term::from_field_text(field, w))
                .collect(),
        )),
    })
}

fn term(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

fn regex(field: Field, pattern: &str, pos: usize) -> Result<Box<dyn Query>, QueryError> {
    RegexQuery::from_pattern(pattern, field)
        .map(|q| Box::new(q) as Box<dyn Query>)
        .map_err(|e| QueryError::syntax(pos, format!("invalid wildcard: {e}")))
}

/// `check*` → `check.*`, with every other character matched literally.
fn wildcard_pattern(value: &str) -> String {
    let mut pattern = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if c == '*' {
            pattern.push_str(".*");
        } else {
            let mut buf = [0u8; 4];
            pattern.push_str(&regex_syntax_escape(c.encode_utf8(&mut buf)));
        }
    }
    pattern
}

fn regex_syntax_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~\"@<>".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn keyword(field: Field, value: &str, pos: usize) -> Result<Box<dyn Query>, QueryError> {
    if value.contains('*') {
        regex(field, &wildcard_pattern(value), pos)
    } else {
        Ok(term(Term::from_field_text(field, value)))
    }
}

fn only_equality(field: &str, op: CmpOp, pos: usize) -> Result<(), QueryError> {
    if op == CmpOp::Eq {
        Ok(())
    } else {
        Err(QueryError::syntax(
            pos,
            format!(
                "'{}' compares numbers; field '{field}' takes ':'",
                op.symbol()
            ),
        ))
    }
}

fn filter_query(
    signal: Signal,
    field: &str,
    op: CmpOp,
    value: &str,
    phrase: bool,
    pos: usize,
) -> Result<Box<dyn Query>, QueryError> {
    if let Some(key) = field.strip_prefix("attr.") {
        only_equality(field, op, pos)?;
        let json = match signal {
            Signal::Logs => log_fields().attr,
            Signal::Spans => span_fields().attr,
        };
        return Ok(json_value_query(json, key, value));
    }
    if let Some(key) = field.strip_prefix("resource.") {
        only_equality(field, op, pos)?;
        let json = match signal {
            Signal::Logs => log_fields().resource,
            Signal::Spans => span_fields().resource,
        };
        return Ok(Box::new(ColumnFilter {
            field: json,
            indexed: json_value_query(json, key, value),
            source: ColumnSource::Origin(signal),
            test: ValueTest::Resource {
                key: key.to_string(),
                value: value.to_string(),
            },
        }));
    }
    match (signal, field) {
        (_, "service") | (Signal::Logs, "event") => {
            only_equality(field, op, pos)?;
            let (f, column) = match (signal, field) {
                (Signal::Logs, "service") => (log_fields().service, "service"),
                (Signal::Logs, _) => (log_fields().event, "event"),
                (Signal::Spans, _) => (span_fields().service, "service"),
            };
            Ok(Box::new(ColumnFilter {
                field: f,
                indexed: keyword(f, value, pos)?,
                source: ColumnSource::Str(column),
                test: ValueTest::keyword(value),
            }))
        }
        (_, "scope") => {
            only_equality(field, op, pos)?;
            let f = match signal {
                Signal::Logs => log_fields().scope,
                Signal::Spans => span_fields().scope,
            };
            keyword(f, value, pos)
        }
        (Signal::Spans, "name") | (Signal::Spans, "operation") => {
            only_equality(field, op, pos)?;
            keyword(span_fields().name, value, pos)
        }
        (Signal::Spans, "kind") => {
            only_equality(field, op, pos)?;
            keyword(span_fields().kind, &value.to_ascii_lowercase(), pos)
        }
        (Signal::Spans, "status") => {
            only_equality(field, op, pos)?;
            // A name is checked (a misspelt one would match nothing, silently); a wildcard
            // matches the names it matches.
            let value = if value.contains('*') {
                value.to_ascii_lowercase()
            } else {
                let code = crate::text::status_code(value)
                    .map_err(|why| QueryError::syntax(pos, format!("status {why}")))?;
                crate::text::status_name(code).to_string()
            };
            keyword(span_fields().status, &value, pos)
        }
        (_, "trace_id") => {
            only_equality(field, op, pos)?;
            id_query(signal, IdKind::Trace, field, value, pos)
        }
        (_, "span_id") => {
            only_equality(field, op, pos)?;
            id_query(signal, IdKind::Span, field, value, pos)
        }
        (Signal::Spans, "parent_span_id") => {
            only_equality(field, op, pos)?;
            id_query(signal, IdKind::Parent, field, value, pos)
        }
        (Signal::Logs, "severity") => severity_query(op, value, pos),
        (Signal::Logs, "pattern") => {
            only_equality(field, op, pos)?;
            let template = crate::templates::parse_template(value);
            if template.is_empty() {
                return Err(QueryError::syntax(
                    pos,
                    "pattern needs a template, such as pattern:\"user <*> logged in\"".into(),
                ));
            }
            if template.len() > crate::templates::MAX_TOKENS {
                return Err(QueryError::syntax(
                    pos,
                    format!(
                        "a pattern has at most {} tokens; this one has {}",
                        crate::templates::MAX_TOKENS,
                        template.len()
                    ),
                ));
            }
            Ok(Box::new(super::template::TemplateFilter::new(template)))
        }
        (Signal::Spans, "duration") => {
            let nanos = duration_value(value, pos)?;
            let (low, high) = bounds(op, nanos, nanos);
            Ok(u64_range(span_fields().duration, low, high))
        }
        _ => {
            let _ = phrase;
            let known = super::known_fields(signal);
            Err(QueryError::syntax(
                pos,
                format!(
                    "unknown field '{field}' for {}; expected one of {known}",
                    signal.dir_name()
                ),
            ))
        }
    }
}

/// A numeric field and inclusive, optional bounds on it.
type Range = (Field, Option<u64>, Option<u64>);

/// The field and bounds of a numeric filter (`duration`, `severity`), or `None` for any other
/// expression.
fn range_bounds(signal: Signal, expr: &Expr) -> Result<Option<Range>, QueryError> {
    let Expr::Filter {
        field,
        op,
        value,
        pos,
        ..
    } = expr
    else {
        return Ok(None);
    };
    match (signal, field.as_str()) {
        (Signal::Logs, "severity") => {
            let (low, high) = severity_bounds(*op, value, *pos)?;
            Ok(Some((log_fields().severity, low, high)))
        }
        (Signal::Spans, "duration") => {
            let nanos = duration_value(value, *pos)?;
            let (low, high) = bounds(*op, nanos, nanos);
            Ok(Some((span_fields().duration, low, high)))
        }
        _ => Ok(None),
    }
}

fn duration_value(value: &str, pos: usize) -> Result<u64, QueryError> {
    crate::text::duration_ns(value)
        .map_err(|why| QueryError::syntax(pos, format!("duration {why}")))
}

fn id_query(
    signal: Signal,
    kind: IdKind,
    name: &str,
    value: &str,
    pos: usize,
) -> Result<Box<dyn Query>, QueryError> {
    let id = match kind {
        IdKind::Trace => crate::text::trace_id(value).map(|id| id.to_vec()),
        _ => crate::text::span_id(value).map(|id| id.to_vec()),
    };
    match id {
        Ok(id) => Ok(Box::new(IdQuery::new(signal, kind, &id))),
        Err(why) => Err(QueryError::syntax(pos, format!("{name} {why}"))),
    }
}

/// Inclusive bounds a severity filter selects. A severity name (`WARN`) covers its band (13-16)
/// for `:`; a suffixed name (`WARN2`) or a number is exact. Comparisons use the band's edges:
/// `>=WARN` is 13 and up, `>WARN` is 17 and up.
pub(crate) fn severity_bounds(
    op: CmpOp,
    value: &str,
    pos: usize,
) -> Result<(Option<u64>, Option<u64>), QueryError> {
    let number = severity::number_for_text(value).ok_or_else(|| {
        QueryError::syntax(
            pos,
            format!(
                "unknown severity '{value}'; expected TRACE, DEBUG, INFO, WARN, ERROR, FATAL or 1-24"
            ),
        )
    })?;
    let is_band = value.trim().chars().all(|c| c.is_ascii_alphabetic());
    let (low, high) = if is_band {
        let base = (number - 1) / 4 * 4 + 1;
        (base as u64, (base + 3) as u64)
    } else {
        (number as u64, number as u64)
    };
    Ok(bounds(op, low, high))
}

/// Inclusive bounds for `op` applied to a value that covers `[low, high]`.
fn bounds(op: CmpOp, low: u64, high: u64) -> (Option<u64>, Option<u64>) {
    match op {
        CmpOp::Eq => (Some(low), Some(high)),
        CmpOp::Ge => (Some(low), None),
        CmpOp::Gt => (Some(high.saturating_add(1)), None),
        CmpOp::Le => (None, Some(high)),
        CmpOp::Lt => (None, Some(low.saturating_sub(1))),
    }
}

fn severity_query(op: CmpOp, value: &str, pos: usize) -> Result<Box<dyn Query>, QueryError> {
    let (low, high) = severity_bounds(op, value, pos)?;
    Ok(u64_range(log_fields().severity, low, high))
}

/// Range over a u64 field with inclusive, optional bounds.
fn u64_range(field: Field, low: Option<u64>, high: Option<u64>) -> Box<dyn Query> {
    let t = |v| Bound::Included(Term::from_field_u64(field, v));
    Box::new(RangeQuery::new(
        low.map_or(Bound::Unbounded, t),
        high.map_or(Bound::Unbounded, t),
    ))
}

/// An attribute value may have been indexed as a string, an integer, a float or a bool; the
/// query text is matched against each form it can take.
fn json_value_query(field: Field, key: &str, value: &str) -> Box<dyn Query> {
    let path_term = || Term::from_field_json_path(field, key, true);
    let mut terms = Vec::new();
    let mut t = path_term();
    t.append_type_and_str(value);
    terms.push(t);
    if let Ok(i) = value.parse::<i64>() {
        let mut t = path_term();
        t.append_type_and_fast_value(i);
        terms.push(t);
        if let Ok(u) = u64::try_from(i) {
            let mut t = path_term();
            t.append_type_and_fast_value(u);
            terms.push(t);
        }
    }
    if let Ok(f) = value.parse::<f64>() {
        let mut t = path_term();
        t.append_type_and_fast_value(f);
        terms.push(t);
    }
    if let Ok(b) = value.parse::<bool>() {
        let mut t = path_term();
        t.append_type_and_fast_value(b);
        terms.push(t);
    }
    let clauses = terms
        .into_iter()
        .map(|t| (Occur::Should, term(t)))
        .collect();
    Box::new(BooleanQuery::new(clauses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse;

    fn compile_str(q: &str, signal: Signal) -> Result<Box<dyn Query>, QueryError> {
        compile(&parse(q)?.expect("non-empty"), signal)
    }

    #[test]
    fn unknown_fields_name_the_alternatives() {
        let err = compile_str("a colour:red", Signal::Logs).unwrap_err();
        assert_eq!(err.position(), Some(2));
        assert!(err.message().contains("unknown field 'colour'"), "{err}");
        assert!(err.message().contains("severity"));
        assert!(compile_str("severity:WARN", Signal::Spans).is_err());
        assert!(compile_str("duration>1s", Signal::Logs).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(compile_str("severity:LOUD", Signal::Logs).is_err());
        assert!(compile_str("trace_id:xyz", Signal::Logs).is_err());
        assert!(compile_str("span_id:0011", Signal::Logs).is_err());
        assert!(compile_str("service>=a", Signal::Logs).is_err());
        assert!(compile_str("duration>=fast", Signal::Spans).is_err());
    }

    #[test]
    fn good_queries_compile() {
        for q in [
            "card declined",
            "\"card declined\" service:checkout",
            "severity>=WARN -event:CacheMiss",
            "service:check* OR scope:payments",
            "trace_id:5b8efff798038103d269b633813fc60c span_id:eee19b7ec3c1b174",
            "attr.order.id:8812 resource.host.name:a1",
            "pay*",
            "severity:17",
        ] {
            compile_str(q, Signal::Logs).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        for q in [
            "name:\"POST /pay\" status:error duration>=250ms",
            "exception kind:server",
        ] {
            compile_str(q, Signal::Spans).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }

    #[test]
    fn wildcards_escape_regex_syntax() {
        assert_eq!(wildcard_pattern("check*"), "check.*");
        assert_eq!(wildcard_pattern("a.b*"), "a\\.b.*");
    }
}
