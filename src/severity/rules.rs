//! Severity rules: what operators create, how they are validated, and how a set of them is
//! compiled into a matcher that ingest consults for every log record.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use weft_index::severity;

/// Which records a rule applies to. Globs (`check*`) on service and scope, exact event ID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Service name glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Instrumentation scope (logger) name glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Exact event ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// What a rule does, as severity numbers (the API takes and shows names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Action {
    /// Records below this are dropped at ingest.
    pub min_severity: Option<i32>,
    /// Records get this severity (the original is kept in `weft.original_severity`).
    pub set_severity: Option<i32>,
}

/// A rule in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique ID.
    pub id: String,
    /// Which records.
    pub selector: Selector,
    /// What to do.
    pub action: Action,
    /// When it stops applying (unix ns).
    pub expires_at: u64,
    /// Why it was created.
    pub reason: String,
    /// Token name of the creator (or `loopback`).
    pub created_by: String,
    /// When (unix ns).
    pub created_at: u64,
}

/// How specific a selector is; the most specific matching rule wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Specificity {
    /// No selector field: every record.
    Global,
    /// Service only.
    Service,
    /// A scope (and maybe a service).
    Scope,
    /// An event ID (and maybe more).
    Event,
}

impl Selector {
    /// How specific this selector is.
    pub fn specificity(&self) -> Specificity {
        if self.event.is_some() {
            Specificity::Event
        } else if self.scope.is_some() {
            Specificity::Scope
        } else if self.service.is_some() {
            Specificity::Service
        } else {
            Specificity::Global
        }
    }

    /// True when the selector can match records of `service` (its scope and event unknown).
    pub fn may_match_service(&self, service: &str) -> bool {
        self.service.as_deref().is_none_or(|g| glob(g, service))
    }

    fn matches(&self, service: &str, scope: &str, event: &str) -> bool {
        self.service.as_deref().is_none_or(|g| glob(g, service))
            && self.scope.as_deref().is_none_or(|g| glob(g, scope))
            && self.event.as_deref().is_none_or(|e| e == event)
    }
}

/// `*` matches any run of characters; everything else literally (the query language's rule).
pub fn glob(pattern: &str, text: &str) -> bool {
    weft_index::query::glob_match(pattern, text)
}

/// Parses a severity given by name (`DEBUG`, `warn`, `INFO2`) or number (1-24).
pub fn parse_severity(text: &str) -> Option<i32> {
    severity::number_for_text(text)
}

/// The decision for one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No rule applies.
    Keep,
    /// Drop it; counted against rule `index`.
    Drop {
        /// Index of the deciding rule in the compiled set.
        rule: usize,
    },
    /// Keep it with this severity (rule `index` remapped it).
    Remap {
        /// Index of the deciding rule.
        rule: usize,
        /// The new severity number.
        severity: i32,
    },
}

/// Rules compiled for fast lookup. Rules with an event selector are found by a hash lookup on
/// the record's event ID; the others are few and scanned. Candidates are kept most specific
/// first, newest first, so the first match decides.
#[derive(Debug, Default)]
pub struct CompiledRules {
    rules: Vec<Rule>,
    by_event: HashMap<String, Vec<usize>>,
    others: Vec<usize>,
}

impl CompiledRules {
    /// Compiles a set of rules.
    pub fn new(mut rules: Vec<Rule>) -> Self {
        // Most specific first; among equals, newest first.
        rules.sort_by(|a, b| {
            b.selector
                .specificity()
                .cmp(&a.selector.specificity())
                .then(b.created_at.cmp(&a.created_at))
                .then(b.id.cmp(&a.id))
        });
        let mut by_event: HashMap<String, Vec<usize>> = HashMap::new();
        let mut others = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            match &rule.selector.event {
                Some(event) => by_event.entry(event.clone()).or_default().push(i),
                None => others.push(i),
            }
        }
        CompiledRules {
            rules,
            by_event,
            others,
        }
    }

    /// The compiled rules, in decision order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// True when no rule is in force (ingest then skips evaluation entirely).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rules without an event selector that match `service` and `scope`, in decision order.
    /// Records of one batch share a few (service, scope) pairs, so callers compute this once
    /// per pair and not once per record.
    pub fn others_matching(&self, service: &str, scope: &str) -> Vec<usize> {
        self.others
            .iter()
            .copied()
            .filter(|&i| self.rules[i].selector.matches(service, scope, ""))
            .collect()
    }

    /// The rule deciding for a record, if any.
    pub fn winner(&self, service: &str, scope: &str, event: &str, now: u64) -> Option<usize> {
        self.winner_with(
            &self.others_matching(service, scope),
            service,
            scope,
            event,
            now,
        )
    }

    /// [`CompiledRules::winner`] with the pair's non-event candidates already resolved.
    pub fn winner_with(
        &self,
        others: &[usize],
        service: &str,
        scope: &str,
        event: &str,
        now: u64,
    ) -> Option<usize> {
        let event_rules = self.by_event.get(event).map(Vec::as_slice).unwrap_or(&[]);
        // Event rules outrank every other kind, so they are tried first.
        event_rules
            .iter()
            .copied()
            .find(|&i| {
                let rule = &self.rules[i];
                rule.expires_at > now && rule.selector.matches(service, scope, event)
            })
            .or_else(|| {
                others
                    .iter()
                    .copied()
                    .find(|&i| self.rules[i].expires_at > now)
            })
    }

    /// What to do with a record of this severity.
    pub fn decide(
        &self,
        service: &str,
        scope: &str,
        event: &str,
        severity: i32,
        now: u64,
    ) -> Decision {
        self.decide_with(
            &self.others_matching(service, scope),
            service,
            scope,
            event,
            severity,
            now,
        )
    }

    /// [`CompiledRules::decide`] with the pair's non-event candidates already resolved.
    pub fn decide_with(
        &self,
        others: &[usize],
        service: &str,
        scope: &str,
        event: &str,
        severity: i32,
        now: u64,
    ) -> Decision {
        let Some(i) = self.winner_with(others, service, scope, event, now) else {
            return Decision::Keep;
        };
        let action = &self.rules[i].action;
        let effective = action.set_severity.unwrap_or(severity);
        if action.min_severity.is_some_and(|min| effective < min) {
            return Decision::Drop { rule: i };
        }
        match action.set_severity {
            Some(s) if s != severity => Decision::Remap {
                rule: i,
                severity: s,
            },
            _ => Decision::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, selector: Selector, action: Action, created_at: u64) -> Rule {
        Rule {
            id: id.into(),
            selector,
            action,
            expires_at: 1_000,
            reason: String::new(),
            created_by: "t".into(),
            created_at,
        }
    }

    fn sel(service: Option<&str>, scope: Option<&str>, event: Option<&str>) -> Selector {
        Selector {
            service: service.map(String::from),
            scope: scope.map(String::from),
            event: event.map(String::from),
        }
    }

    fn min(n: i32) -> Action {
        Action {
            min_severity: Some(n),
            set_severity: None,
        }
    }

    #[test]
    fn most_specific_wins_then_newest() {
        let rules = CompiledRules::new(vec![
            rule("global", sel(None, None, None), min(17), 1),
            rule("service", sel(Some("check*"), None, None), min(13), 2),
            rule(
                "scope",
                sel(Some("checkout"), Some("payments"), None),
                min(9),
                3,
            ),
            rule("event", sel(None, None, Some("CacheMiss")), min(5), 4),
            rule("event-newer", sel(None, None, Some("CacheMiss")), min(1), 5),
        ]);
        let id = |i: Option<usize>| i.map(|i| rules.rules()[i].id.as_str());
        assert_eq!(id(rules.winner("cart", "x", "Other", 0)), Some("global"));
        assert_eq!(
            id(rules.winner("checkout", "x", "Other", 0)),
            Some("service")
        );
        assert_eq!(
            id(rules.winner("checkout", "payments", "Other", 0)),
            Some("scope")
        );
        assert_eq!(
            id(rules.winner("checkout", "payments", "CacheMiss", 0)),
            Some("event-newer")
        );
        // Expired rules no longer decide.
        assert_eq!(id(rules.winner("cart", "x", "Other", 1_000)), None);
    }

    #[test]
    fn decisions() {
        let rules = CompiledRules::new(vec![
            rule("drop-debug", sel(Some("checkout"), None, None), min(9), 1),
            rule(
                "remap",
                sel(None, None, Some("CacheMiss")),
                Action {
                    min_severity: None,
                    set_severity: Some(5),
                },
                2,
            ),
            rule(
                "remap-and-drop",
                sel(None, None, Some("Noise")),
                Action {
                    min_severity: Some(9),
                    set_severity: Some(5),
                },
                3,
            ),
        ]);
        assert_eq!(
            rules.decide("checkout", "", "X", 5, 0),
            Decision::Drop { rule: 2 }
        );
        assert_eq!(rules.decide("checkout", "", "X", 9, 0), Decision::Keep);
        assert_eq!(
            rules.decide("cart", "", "CacheMiss", 13, 0),
            Decision::Remap {
                rule: 1,
                severity: 5
            }
        );
        assert_eq!(rules.decide("cart", "", "CacheMiss", 5, 0), Decision::Keep);
        assert!(matches!(
            rules.decide("cart", "", "Noise", 13, 0),
            Decision::Drop { .. }
        ));
        assert_eq!(rules.decide("cart", "", "Y", 1, 0), Decision::Keep);
    }

    #[test]
    fn globs() {
        assert!(glob("check*", "checkout"));
        assert!(glob("*out", "checkout"));
        assert!(glob("c*k*t", "checkout"));
        assert!(!glob("check*", "cart"));
        assert!(glob("cart", "cart"));
        assert!(!glob("cart", "carts"));
    }
}
