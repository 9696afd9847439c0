//! The metastore on PostgreSQL (`metastore = "postgres://…"`).
//!
//! One connection, opened again when it drops; every change is one statement or one
//! transaction, so a PostgreSQL that goes away mid-way leaves each split in a state the
//! publisher retries from. The schema comes from `migrations/postgres/*.sql`, applied in order
//! at start under an advisory lock (several nodes may start at once), each recorded in
//! `weft_schema_migrations`.

use std::str::FromStr;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::{Member, Metastore, MetastoreError, SplitRecord, SplitState};

/// The schema, oldest first: (version, SQL). Shipped inside the binary.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_splits.sql")),
    (
        2,
        include_str!("../../migrations/postgres/0002_split_services.sql"),
    ),
    (
        3,
        include_str!("../../migrations/postgres/0003_severity_rules.sql"),
    ),
    (
        4,
        include_str!("../../migrations/postgres/0004_split_nodes.sql"),
    ),
    (
        5,
        include_str!("../../migrations/postgres/0005_split_parts.sql"),
    ),
    (6, include_str!("../../migrations/postgres/0006_nodes.sql")),
];

/// Any number that is weft's own: migrations of several nodes starting at once run one by one.
const MIGRATION_LOCK: i64 = 0x7765_6674; // "weft"

/// How long to wait for PostgreSQL to answer a connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn pg_error(what: &str, e: impl std::fmt::Display) -> MetastoreError {
    MetastoreError::Unavailable(format!("PostgreSQL {what}: {e}"))
}

/// The metastore on PostgreSQL.
pub struct PostgresMetastore {
    config: tokio_postgres::Config,
    client: Mutex<Option<Client>>,
}

impl PostgresMetastore {
    /// Parses `url` (`postgres://user:password@host:port/db`, or
    /// `postgres:///db?host=/run/postgresql` for a socket), connects and applies the
    /// migrations not yet applied.
    pub async fn connect(url: &str) -> Result<PostgresMetastore, MetastoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| MetastoreError::Config(format!("metastore URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let metastore = PostgresMetastore {
            config,
            client: Mutex::new(None),
        };
        metastore.migrate().await?;
        Ok(metastore)
    }

    async fn open(&self) -> Result<Client, MetastoreError> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error("connection", e))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "PostgreSQL metastore connection ended");
            }
        });
        Ok(client)
    }

    /// The connection, opened again if it was lost.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, MetastoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.open().await?);
        }
        Ok(guard)
    }

    async fn migrate(&self) -> Result<(), MetastoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected above");
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("migration", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| pg_error("migration lock", e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS weft_schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(|e| pg_error("migration table", e))?;
        let applied: Vec<i32> = tx
            .query("SELECT version FROM weft_schema_migrations", &[])
            .await
            .map_err(|e| pg_error("migration list", e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            tx.batch_execute(sql)
                .await
                .map_err(|e| pg_error(&format!("migration {version}"), e))?;
            tx.execute(
                "INSERT INTO weft_schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(|e| pg_error(&format!("migration {version}"), e))?;
            tracing::info!(version, "metastore migration applied");
        }
        if let Some(newest) = applied.iter().max()
            && *newest > MIGRATIONS.last().map_or(0, |m| m.0)
        {
            return Err(MetastoreError::Config(format!(
                "the metastore's schema is version {newest}, newer than this weft knows; upgrade weft"
            )));
        }
        tx.commit().await.map_err(|e| pg_error("migration", e))?;
        Ok(())
    }

    /// Runs `statement` with `params`, dropping the connection if it failed so that the next
    /// call opens a new one.
    async fn execute(
        &self,
        what: &str,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, MetastoreError> {
        let mut guard = self.client().await?;
        let result = guard
            .as_ref()
            .expect("connected")
            .execute(statement, params)
            .await;
        result.map_err(|e| {
            if e.is_closed() {
                *guard = None;
            }
            pg_error(what, e)
        })
    }
}

/// Severity rules and their audit log (`severity::store` decides what they hold). Rules and
/// entries travel as JSON text, kept as `jsonb`.
impl PostgresMetastore {
    /// Runs `work` in one transaction, dropping the connection if it failed so that the next
    /// call opens a new one.
    async fn in_transaction<T>(
        &self,
        what: &str,
        work: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, MetastoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let outcome = async {
            let tx = client.transaction().await?;
            let value = work(&tx).await?;
            tx.commit().await?;
            Ok::<T, tokio_postgres::Error>(value)
        }
        .await;
        outcome.map_err(|e| {
            if e.is_closed() {
                *guard = None;
            }
            pg_error(what, e)
        })
    }

    /// Records that `member` is alive now (its row, written anew).
    pub async fn heartbeat(&self, member: &Member) -> Result<(), MetastoreError> {
        let started = to_i64("start", member.started_unix_nano)?;
        self.execute(
            "heartbeat",
            "INSERT INTO weft_nodes (id, role, advertise, started_unix_nano, heartbeat_unix_nano)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, advertise = EXCLUDED.advertise,
                 started_unix_nano = EXCLUDED.started_unix_nano,
                 heartbeat_unix_nano = EXCLUDED.heartbeat_unix_nano",
            &[
                &member.id,
                &member.role,
                &member.advertise,
                &started,
                &now_unix_nano(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Every node that ever wrote a heartbeat here, by ID.
    pub async fn members(&self) -> Result<Vec<Member>, MetastoreError> {
        self.in_transaction("list nodes", async |tx| {
            let rows = tx
                .query(
                    "SELECT id, role, advertise, started_unix_nano, heartbeat_unix_nano
                     FROM weft_nodes ORDER BY id",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| Member {
                    id: row.get(0),
                    role: row.get(1),
                    advertise: row.get(2),
                    started_unix_nano: row.get::<_, i64>(3).max(0) as u64,
                    heartbeat_unix_nano: row.get::<_, i64>(4).max(0) as u64,
                })
                .collect())
        })
        .await
    }

    /// The severity rules in force, as JSON text, in the order they were created.
    pub async fn severity_rules(&self) -> Result<Vec<String>, MetastoreError> {
        self.in_transaction("list severity rules", async |tx| {
            let rows = tx
                .query(
                    "SELECT rule::text FROM weft_severity_rules
                     ORDER BY length(id), id",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
        .await
    }

    /// A rule number no node has had before.
    pub async fn next_severity_rule_number(&self) -> Result<u64, MetastoreError> {
        self.in_transaction("number a severity rule", async |tx| {
            let row = tx
                .query_one("SELECT nextval('weft_severity_rule_numbers')", &[])
                .await?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
        .await
    }

    /// Stores a rule and its audit entry together.
    pub async fn add_severity_rule(
        &self,
        id: &str,
        expires_unix_nano: u64,
        rule: &str,
        audit: &str,
    ) -> Result<(), MetastoreError> {
        let expires = to_i64("expiry", expires_unix_nano)?;
        self.in_transaction("store a severity rule", async |tx| {
            tx.execute(
                "INSERT INTO weft_severity_rules (id, expires_unix_nano, rule)
                 VALUES ($1, $2, $3::text::jsonb)",
                &[&id, &expires, &rule],
            )
            .await?;
            tx.execute(
                "INSERT INTO weft_severity_audit (entry) VALUES ($1::text::jsonb)",
                &[&audit],
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Removes rule `id` and records its audit entry, together; `false` (and nothing
    /// recorded) when there is no such rule, e.g. another node removed it first.
    pub async fn remove_severity_rule(
        &self,
        id: &str,
        audit: &str,
    ) -> Result<bool, MetastoreError> {
        self.in_transaction("remove a severity rule", async |tx| {
            let removed = tx
                .execute("DELETE FROM weft_severity_rules WHERE id = $1", &[&id])
                .await?;
            if removed == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO weft_severity_audit (entry) VALUES ($1::text::jsonb)",
                &[&audit],
            )
            .await?;
            Ok(true)
        })
        .await
    }

    /// The severity audit log as JSON text, oldest first.
    pub async fn severity_audit(&self) -> Result<Vec<String>, MetastoreError> {
        self.in_transaction("read the severity audit log", async |tx| {
            let rows = tx
                .query(
                    "SELECT entry::text FROM weft_severity_audit ORDER BY seq",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
        .await
    }
}

fn to_i64(what: &str, value: u64) -> Result<i64, MetastoreError> {
    i64::try_from(value).map_err(|_| {
        MetastoreError::Config(format!("{what} {value} does not fit PostgreSQL's BIGINT"))
    })
}

fn state_name(state: SplitState) -> &'static str {
    match state {
        SplitState::Staged => "staged",
        SplitState::Published => "published",
        SplitState::MarkedForDeletion => "marked_for_deletion",
    }
}

fn now_unix_nano() -> i64 {
    crate::clock::now_unix_nano().min(i64::MAX as u64) as i64
}

#[async_trait::async_trait]
impl Metastore for PostgresMetastore {
    async fn list_splits(&self) -> Result<Vec<SplitRecord>, MetastoreError> {
        let mut guard = self.client().await?;
        let rows = guard
            .as_ref()
            .expect("connected")
            .query(
                "SELECT id, signal, start_unix_nano, end_unix_nano, committed_lsn, docs, bytes,
                        state, updated_unix_nano, services, node, part
                 FROM weft_splits ORDER BY signal, start_unix_nano, part, id",
                &[],
            )
            .await;
        let rows = rows.map_err(|e| {
            if e.is_closed() {
                *guard = None;
            }
            pg_error("list splits", e)
        })?;
        rows.iter()
            .map(|row| {
                let state = match row.get::<_, &str>(7) {
                    "staged" => SplitState::Staged,
                    "published" => SplitState::Published,
                    "marked_for_deletion" => SplitState::MarkedForDeletion,
                    other => {
                        return Err(MetastoreError::Config(format!(
                            "split state '{other}' is unknown to this weft"
                        )));
                    }
                };
                let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
                Ok(SplitRecord {
                    id: row.get(0),
                    signal: row.get(1),
                    start_unix_nano: n(2),
                    end_unix_nano: n(3),
                    committed_lsn: n(4),
                    docs: n(5),
                    bytes: n(6),
                    state,
                    updated_unix_nano: n(8),
                    services: row.get(9),
                    node: row.get(10),
                    part: row.get::<_, i32>(11).max(0) as u32,
                })
            })
            .collect()
    }

    async fn stage_split(&self, split: SplitRecord) -> Result<(), MetastoreError> {
        let part = i32::try_from(split.part).map_err(|_| {
            MetastoreError::Config(format!("split part {} is out of range", split.part))
        })?;
        let values = [
            to_i64("start", split.start_unix_nano)?,
            to_i64("end", split.end_unix_nano)?,
            to_i64("position", split.committed_lsn)?,
            to_i64("docs", split.docs)?,
            to_i64("bytes", split.bytes)?,
        ];
        self.execute(
            "stage split",
            "INSERT INTO weft_splits (id, signal, start_unix_nano, end_unix_nano, committed_lsn,
                                      docs, bytes, state, updated_unix_nano, services, node,
                                      part)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state,
                 updated_unix_nano = EXCLUDED.updated_unix_nano",
            &[
                &split.id,
                &split.signal,
                &values[0],
                &values[1],
                &values[2],
                &values[3],
                &values[4],
                &state_name(SplitState::Staged),
                &now_unix_nano(),
                &split.services,
                &split.node,
                &part,
            ],
        )
        .await?;
        Ok(())
    }

    async fn publish_split(&self, id: &str, replaces: &[String]) -> Result<(), MetastoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let now = now_unix_nano();
        let outcome = async {
            let tx = client.transaction().await?;
            let published = tx
                .execute(
                    "UPDATE weft_splits SET state = 'published', updated_unix_nano = $2
                     WHERE id = $1 AND state IN ('staged', 'published')",
                    &[&id, &now],
                )
                .await?;
            tx.execute(
                "UPDATE weft_splits SET state = 'marked_for_deletion', updated_unix_nano = $2
                 WHERE id = ANY($1)",
                &[&replaces, &now],
            )
            .await?;
            tx.commit().await?;
            Ok::<u64, tokio_postgres::Error>(published)
        }
        .await;
        match outcome {
            Ok(1) => Ok(()),
            Ok(_) => Err(MetastoreError::Config(format!(
                "split {id} is not staged; it cannot be published"
            ))),
            Err(e) => {
                if e.is_closed() {
                    *guard = None;
                }
                Err(pg_error("publish split", e))
            }
        }
    }

    async fn mark_for_deletion(&self, ids: &[String]) -> Result<(), MetastoreError> {
        self.execute(
            "mark splits for deletion",
            "UPDATE weft_splits SET state = 'marked_for_deletion', updated_unix_nano = $2
             WHERE id = ANY($1)",
            &[&ids, &now_unix_nano()],
        )
        .await?;
        Ok(())
    }

    async fn delete_splits(&self, ids: &[String]) -> Result<(), MetastoreError> {
        self.execute(
            "delete splits",
            "DELETE FROM weft_splits WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
        Ok(())
    }
}
