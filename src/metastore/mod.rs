//! The metastore: which splits exist and in which state.
//!
//! A split is **staged** before its upload begins, **published** once uploaded (only then does
//! a query or a restart count on it, and only then may the WAL behind it go), and **marked for
//! deletion** when retention or a newer split of the same partition replaces it; the janitor
//! then deletes the object, and last the record. A crash at any step leaves a state the next
//! start finishes: a staged split is deleted (its partition is still unpublished locally and is
//! sealed again), a marked one is deleted.
//!
//! [`EmbeddedMetastore`] keeps the list in one JSON file under the data directory, replaced
//! atomically on every change; one node needs nothing else. `postgres` keeps it in PostgreSQL
//! (`metastore = "postgres://…"`), and with it the cluster's membership ([`Member`], one row
//! per node with its heartbeat) and every node's severity rules.
//!
//! Below storage, the cluster and severity rules, which all keep their state here; it names
//! only the clock.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use weft_index::Signal;

pub mod postgres;

/// A node whose heartbeat is older than this is taken for gone.
pub const GONE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// One node of a cluster, as its membership row says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Its `node_id`.
    pub id: String,
    /// `all`, `ingest` or `search`.
    pub role: String,
    /// Where other nodes reach its HTTP API (`advertise`).
    pub advertise: String,
    /// When it started (unix ns).
    pub started_unix_nano: u64,
    /// Its last heartbeat (unix ns; its own clock).
    pub heartbeat_unix_nano: u64,
}

impl Member {
    /// Whether its last heartbeat is recent at `now_unix_nano`.
    pub fn alive(&self, now_unix_nano: u64) -> bool {
        now_unix_nano.saturating_sub(self.heartbeat_unix_nano) <= GONE_AFTER.as_nanos() as u64
    }
}

/// Where a split is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitState {
    /// Upload begun; not to be read.
    Staged,
    /// Uploaded and in force.
    Published,
    /// To be deleted from object storage, then from here.
    MarkedForDeletion,
}

/// One split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// Its ID, also its object's name (`<signal>-<hour>-<position>`).
    pub id: String,
    /// `logs` or `spans`.
    pub signal: String,
    /// The start of its partition's hour.
    pub start_unix_nano: u64,
    /// Which part of that hour (0 unless the hour outgrew the seal size); 0 for splits
    /// listed before parts.
    #[serde(default)]
    pub part: u32,
    /// The end of that hour.
    pub end_unix_nano: u64,
    /// The WAL position its partition was committed through.
    pub committed_lsn: u64,
    /// Documents in it.
    pub docs: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its state.
    pub state: SplitState,
    /// When it was last changed.
    pub updated_unix_nano: u64,
    /// The services with rows in it; `None` for splits listed before weft recorded them.
    #[serde(default)]
    pub services: Option<Vec<String>>,
    /// The node that published it (`node_id`); `None` for splits listed before nodes were
    /// named, which a node takes in as its own.
    #[serde(default)]
    pub node: Option<String>,
}

impl SplitRecord {
    /// Whether node `node` takes this split in at start (and may delete it as a leftover).
    pub fn belongs_to(&self, node: &str) -> bool {
        self.node.as_deref().is_none_or(|n| n == node)
    }
}

impl SplitRecord {
    /// What the index takes in of a published split; `None` for one not published, or of a
    /// signal this weft cannot read.
    pub fn published(&self) -> Option<weft_index::store::PublishedSplit> {
        if self.state != SplitState::Published {
            return None;
        }
        Some(weft_index::store::PublishedSplit {
            id: self.id.clone(),
            signal: self.signal()?,
            start_unix_nano: self.start_unix_nano,
            part: self.part,
            committed_lsn: self.committed_lsn,
            docs: self.docs,
            node: self.node.clone(),
            services: self.services.clone(),
        })
    }

    /// The signal it holds; `None` for a record this weft cannot read.
    pub fn signal(&self) -> Option<Signal> {
        match self.signal.as_str() {
            "logs" => Some(Signal::Logs),
            "spans" => Some(Signal::Spans),
            _ => None,
        }
    }
}

/// Why the metastore could not answer.
#[derive(Debug, thiserror::Error)]
pub enum MetastoreError {
    /// Its storage failed.
    #[error("metastore: {0}")]
    Io(#[from] std::io::Error),
    /// It cannot be reached now (PostgreSQL away); retried.
    #[error("{0}")]
    Unavailable(String),
    /// It is set up wrong, or holds what this weft cannot read.
    #[error("metastore: {0}")]
    Config(String),
    /// Its content cannot be read.
    #[error("metastore {path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What weft asks of a metastore.
#[async_trait::async_trait]
pub trait Metastore: Send + Sync {
    /// Every split, in any state.
    async fn list_splits(&self) -> Result<Vec<SplitRecord>, MetastoreError>;
    /// Records a split about to be uploaded.
    async fn stage_split(&self, split: SplitRecord) -> Result<(), MetastoreError>;
    /// Publishes a staged split and, in the same change, marks the splits it replaces for
    /// deletion.
    async fn publish_split(&self, id: &str, replaces: &[String]) -> Result<(), MetastoreError>;
    /// Marks splits for deletion.
    async fn mark_for_deletion(&self, ids: &[String]) -> Result<(), MetastoreError>;
    /// Forgets splits whose objects are gone.
    async fn delete_splits(&self, ids: &[String]) -> Result<(), MetastoreError>;
}

/// The metastore of one node: a JSON file, rewritten atomically on each change.
pub struct EmbeddedMetastore {
    path: PathBuf,
    splits: Mutex<Vec<SplitRecord>>,
}

#[derive(Serialize, Deserialize)]
struct File {
    splits: Vec<SplitRecord>,
}

impl EmbeddedMetastore {
    /// Opens (or creates) the metastore in `dir`.
    pub fn open(dir: &Path) -> Result<EmbeddedMetastore, MetastoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("splits.json");
        let splits = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<File>(&bytes)
                    .map_err(|e| MetastoreError::Damaged {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?
                    .splits
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(EmbeddedMetastore {
            path,
            splits: Mutex::new(splits),
        })
    }

    /// Applies `change` to a copy of the list and makes the copy durable before it counts.
    fn change(&self, change: impl FnOnce(&mut Vec<SplitRecord>)) -> Result<(), MetastoreError> {
        let mut splits = self.splits.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = splits.clone();
        change(&mut next);
        let bytes = serde_json::to_vec_pretty(&File {
            splits: next.clone(),
        })
        .map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        *splits = next;
        Ok(())
    }
}

fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl Metastore for EmbeddedMetastore {
    async fn list_splits(&self) -> Result<Vec<SplitRecord>, MetastoreError> {
        Ok(self
            .splits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    async fn stage_split(&self, split: SplitRecord) -> Result<(), MetastoreError> {
        self.change(|splits| {
            splits.retain(|s| s.id != split.id);
            splits.push(SplitRecord {
                state: SplitState::Staged,
                updated_unix_nano: now_unix_nano(),
                ..split
            });
        })
    }

    async fn publish_split(&self, id: &str, replaces: &[String]) -> Result<(), MetastoreError> {
        let now = now_unix_nano();
        self.change(|splits| {
            for s in splits.iter_mut() {
                if s.id == id {
                    s.state = SplitState::Published;
                    s.updated_unix_nano = now;
                } else if replaces.contains(&s.id) {
                    s.state = SplitState::MarkedForDeletion;
                    s.updated_unix_nano = now;
                }
            }
        })
    }

    async fn mark_for_deletion(&self, ids: &[String]) -> Result<(), MetastoreError> {
        let now = now_unix_nano();
        self.change(|splits| {
            for s in splits.iter_mut().filter(|s| ids.contains(&s.id)) {
                s.state = SplitState::MarkedForDeletion;
                s.updated_unix_nano = now;
            }
        })
    }

    async fn delete_splits(&self, ids: &[String]) -> Result<(), MetastoreError> {
        self.change(|splits| splits.retain(|s| !ids.contains(&s.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> SplitRecord {
        SplitRecord {
            id: id.into(),
            signal: "logs".into(),
            start_unix_nano: 0,
            end_unix_nano: 1,
            committed_lsn: 7,
            docs: 3,
            bytes: 100,
            state: SplitState::Staged,
            updated_unix_nano: 0,
            services: Some(vec!["checkout".into()]),
            node: None,
            part: 0,
        }
    }

    #[tokio::test]
    async fn states_survive_a_reopen_and_publishing_replaces_in_one_change()
    -> Result<(), MetastoreError> {
        let dir = tempfile::tempdir()?;
        let meta = EmbeddedMetastore::open(dir.path())?;
        meta.stage_split(record("a")).await?;
        meta.publish_split("a", &[]).await?;
        meta.stage_split(record("b")).await?;
        meta.publish_split("b", &["a".to_string()]).await?;
        let reopened = EmbeddedMetastore::open(dir.path())?;
        let states: Vec<(String, SplitState)> = reopened
            .list_splits()
            .await?
            .into_iter()
            .map(|s| (s.id, s.state))
            .collect();
        assert_eq!(
            states,
            [
                ("a".to_string(), SplitState::MarkedForDeletion),
                ("b".to_string(), SplitState::Published)
            ]
        );
        reopened.delete_splits(&["a".to_string()]).await?;
        assert_eq!(
            EmbeddedMetastore::open(dir.path())?
                .list_splits()
                .await?
                .len(),
            1
        );

        std::fs::write(dir.path().join("splits.json"), b"{not json")?;
        assert!(matches!(
            EmbeddedMetastore::open(dir.path()),
            Err(MetastoreError::Damaged { .. })
        ));
        Ok(())
    }
}
