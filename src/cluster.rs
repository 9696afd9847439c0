//! Membership: the nodes that share one PostgreSQL metastore. Each writes its row in
//! `weft_nodes` every second (its role, the address other nodes reach its HTTP API at, and
//! the time); that table is the membership list, with no protocol of weft's own. A node
//! whose row is older than [`GONE_AFTER`] is taken for gone. `/api/v1/cluster` shows the list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metastore::postgres::PostgresMetastore;

/// How often a node writes its row.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

pub use crate::metastore::GONE_AFTER;

/// How long one read of the list answers every caller: live tails, fan-outs and the
/// cluster page each ask for it, and heartbeats are a second apart anyway.
pub const MEMBERS_FRESH: Duration = Duration::from_millis(500);

/// Longest a read of the list may take: a PostgreSQL that hangs must not hold every query.
pub const MEMBERS_READ_TIMEOUT: Duration = Duration::from_secs(2);

pub use crate::metastore::Member;

/// This node's place in the cluster.
pub struct Cluster {
    postgres: Arc<PostgresMetastore>,
    me: Member,
    /// The last list read, and when.
    last_read: std::sync::Mutex<Option<(Instant, Vec<Member>)>>,
    /// Held while the list is read: callers at once wait for one read.
    reading: tokio::sync::Mutex<()>,
    /// Reads of the list from PostgreSQL.
    reads: AtomicU64,
}

impl Cluster {
    /// This node (`id`, `role`, reached at `advertise`), on `postgres`.
    pub fn new(
        postgres: Arc<PostgresMetastore>,
        id: String,
        role: crate::node::Role,
        advertise: String,
    ) -> Self {
        Cluster {
            postgres,
            me: Member {
                id,
                role: role.name().to_string(),
                advertise,
                started_unix_nano: crate::clock::now_unix_nano(),
                heartbeat_unix_nano: 0,
            },
            last_read: std::sync::Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
            reads: AtomicU64::new(0),
        }
    }

    /// This node.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Writes this node's row once, so that it is listed as soon as it serves; a failure is
    /// logged, and [`Cluster::run`] goes on trying.
    pub async fn register(&self) {
        if let Err(error) = self.postgres.heartbeat(&self.me).await {
            tracing::warn!(%error, "cannot write this node's heartbeat yet; retrying");
        }
    }

    /// Writes this node's row every [`HEARTBEAT_INTERVAL`] until `stop`. A failure (PostgreSQL
    /// away) is logged once and retried: the node goes on, and others take it for gone
    /// meanwhile.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match self.postgres.heartbeat(&self.me).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("heartbeats reach the metastore again");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot write this node's heartbeat; retrying");
                }
                Err(_) => {}
            }
        }
    }

    /// Every node with a row, by ID: read from PostgreSQL at most once per
    /// [`MEMBERS_FRESH`], however many callers ask. When a read fails or takes longer than
    /// [`MEMBERS_READ_TIMEOUT`], the last list read is answered while it is younger than
    /// [`GONE_AFTER`] (it still names who was alive then); after that, the error.
    pub async fn members(&self) -> Result<Vec<Member>, String> {
        if let Some(fresh) = self.cached(MEMBERS_FRESH) {
            return Ok(fresh);
        }
        let _reading = self.reading.lock().await;
        // Read by another caller while this one waited.
        if let Some(fresh) = self.cached(MEMBERS_FRESH) {
            return Ok(fresh);
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let reason = match tokio::time::timeout(MEMBERS_READ_TIMEOUT, self.postgres.members()).await
        {
            Ok(Ok(members)) => {
                *self.last_read.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), members.clone()));
                return Ok(members);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {MEMBERS_READ_TIMEOUT:?}"),
        };
        match self.cached(GONE_AFTER) {
            Some(stale) => {
                tracing::warn!(%reason, "cannot read the node list; answering with the last one");
                Ok(stale)
            }
            None => Err(reason),
        }
    }

    /// The last list read, if younger than `age`.
    fn cached(&self, age: Duration) -> Option<Vec<Member>> {
        let last = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < age)
            .map(|(_, members)| members.clone())
    }

    /// How often the list was read from PostgreSQL.
    pub fn membership_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}
