//! Log lines as templates: the pure part of log patterns, with no index in it.
//!
//! - `mask`: a body as tokens, numbers, IDs, addresses and quoted values masked;
//! - `drain`: the clustering of masked lines into templates (Drain).
//!
//! `crate::patterns` reads a selection's bodies and clusters them here; `crate::query` filters
//! by a template (`pattern:"user <*> logged in"`) with [`body_matches`].

mod drain;
mod mask;

pub use drain::{Drain, MAX_LEAF_TEMPLATES, MAX_TEMPLATES, Payload, SIMILARITY, Template};
pub use mask::{MAX_BODY_BYTES, MAX_TOKENS, WILDCARD, join, tokens};

/// A template as the `pattern:` filter takes it: its tokens, split on ASCII whitespace as
/// bodies are (a token may hold other whitespace, such as a no-break space).
pub fn parse_template(value: &str) -> Vec<String> {
    value
        .split(|c: char| c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `body` fits `template` (from [`parse_template`]): as many tokens, once masked, and
/// the same constant ones.
pub fn body_matches(template: &[String], body: &str) -> bool {
    drain::matches(template, &mask::tokens(body))
}

/// Whether some line could fit both templates: the same length, and where both are constant,
/// the same token.
pub fn overlap<A: AsRef<str>, B: AsRef<str>>(a: &[A], b: &[B]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let (x, y) = (x.as_ref(), y.as_ref());
            x == WILDCARD || y == WILDCARD || x == y
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_filters_bodies_by_its_constant_tokens() {
        let template = parse_template("order <*> failed: <*>");
        assert!(body_matches(
            &template,
            "order 991 failed: \"card declined\""
        ));
        assert!(!body_matches(&template, "order 991 shipped: ok"));
        assert!(!body_matches(&template, "order 991 failed: card declined"));
    }
}
