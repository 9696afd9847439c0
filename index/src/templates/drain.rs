//! Drain: grouping log lines into templates in one pass (He et al., "Drain: An Online Log
//! Parsing Approach with Fixed Depth Tree", ICWS 2017; the algorithm behind Drain3 and Loki's
//! pattern ingester).
//!
//! A line (its masked tokens, `super::mask`) is routed by its token count, then by its first
//! [`PREFIX_TOKENS`] tokens, to a leaf holding a few templates of that shape. It joins the most
//! similar one when at least [`SIMILARITY`] of its positions hold the template's constant token
//! (a wildcard agrees with nothing; a line equal to the template, wildcards included, is its
//! own), turning the positions that differ into wildcards; else it starts a template of its
//! own. A node with [`MAX_CHILDREN`] children sends new first tokens to its wildcard child, so
//! a high-cardinality first word (a user name) cannot grow the tree without bound, and
//! [`MAX_TEMPLATES`] caps the whole.
//!
//! Its own module rather than a crate: of the Drain crates (`drain-rs` 0.3, a work in progress
//! built on grok; `logdrain` 0.3, regex masks and a thread-safe miner; `drain3` 0.3), none
//! merges a payload per template or takes another node's templates as lines, which a cluster's
//! answer needs, and the tree is a hundred lines.
//!
//! Templates carry a payload (`P`: counts, times, a sample) that is merged as lines join; the same
//! tree merges templates found elsewhere (other partitions, other nodes), a template being a line
//! whose wildcards are already in place.

use std::collections::HashMap;

use super::mask::WILDCARD;

/// Tokens after the count that route a line (Drain3's depth 4: root, count, one token, leaf).
pub const PREFIX_TOKENS: usize = 1;
/// Share of positions that must agree for a line to join a template (Drain3's default).
pub const SIMILARITY: f64 = 0.4;
/// Children of one tree node before new tokens go to its wildcard child.
pub const MAX_CHILDREN: usize = 100;
/// Templates kept; lines that would start another join the wildcard template of their shape.
pub const MAX_TEMPLATES: usize = 5_000;
/// Templates in one leaf, likewise: a line is compared with each template of its leaf, so this
/// bounds the work per line when lines share no template (random text).
pub const MAX_LEAF_TEMPLATES: usize = 64;

/// What a template's lines add up to.
pub trait Payload: Default {
    /// Adds `other`'s lines to these.
    fn merge(&mut self, other: Self);
}

/// A template and what its lines add up to.
#[derive(Clone, Debug)]
pub struct Template<P> {
    /// Its tokens, variable ones [`WILDCARD`].
    pub tokens: Vec<String>,
    /// Its lines' payload.
    pub payload: P,
}

#[derive(Default)]
struct Node {
    children: HashMap<String, Node>,
    /// At the last level: the templates of this route.
    templates: Vec<usize>,
}

/// The templates found so far.
pub struct Drain<P> {
    /// By token count.
    roots: HashMap<usize, Node>,
    templates: Vec<Template<P>>,
    /// Past [`MAX_TEMPLATES`]: the all-wildcard template of each token count.
    overflow: HashMap<usize, usize>,
}

impl<P: Payload> Default for Drain<P> {
    fn default() -> Self {
        Drain {
            roots: HashMap::new(),
            templates: Vec::new(),
            overflow: HashMap::new(),
        }
    }
}

impl<P: Payload> Drain<P> {
    /// Adds a line (or a template found elsewhere) with its payload.
    pub fn add<S: AsRef<str>>(&mut self, tokens: &[S], payload: P) {
        let count = tokens.len();
        let capped = self.templates.len() >= MAX_TEMPLATES;
        let mut node = self.roots.entry(count).or_default();
        for token in tokens.iter().take(PREFIX_TOKENS) {
            let token = token.as_ref();
            let key = if node.children.contains_key(token) {
                token
            } else if token != WILDCARD && node.children.len() + 1 >= MAX_CHILDREN {
                // Room is kept for the wildcard child.
                WILDCARD
            } else {
                token
            };
            node = node.children.entry(key.to_string()).or_default();
        }
        let best = best_match(&self.templates, &node.templates, tokens);
        let capped = capped || node.templates.len() >= MAX_LEAF_TEMPLATES;
        match best {
            Some(i) => {
                let template = &mut self.templates[i];
                for (mine, theirs) in template.tokens.iter_mut().zip(tokens) {
                    if mine != theirs.as_ref() {
                        *mine = WILDCARD.to_string();
                    }
                }
                template.payload.merge(payload);
            }
            None if capped => {
                let next = self.templates.len();
                let i = *self.overflow.entry(count).or_insert(next);
                if i == next {
                    self.templates.push(Template {
                        tokens: vec![WILDCARD.to_string(); count],
                        payload,
                    });
                } else {
                    self.templates[i].payload.merge(payload);
                }
            }
            None => {
                node.templates.push(self.templates.len());
                self.templates.push(Template {
                    tokens: tokens.iter().map(|t| t.as_ref().to_string()).collect(),
                    payload,
                });
            }
        }
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether no line was added.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The templates, each folded into a more general one that covers it (one found on another
    /// node before its wildcards were: `user bob logged in` into `user <*> logged in`).
    pub fn into_templates(self) -> Vec<Template<P>> {
        let mut templates = self.templates;
        // Most general first, so each folds into the most general template covering it; only
        // a template of the same length can cover another.
        templates.sort_by_key(|t| std::cmp::Reverse(wildcards(&t.tokens)));
        let mut kept: HashMap<usize, Vec<Template<P>>> = HashMap::new();
        for template in templates {
            let same_length = kept.entry(template.tokens.len()).or_default();
            // The all-wildcard template (lines past the caps) says nothing of the others, and
            // takes only its own kind.
            match same_length.iter_mut().find(|k| {
                covers(&k.tokens, &template.tokens)
                    && (wildcards(&k.tokens) < k.tokens.len() || k.tokens == template.tokens)
            }) {
                Some(general) => general.payload.merge(template.payload),
                None => same_length.push(template),
            }
        }
        kept.into_values().flatten().collect()
    }
}

fn wildcards(tokens: &[String]) -> usize {
    tokens.iter().filter(|t| *t == WILDCARD).count()
}

/// Whether `general` matches every line `specific` does.
fn covers(general: &[String], specific: &[String]) -> bool {
    general.len() == specific.len()
        && general
            .iter()
            .zip(specific)
            .all(|(g, s)| g == WILDCARD || g == s)
}

/// Whether a template matches a line: same count, every constant token equal.
pub fn matches<S: AsRef<str>>(template: &[String], line: &[S]) -> bool {
    template.len() == line.len()
        && template
            .iter()
            .zip(line)
            .all(|(t, l)| t == WILDCARD || t == l.as_ref())
}

/// The template of `candidates` most similar to `tokens`, if similar enough.
fn best_match<P, S: AsRef<str>>(
    templates: &[Template<P>],
    candidates: &[usize],
    tokens: &[S],
) -> Option<usize> {
    let mut best: Option<(usize, f64, usize)> = None;
    for &i in candidates {
        let template = &templates[i].tokens;
        // Only constant tokens agree (Drain3's rule): counting the template's wildcards too
        // would merge `cart <*> served` with `cart <*> failed`. A line equal to the template
        // (wildcards in place, as a template from elsewhere is) is always its own.
        let equal = template
            .iter()
            .zip(tokens)
            .filter(|(t, l)| *t != WILDCARD && *t == l.as_ref())
            .count();
        let same = template.iter().zip(tokens).all(|(t, l)| t == l.as_ref());
        let similarity = if tokens.is_empty() || same {
            1.0
        } else {
            equal as f64 / tokens.len() as f64
        };
        let params = wildcards(template);
        // Ties go to the template with more wildcards (Drain3's rule).
        if best.is_none_or(|(_, s, p)| similarity > s || (similarity == s && params > p)) {
            best = Some((i, similarity, params));
        }
    }
    best.filter(|(_, similarity, _)| *similarity >= SIMILARITY)
        .map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::mask::{join, tokens};

    #[derive(Default, Debug, PartialEq)]
    struct Count(u64);

    impl Payload for Count {
        fn merge(&mut self, other: Self) {
            self.0 += other.0;
        }
    }

    fn templates(drain: Drain<Count>) -> Vec<(String, u64)> {
        let mut out: Vec<_> = drain
            .into_templates()
            .into_iter()
            .map(|t| (join(&t.tokens), t.payload.0))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn lines_that_differ_in_a_word_share_a_template() {
        let drain = clustered(&[
            "user alice logged in",
            "user bob logged in",
            "user carol logged in",
            "cache miss for key orders",
            "cache miss for key carts",
            "shutting down",
        ]);
        assert_eq!(
            templates(drain),
            [
                ("cache miss for key <*>".to_string(), 2),
                ("shutting down".to_string(), 1),
                ("user <*> logged in".to_string(), 3),
            ]
        );
    }

    #[test]
    fn lines_agreeing_enough_merge_and_other_lengths_stay_apart() {
        let drain = clustered(&[
            "payment declined for order 1",
            "payment accepted for order 2",
            "connection refused",
            "connection reset",
            "connection reset by peer",
        ]);
        let found = templates(drain);
        // The payment lines share 3 constant tokens of 5, the connection lines 1 of 2.
        assert_eq!(
            found,
            [
                ("connection <*>".to_string(), 2),
                ("connection reset by peer".to_string(), 1),
                ("payment <*> for order <*>".to_string(), 2),
            ]
        );
    }

    #[test]
    fn a_masked_position_is_no_agreement() {
        let drain = clustered(&[
            "cart 12 served",
            "cart 13 failed",
            "cart 14 served",
            "7 8",
            "9 10",
        ]);
        assert_eq!(
            templates(drain),
            [
                ("<*> <*>".to_string(), 2),
                ("cart <*> failed".to_string(), 1),
                ("cart <*> served".to_string(), 2),
            ]
        );
    }

    #[test]
    fn templates_from_elsewhere_merge_and_fold_into_the_general_one() {
        let mut drain = Drain::default();
        drain.add(&["user", "<*>", "logged", "in"], Count(10));
        drain.add(&["user", "bob", "logged", "in"], Count(2));
        drain.add(&["user", "<*>", "logged", "in"], Count(5));
        assert_eq!(templates(drain), [("user <*> logged in".to_string(), 17)]);
    }

    #[test]
    fn a_high_cardinality_first_word_is_bounded() {
        let mut drain = Drain::default();
        for i in 0..10_000 {
            let name: String = (0..6)
                .map(|k| (b'a' + ((i >> (k * 2)) % 26) as u8) as char)
                .collect();
            drain.add(&tokens(&format!("{name} signed up today")), Count(1));
        }
        assert!(drain.len() <= MAX_CHILDREN + 1, "{}", drain.len());
        let found = templates(drain);
        assert!(
            found.iter().any(|(t, _)| t == "<*> signed up today"),
            "{found:?}"
        );
        assert_eq!(found.iter().map(|(_, n)| n).sum::<u64>(), 10_000);
    }

    #[test]
    fn past_the_cap_unmatched_lines_join_the_wildcard_template_of_their_length() {
        let mut drain = Drain::default();
        for i in 0..MAX_TEMPLATES + 50 {
            // Distinct words everywhere: nothing agrees.
            let line: Vec<String> = (0..3).map(|k| letters(i * 3 + k)).collect();
            drain.add(&line, Count(1));
        }
        assert!(drain.len() <= MAX_TEMPLATES + 1, "{}", drain.len());
        let found = templates(drain);
        assert_eq!(
            found.iter().map(|(_, n)| n).sum::<u64>(),
            (MAX_TEMPLATES + 50) as u64
        );
    }

    #[test]
    fn a_leaf_holds_a_bounded_number_of_templates() {
        let mut drain = Drain::default();
        for i in 0..1_000 {
            // One first word (one leaf), distinct words after it: nothing agrees enough.
            let mut line: Vec<String> = (0..3).map(|k| letters(i * 3 + k)).collect();
            line.insert(0, "same".into());
            drain.add(&line, Count(1));
        }
        assert_eq!(drain.len(), MAX_LEAF_TEMPLATES + 1);
        let found = templates(drain);
        assert!(found.contains(&(
            "<*> <*> <*> <*>".to_string(),
            1_000 - MAX_LEAF_TEMPLATES as u64
        )));
    }

    /// The lines clustered, one record each.
    fn clustered(lines: &[&str]) -> Drain<Count> {
        let mut drain = Drain::default();
        for line in lines {
            drain.add(&tokens(line), Count(1));
        }
        drain
    }

    /// A distinct word of letters for each number.
    fn letters(mut n: usize) -> String {
        let mut out = String::new();
        loop {
            out.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
            if n == 0 {
                return out;
            }
        }
    }

    #[test]
    fn matching_is_by_shape_and_constant_tokens() {
        let template: Vec<String> = ["user", "<*>", "logged", "in"].map(String::from).to_vec();
        assert!(matches(&template, &tokens("user dave logged in")));
        assert!(!matches(&template, &tokens("user dave logged out")));
        assert!(!matches(&template, &tokens("user dave logged in twice")));
    }
}
