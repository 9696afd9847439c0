//! The rules in force, durably: creation and deletion with validation, expiry, the audit log,
//! and the compiled matcher that ingest reads (swapped whole on every change).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::rules::{Action, CompiledRules, Rule, Selector, parse_severity};
use super::store::{FileRules, RuleStore};

/// Current time as unix nanoseconds; injectable so tests control expiry.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(crate::clock::now_unix_nano)
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum SeverityError {
    /// The request is not a valid rule.
    #[error("{0}")]
    Invalid(String),
    /// No rule has that ID.
    #[error("no rule with id '{0}'")]
    NotFound(String),
    /// The rules file or audit log could not be written; nothing changed.
    #[error("cannot store severity rules: {0}")]
    Io(#[from] std::io::Error),
    /// The shared metastore cannot be reached now; nothing changed. Retryable.
    #[error("severity rules are kept in the metastore, which cannot be reached now: {0}")]
    Unavailable(String),
}

/// A request to create a rule, as the API takes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    /// Which records.
    #[serde(default)]
    pub selector: Selector,
    /// What to do.
    #[serde(default)]
    pub action: ActionRequest,
    /// How long it lasts, such as `15m`; default 1 h.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Or when it ends, RFC 3339.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Allows a rule with an empty selector to drop records of every service.
    #[serde(default)]
    pub force: bool,
}

/// Severities as names or numbers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Drop records below this.
    #[serde(default)]
    pub min_severity: Option<Value>,
    /// Give records this severity.
    #[serde(default)]
    pub set_severity: Option<Value>,
}

/// One line of the audit log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// When (unix ns).
    pub at: u64,
    /// `create`, `delete` or `expire`.
    pub action: String,
    /// Who: the admin token's name, `loopback`, or `weft` for expiry.
    pub by: String,
    /// The rule as it was.
    pub rule: Value,
    /// Why: the rule's reason on create, the request's on delete.
    pub reason: String,
}

/// Limits on rule lifetimes.
#[derive(Clone, Debug)]
pub struct TtlLimits {
    /// TTL when a request names none.
    pub default: Duration,
    /// Longest TTL allowed.
    pub max: Duration,
}

/// Severity control: the rules, their audit trail, and the matcher ingest uses.
pub struct SeverityControl {
    store: Box<dyn RuleStore>,
    limits: TtlLimits,
    clock: Clock,
    rules: Mutex<Vec<Rule>>,
    compiled: RwLock<Arc<CompiledRules>>,
    version: watch::Sender<u64>,
    dropped: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

fn rfc3339(nanos: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn severity_value(text: &Value, field: &str) -> Result<i32, SeverityError> {
    let parsed = match text {
        Value::String(s) => parse_severity(s),
        Value::Number(n) => n
            .as_i64()
            .filter(|n| (1..=24).contains(n))
            .map(|n| n as i32),
        _ => None,
    };
    parsed.ok_or_else(|| {
        SeverityError::Invalid(format!(
            "unknown severity {text} for {field}; use TRACE, DEBUG, INFO, WARN, ERROR, FATAL or 1-24"
        ))
    })
}

impl SeverityControl {
    /// Loads the rules kept in files in `dir` (creating it); see [`SeverityControl::with_store`].
    pub fn open(dir: &Path, limits: TtlLimits, clock: Clock) -> Result<Arc<Self>, SeverityError> {
        Self::with_store(Box::new(FileRules::open(dir)?), limits, clock)
    }

    /// Loads the rules in `store`, dropping those that expired while weft was down (and
    /// auditing that).
    pub fn with_store(
        store: Box<dyn RuleStore>,
        limits: TtlLimits,
        clock: Clock,
    ) -> Result<Arc<Self>, SeverityError> {
        let rules = store.rules()?;
        let (version, _) = watch::channel(0);
        let control = Arc::new(SeverityControl {
            store,
            limits,
            clock,
            compiled: RwLock::new(Arc::new(CompiledRules::new(rules.clone()))),
            rules: Mutex::new(rules),
            version,
            dropped: Mutex::new(HashMap::new()),
        });
        control.expire()?;
        Ok(control)
    }

    /// Reads the rules again when other nodes change them too (a shared metastore), and
    /// applies them if they changed. Returns whether they did.
    pub fn refresh(&self) -> Result<bool, SeverityError> {
        if !self.store.shared() {
            return Ok(false);
        }
        let stored = self.store.rules()?;
        let mut rules = self.rules.lock().expect("lock poisoned");
        let same = |a: &[Rule], b: &[Rule]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(a, b)| a.id == b.id && a.expires_at == b.expires_at)
        };
        if same(&rules, &stored) {
            return Ok(false);
        }
        *rules = stored;
        self.publish(&rules);
        Ok(true)
    }

    /// Now, by this control's clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The compiled rules; cheap to call per batch.
    pub fn compiled(&self) -> Arc<CompiledRules> {
        self.compiled.read().expect("lock poisoned").clone()
    }

    /// Changes whenever the rules change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The rules in force.
    pub fn rules(&self) -> Vec<Rule> {
        self.rules.lock().expect("lock poisoned").clone()
    }

    /// Records dropped by a rule so far.
    pub fn dropped_by(&self, rule_id: &str) -> u64 {
        self.dropped
            .lock()
            .expect("lock poisoned")
            .get(rule_id)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Adds to a rule's drop count.
    pub fn count_dropped(&self, rule_id: &str, n: u64) {
        let counter = self
            .dropped
            .lock()
            .expect("lock poisoned")
            .entry(rule_id.to_string())
            .or_default()
            .clone();
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Validates and stores a new rule.
    pub fn create(&self, request: CreateRule, by: &str) -> Result<Rule, SeverityError> {
        let now = self.now();
        let mut selector = request.selector;
        for field in [
            &mut selector.service,
            &mut selector.scope,
            &mut selector.event,
        ] {
            if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *field = None;
            }
        }
        let action = Action {
            min_severity: request
                .action
                .min_severity
                .as_ref()
                .map(|v| severity_value(v, "min_severity"))
                .transpose()?,
            set_severity: request
                .action
                .set_severity
                .as_ref()
                .map(|v| severity_value(v, "set_severity"))
                .transpose()?,
        };
        if action.min_severity.is_none() && action.set_severity.is_none() {
            return Err(SeverityError::Invalid(
                "a rule needs an action: min_severity, set_severity or both".into(),
            ));
        }
        let expires_at = match (&request.ttl, &request.expires_at) {
            (Some(_), Some(_)) => {
                return Err(SeverityError::Invalid(
                    "give either ttl or expires_at, not both".into(),
                ));
            }
            (Some(ttl), None) => {
                let ttl = weft_index::text::duration(ttl)
                    .map_err(|why| SeverityError::Invalid(format!("ttl {why}")))?;
                if ttl.is_zero() {
                    return Err(SeverityError::Invalid(
                        "a rule needs a TTL greater than zero; every rule expires".into(),
                    ));
                }
                self.check_ttl(ttl)?;
                now + ttl.as_nanos() as u64
            }
            (None, Some(at)) => {
                let at = weft_index::text::rfc3339_unix_nano(at)
                    .map_err(|why| SeverityError::Invalid(format!("expires_at {why}")))?;
                if at <= now {
                    return Err(SeverityError::Invalid("expires_at is in the past".into()));
                }
                self.check_ttl(Duration::from_nanos(at - now))?;
                at
            }
            (None, None) => now + self.limits.default.as_nanos() as u64,
        };
        if selector == Selector::default() && action.min_severity.is_some() && !request.force {
            return Err(SeverityError::Invalid(
                "this rule has an empty selector, so it would drop records of every service; \
                 name a service, scope or event, or pass \"force\": true"
                    .into(),
            ));
        }
        let rule = Rule {
            id: format!("r{}", self.store.next_number()?),
            selector,
            action,
            expires_at,
            reason: request.reason,
            created_by: by.to_string(),
            created_at: now,
        };
        let mut rules = self.rules.lock().expect("lock poisoned");
        let entry = AuditEntry {
            at: now,
            action: "create".into(),
            by: by.to_string(),
            rule: self.rule_json(&rule),
            reason: rule.reason.clone(),
        };
        self.store.add(&rule, &entry)?;
        rules.push(rule.clone());
        self.publish(&rules);
        tracing::info!(rule = %rule.id, by, "severity rule created");
        Ok(rule)
    }

    fn check_ttl(&self, ttl: Duration) -> Result<(), SeverityError> {
        if ttl > self.limits.max {
            return Err(SeverityError::Invalid(format!(
                "TTL {} is above the maximum of {}",
                humantime::format_duration(ttl),
                humantime::format_duration(self.limits.max)
            )));
        }
        Ok(())
    }

    /// Removes a rule.
    pub fn delete(&self, id: &str, by: &str, reason: &str) -> Result<Rule, SeverityError> {
        let mut rules = self.rules.lock().expect("lock poisoned");
        let Some(position) = rules.iter().position(|r| r.id == id) else {
            return Err(SeverityError::NotFound(id.to_string()));
        };
        let entry = AuditEntry {
            at: self.now(),
            action: "delete".into(),
            by: by.to_string(),
            rule: self.rule_json(&rules[position]),
            reason: reason.to_string(),
        };
        let removed = self.store.remove(id, &entry)?;
        let rule = rules.remove(position);
        self.publish(&rules);
        if !removed {
            // Another node removed it first (and audited that).
            return Err(SeverityError::NotFound(id.to_string()));
        }
        tracing::info!(rule = %rule.id, by, "severity rule deleted");
        Ok(rule)
    }

    /// Removes expired rules, auditing each. Returns how many expired. With a shared
    /// metastore, each node may try; the one whose removal lands audits it.
    pub fn expire(&self) -> Result<usize, SeverityError> {
        let now = self.now();
        let mut rules = self.rules.lock().expect("lock poisoned");
        let expired: Vec<Rule> = rules
            .iter()
            .filter(|r| r.expires_at <= now)
            .cloned()
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        for rule in &expired {
            let entry = AuditEntry {
                at: now,
                action: "expire".into(),
                by: "weft".into(),
                rule: self.rule_json(rule),
                reason: "TTL elapsed".into(),
            };
            if self.store.remove(&rule.id, &entry)? {
                tracing::info!(rule = %rule.id, "severity rule expired");
            }
            rules.retain(|r| r.id != rule.id);
        }
        self.publish(&rules);
        Ok(expired.len())
    }

    /// The audit log, oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>, SeverityError> {
        self.store.audit_log()
    }

    /// The rules that can apply to `service`, and a tag that changes exactly when they do.
    pub fn effective(&self, service: &str) -> (String, Vec<Rule>) {
        let rules: Vec<Rule> = self
            .rules()
            .into_iter()
            .filter(|r| r.selector.may_match_service(service))
            .collect();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for r in &rules {
            std::hash::Hash::hash(&r.id, &mut hasher);
            std::hash::Hash::hash(&r.expires_at, &mut hasher);
        }
        let tag = format!("\"{:016x}\"", std::hash::Hasher::finish(&hasher));
        (tag, rules)
    }

    /// A rule as the API shows it.
    pub fn rule_json(&self, rule: &Rule) -> Value {
        let name = |n: Option<i32>| n.map(weft_index::severity::text_for_number);
        let now = self.now();
        json!({
            "id": rule.id,
            "selector": rule.selector,
            "action": {"min_severity": name(rule.action.min_severity), "set_severity": name(rule.action.set_severity)},
            "expires_at": rfc3339(rule.expires_at),
            "expires_at_unix_nano": rule.expires_at.to_string(),
            "time_left_seconds": rule.expires_at.saturating_sub(now) / 1_000_000_000,
            "reason": rule.reason,
            "created_by": rule.created_by,
            "created_at": rfc3339(rule.created_at),
            "created_at_unix_nano": rule.created_at.to_string(),
            "dropped": self.dropped_by(&rule.id),
        })
    }

    fn publish(&self, rules: &[Rule]) {
        *self.compiled.write().expect("lock poisoned") =
            Arc::new(CompiledRules::new(rules.to_vec()));
        self.version.send_modify(|v| *v += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(dir: &Path, clock: Arc<AtomicU64>) -> Arc<SeverityControl> {
        SeverityControl::open(
            dir,
            TtlLimits {
                default: Duration::from_secs(3600),
                max: Duration::from_secs(24 * 3600),
            },
            Arc::new(move || clock.load(Ordering::Relaxed)),
        )
        .unwrap()
    }

    fn request(json: &str) -> CreateRule {
        serde_json::from_str(json).unwrap()
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn create_validates() {
        let dir = tempfile::tempdir().unwrap();
        let c = control(dir.path(), Arc::new(AtomicU64::new(1000 * SEC)));
        for (body, why) in [
            (
                r#"{"selector":{"service":"a"},"action":{"min_severity":"LOUD"}}"#,
                "unknown severity",
            ),
            (
                r#"{"selector":{"service":"a"},"action":{}}"#,
                "needs an action",
            ),
            (
                r#"{"selector":{"service":"a"},"action":{"min_severity":"DEBUG"},"ttl":"0s"}"#,
                "TTL",
            ),
            (
                r#"{"selector":{"service":"a"},"action":{"min_severity":"DEBUG"},"ttl":"48h"}"#,
                "maximum",
            ),
            (
                r#"{"selector":{"service":"a"},"action":{"min_severity":"DEBUG"},"ttl":"soon"}"#,
                "duration",
            ),
            (
                r#"{"selector":{},"action":{"min_severity":"WARN"}}"#,
                "force",
            ),
        ] {
            let err = c.create(request(body), "t").unwrap_err().to_string();
            assert!(err.contains(why), "{body}: {err}");
        }
        let rule = c
            .create(
                request(r#"{"selector":{},"action":{"min_severity":"WARN"},"force":true}"#),
                "t",
            )
            .unwrap();
        assert_eq!(
            rule.expires_at,
            1000 * SEC + 3600 * SEC,
            "default TTL is 1 h"
        );
    }

    #[test]
    fn rules_and_audit_survive_reopen_and_expire_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicU64::new(1000 * SEC));
        let c = control(dir.path(), clock.clone());
        let a = c
            .create(request(r#"{"selector":{"service":"checkout"},"action":{"min_severity":"debug"},"ttl":"15m","reason":"INC-42"}"#), "alice")
            .unwrap();
        let b = c
            .create(request(r#"{"selector":{"event":"CacheMiss"},"action":{"set_severity":"DEBUG"},"ttl":"2h"}"#), "bob")
            .unwrap();
        c.delete(&b.id, "bob", "done").unwrap();
        assert!(matches!(
            c.delete(&b.id, "bob", ""),
            Err(SeverityError::NotFound(_))
        ));
        drop(c);

        let c = control(dir.path(), clock.clone());
        assert_eq!(c.rules().len(), 1);
        assert_eq!(c.rules()[0].id, a.id);
        let mut version = c.subscribe();
        clock.store(1000 * SEC + 15 * 60 * SEC, Ordering::Relaxed);
        assert_eq!(c.expire().unwrap(), 1);
        assert!(version.has_changed().unwrap());
        version.mark_unchanged();
        assert!(c.rules().is_empty());
        assert!(c.compiled().is_empty());
        let audit = c.audit_log().unwrap();
        let actions: Vec<(&str, &str)> = audit
            .iter()
            .map(|e| (e.action.as_str(), e.by.as_str()))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("create", "alice"),
                ("create", "bob"),
                ("delete", "bob"),
                ("expire", "weft")
            ]
        );
        assert_eq!(audit[0].reason, "INC-42");
        // A new rule never reuses an ID.
        let c2 = c
            .create(
                request(r#"{"selector":{"service":"x"},"action":{"min_severity":1}}"#),
                "t",
            )
            .unwrap();
        assert_ne!(c2.id, a.id);
        assert_ne!(c2.id, b.id);
    }

    #[test]
    fn effective_tag_changes_only_for_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let c = control(dir.path(), Arc::new(AtomicU64::new(1000 * SEC)));
        let (before, _) = c.effective("checkout");
        c.create(
            request(r#"{"selector":{"service":"cart"},"action":{"min_severity":"WARN"}}"#),
            "t",
        )
        .unwrap();
        assert_eq!(c.effective("checkout").0, before);
        c.create(
            request(r#"{"selector":{"service":"check*"},"action":{"min_severity":"WARN"}}"#),
            "t",
        )
        .unwrap();
        let (after, rules) = c.effective("checkout");
        assert_ne!(after, before);
        assert_eq!(rules.len(), 1);
    }
}
