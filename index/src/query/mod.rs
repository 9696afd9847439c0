//! weft's query language: what it means, and how it becomes a tantivy query for each signal.
//!
//! Words and "phrases" match the log body, or a span's name and event names, case-insensitively.
//! Filters: `service:`, `severity:` (name or number, and `severity>=WARN`), `event:`,
//! `trace_id:`, `span_id:`, `scope:`, `attr.<key>:`, `resource.<key>:`; logs also have
//! `pattern:` (a template from the patterns, `pattern:"user <*> logged in"`); spans have
//! `name:` (alias `operation:`), `kind:`, `status:`, `parent_span_id:` and `duration>=` (a
//! duration such as `250ms`). `*` in a keyword value is a wildcard (`service:check*`).
//! `AND`, `OR`, `NOT`/`-` and parentheses combine them.

mod columns;
mod compile;
mod matcher;
mod parse;
mod template;

pub use compile::compile;
pub use matcher::{LogMatcher, glob_match};
pub use parse::{MAX_QUERY_CHARS, MAX_QUERY_DEPTH, parse};
pub(crate) use template::stored_body;

use crate::Signal;

/// The fields each signal's queries may name: the one list the compiler's "unknown field"
/// error and [`syntax_help`] show. A new field goes here and into `compile.rs`'s
/// `filter_query` (and `matcher.rs` for logs).
pub fn known_fields(signal: Signal) -> &'static str {
    match signal {
        Signal::Logs => {
            "service, severity, event, pattern, trace_id, span_id, scope, attr.<key>, resource.<key>"
        }
        Signal::Spans => {
            "service, name, kind, status, duration, trace_id, span_id, parent_span_id, scope, attr.<key>, resource.<key>"
        }
    }
}

/// The syntax in brief, which the API adds to its answer to a query that does not parse (the
/// web UI shows it under the query).
pub fn syntax_help(signal: Signal) -> String {
    let (text, example) = match signal {
        Signal::Logs => (
            "the body",
            "service:checkout severity>=WARN event:PaymentDeclined",
        ),
        Signal::Spans => (
            "span and event names",
            "service:checkout status:error duration>=250ms",
        ),
    };
    format!(
        "syntax: words and \"phrases\" match {text}; {example}\n\
         fields: {}; * wildcards on values (service:check*);\n\
         AND, OR, NOT or -, parentheses",
        known_fields(signal)
    )
}

/// A parsed query. (Serializable: a search node passes it on to the ingest nodes.)
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Expr {
    /// A free-text word; `*` makes it a prefix or wildcard.
    Text {
        /// The word as typed.
        text: String,
        /// Character position in the query.
        pos: usize,
    },
    /// A free-text phrase: the words in this order.
    Phrase {
        /// The phrase as typed, without quotes.
        text: String,
        /// Character position in the query.
        pos: usize,
    },
    /// `field OP value`.
    Filter {
        /// Field name as typed (`service`, `attr.http.route`).
        field: String,
        /// The comparison.
        op: CmpOp,
        /// The value as typed, without quotes.
        value: String,
        /// True when the value was quoted.
        phrase: bool,
        /// Character position in the query.
        pos: usize,
    },
    /// All must match.
    And(Vec<Expr>),
    /// Any must match.
    Or(Vec<Expr>),
    /// Must not match.
    Not(Box<Expr>),
}

/// Whether rows of a partition holding exactly `services` could match `expr`: false only when
/// `expr` needs a `service:` value that none of them has. It never rules out a partition that
/// holds a match; it keeps some that do not (it looks no further than services).
pub fn may_match_services(expr: &Expr, services: &[String]) -> bool {
    match expr {
        Expr::Filter {
            field,
            op: CmpOp::Eq,
            value,
            ..
        } if field == "service" => services.iter().any(|s| matcher::glob_match(value, s)),
        Expr::And(all) => all.iter().all(|e| may_match_services(e, services)),
        Expr::Or(any) => any.iter().any(|e| may_match_services(e, services)),
        // A negation, a word, any other field: nothing to conclude from services alone.
        _ => true,
    }
}

impl Expr {
    /// `field OP value` built by code rather than typed: the value is taken whole, as if quoted.
    pub fn filter(field: &str, op: CmpOp, value: &str) -> Expr {
        Expr::Filter {
            field: field.to_string(),
            op,
            value: value.to_string(),
            phrase: true,
            pos: 0,
        }
    }
}

/// The comparison of a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CmpOp {
    /// `:` or `=`.
    Eq,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
}

impl CmpOp {
    /// How the operator is written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => ":",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }
}

/// A query that cannot be run: its position (in characters) and what was wrong there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at position {position})")]
pub struct QueryError {
    position: usize,
    message: String,
}

impl QueryError {
    pub(crate) fn syntax(position: usize, message: String) -> Self {
        QueryError { position, message }
    }

    /// Character position of the error in the query.
    pub fn position(&self) -> Option<usize> {
        Some(self.position)
    }

    /// What was wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_rule_out_only_what_cannot_match() {
        let services = ["checkout".to_string(), "payments".to_string()];
        let may = |q: &str| {
            let expr = parse(q).expect("parses").expect("not empty");
            may_match_services(&expr, &services)
        };
        assert!(may("service:checkout"));
        assert!(may("service:pay*"));
        assert!(may("service:billing OR service:payments"));
        assert!(
            may("error -service:checkout"),
            "a negation concludes nothing"
        );
        assert!(may("severity>=WARN"));
        assert!(!may("service:billing"));
        assert!(!may("timeout service:billing"));
        assert!(!may("service:bill* OR service:inventory"));
        assert!(!may("(service:checkout OR error) service:billing"));
    }
}
