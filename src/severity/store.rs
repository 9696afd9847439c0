//! Where severity rules and their audit log are kept.
//!
//! - [`FileRules`]: `rules.json` and `audit.jsonl` in the data directory; one node, the default.
//! - [`SharedRules`]: the PostgreSQL metastore (`metastore = "postgres://…"`), shared by every
//!   node that uses it: a rule created on one node is read by the others when they
//!   [refresh](super::SeverityControl::refresh), and the audit log is one.
//!
//! Either way a rule and its audit entry are one change, and a rule number is never given out
//! twice, including the numbers of deleted rules (which only the audit log recalls).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::SeverityError;
use super::control::AuditEntry;
use super::rules::{Action, Rule, Selector};
use crate::metastore::MetastoreError;
use crate::metastore::postgres::PostgresMetastore;

/// The stored form of a rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredRule {
    id: String,
    selector: Selector,
    min_severity: Option<i32>,
    set_severity: Option<i32>,
    expires_at: u64,
    reason: String,
    created_by: String,
    created_at: u64,
}

impl From<&Rule> for StoredRule {
    fn from(r: &Rule) -> Self {
        StoredRule {
            id: r.id.clone(),
            selector: r.selector.clone(),
            min_severity: r.action.min_severity,
            set_severity: r.action.set_severity,
            expires_at: r.expires_at,
            reason: r.reason.clone(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
        }
    }
}

impl From<StoredRule> for Rule {
    fn from(r: StoredRule) -> Self {
        Rule {
            id: r.id,
            selector: r.selector,
            action: Action {
                min_severity: r.min_severity,
                set_severity: r.set_severity,
            },
            expires_at: r.expires_at,
            reason: r.reason,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

fn damaged(what: &str, e: serde_json::Error) -> SeverityError {
    SeverityError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{what}: {e}"),
    ))
}

/// The number in a rule ID (`r12` → 12).
fn rule_number(id: &str) -> Option<u64> {
    id.strip_prefix('r').and_then(|n| n.parse().ok())
}

/// What severity control asks of the place its rules are kept. Calls block; callers are
/// blocking threads.
pub trait RuleStore: Send + Sync {
    /// The rules in force, oldest first.
    fn rules(&self) -> Result<Vec<Rule>, SeverityError>;
    /// A rule number never given out before.
    fn next_number(&self) -> Result<u64, SeverityError>;
    /// Stores `rule` and its audit entry as one change.
    fn add(&self, rule: &Rule, entry: &AuditEntry) -> Result<(), SeverityError>;
    /// Removes rule `id` and records `entry`, as one change. `false`, and nothing recorded,
    /// when it is not there (another node removed it first).
    fn remove(&self, id: &str, entry: &AuditEntry) -> Result<bool, SeverityError>;
    /// The audit log, oldest first.
    fn audit_log(&self) -> Result<Vec<AuditEntry>, SeverityError>;
    /// Whether other nodes change these rules too, so that they must be read again.
    fn shared(&self) -> bool;
}

/// Rules in `rules.json` (replaced atomically on each change) and the audit log in
/// `audit.jsonl` (appended and fsynced), in one directory.
pub struct FileRules {
    dir: PathBuf,
    rules: Mutex<Vec<StoredRule>>,
    next_number: AtomicU64,
}

impl FileRules {
    /// Opens (or creates) the rules in `dir`.
    pub fn open(dir: &Path) -> Result<FileRules, SeverityError> {
        std::fs::create_dir_all(dir)?;
        let rules: Vec<StoredRule> = match std::fs::read(dir.join("rules.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| damaged(&format!("{}", dir.join("rules.json").display()), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let store = FileRules {
            dir: dir.to_path_buf(),
            rules: Mutex::new(Vec::new()),
            next_number: AtomicU64::new(1),
        };
        let audited = store.audit_log()?;
        let highest = rules
            .iter()
            .map(|r| r.id.as_str())
            .chain(audited.iter().filter_map(|e| e.rule["id"].as_str()))
            .filter_map(rule_number)
            .max()
            .unwrap_or(0);
        store.next_number.store(highest + 1, Ordering::Relaxed);
        *store.rules.lock().expect("lock poisoned") = rules;
        Ok(store)
    }

    /// Replaces rules.json atomically: temporary file, fsync, rename, fsync the directory.
    fn persist(&self, rules: &[StoredRule]) -> Result<(), SeverityError> {
        let tmp = self.dir.join("rules.json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(rules).expect("rules serialize"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("rules.json"))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), SeverityError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("audit.jsonl"))?;
        let mut line = serde_json::to_vec(entry).expect("audit entries serialize");
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_data()?;
        Ok(())
    }
}

impl RuleStore for FileRules {
    fn rules(&self) -> Result<Vec<Rule>, SeverityError> {
        let rules = self.rules.lock().expect("lock poisoned");
        Ok(rules.iter().cloned().map(Rule::from).collect())
    }

    fn next_number(&self) -> Result<u64, SeverityError> {
        Ok(self.next_number.fetch_add(1, Ordering::Relaxed))
    }

    fn add(&self, rule: &Rule, entry: &AuditEntry) -> Result<(), SeverityError> {
        let mut rules = self.rules.lock().expect("lock poisoned");
        let mut next = rules.clone();
        next.push(StoredRule::from(rule));
        self.persist(&next)?;
        self.append_audit(entry)?;
        *rules = next;
        Ok(())
    }

    fn remove(&self, id: &str, entry: &AuditEntry) -> Result<bool, SeverityError> {
        let mut rules = self.rules.lock().expect("lock poisoned");
        let next: Vec<StoredRule> = rules.iter().filter(|r| r.id != id).cloned().collect();
        if next.len() == rules.len() {
            return Ok(false);
        }
        self.persist(&next)?;
        self.append_audit(entry)?;
        *rules = next;
        Ok(true)
    }

    fn audit_log(&self) -> Result<Vec<AuditEntry>, SeverityError> {
        let text = match std::fs::read_to_string(self.dir.join("audit.jsonl")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        // A line torn by a crash mid-append is skipped, not fatal: the rules file is the
        // record of what is in force.
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    fn shared(&self) -> bool {
        false
    }
}

/// Rules in the PostgreSQL metastore, shared by every node on it.
pub struct SharedRules {
    metastore: Arc<PostgresMetastore>,
    runtime: tokio::runtime::Handle,
}

impl SharedRules {
    /// Rules kept in `metastore`, whose connection runs on `runtime`.
    pub fn new(metastore: Arc<PostgresMetastore>, runtime: tokio::runtime::Handle) -> Self {
        SharedRules { metastore, runtime }
    }

    /// Runs `request` on the runtime and waits for it here; a thread of its own keeps
    /// `block_on` off any runtime thread, whatever thread the caller is.
    fn wait<T: Send + 'static>(
        &self,
        request: impl AsyncFnOnce(&PostgresMetastore) -> Result<T, MetastoreError> + Send + 'static,
    ) -> Result<T, SeverityError> {
        let metastore = self.metastore.clone();
        let runtime = self.runtime.clone();
        std::thread::spawn(move || runtime.block_on(async move { request(&metastore).await }))
            .join()
            .unwrap_or_else(|_| {
                Err(MetastoreError::Unavailable(
                    "the metastore thread failed".into(),
                ))
            })
            .map_err(|e| SeverityError::Unavailable(e.to_string()))
    }
}

impl RuleStore for SharedRules {
    fn rules(&self) -> Result<Vec<Rule>, SeverityError> {
        let texts = self.wait(async |m| m.severity_rules().await)?;
        texts
            .iter()
            .map(|text| {
                serde_json::from_str::<StoredRule>(text)
                    .map(Rule::from)
                    .map_err(|e| damaged("a severity rule in the metastore", e))
            })
            .collect()
    }

    fn next_number(&self) -> Result<u64, SeverityError> {
        self.wait(async |m| m.next_severity_rule_number().await)
    }

    fn add(&self, rule: &Rule, entry: &AuditEntry) -> Result<(), SeverityError> {
        let id = rule.id.clone();
        let expires = rule.expires_at;
        let rule = serde_json::to_string(&StoredRule::from(rule)).expect("rules serialize");
        let entry = serde_json::to_string(entry).expect("audit entries serialize");
        self.wait(async move |m| m.add_severity_rule(&id, expires, &rule, &entry).await)
    }

    fn remove(&self, id: &str, entry: &AuditEntry) -> Result<bool, SeverityError> {
        let id = id.to_string();
        let entry = serde_json::to_string(entry).expect("audit entries serialize");
        self.wait(async move |m| m.remove_severity_rule(&id, &entry).await)
    }

    fn audit_log(&self) -> Result<Vec<AuditEntry>, SeverityError> {
        let texts = self.wait(async |m| m.severity_audit().await)?;
        texts
            .iter()
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| damaged("a severity audit entry in the metastore", e))
            })
            .collect()
    }

    fn shared(&self) -> bool {
        true
    }
}
