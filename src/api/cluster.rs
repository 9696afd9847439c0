//! `GET /api/v1/cluster`: the nodes sharing this node's metastore, and which of them are
//! alive by their heartbeats (see `crate::cluster`).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{ApiError, ApiState};
use crate::clock::now_unix_nano;

/// The answer.
#[derive(Serialize)]
pub struct ClusterAnswer {
    /// Whether this node shares a PostgreSQL metastore with others; without one it is alone
    /// and `nodes` is empty.
    pub shared: bool,
    /// This node's ID, when it has one in a cluster.
    pub node: Option<String>,
    /// Every node with a row, by ID.
    pub nodes: Vec<NodeAnswer>,
}

/// One node.
#[derive(Serialize)]
pub struct NodeAnswer {
    #[serde(flatten)]
    member: crate::cluster::Member,
    /// Whether its last heartbeat is recent.
    alive: bool,
    /// How long ago its last heartbeat was, by this node's clock.
    heartbeat_age_ms: u64,
}

pub(super) async fn cluster(
    State(state): State<ApiState>,
) -> Result<Json<ClusterAnswer>, ApiError> {
    let Some(cluster) = &state.cluster else {
        return Ok(Json(ClusterAnswer {
            shared: false,
            node: None,
            nodes: Vec::new(),
        }));
    };
    let members = cluster.members().await.map_err(|reason| {
        ApiError::unavailable(format!("the metastore cannot be read: {reason}"))
    })?;
    let now = now_unix_nano();
    Ok(Json(ClusterAnswer {
        shared: true,
        node: Some(cluster.me().id.clone()),
        nodes: members
            .into_iter()
            .map(|member| NodeAnswer {
                alive: member.alive(now),
                heartbeat_age_ms: now.saturating_sub(member.heartbeat_unix_nano) / 1_000_000,
                member,
            })
            .collect(),
    }))
}
