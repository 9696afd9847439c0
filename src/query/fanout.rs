//! A search node's questions to the ingest nodes of its cluster. Each live ingest node
//! answers from what it holds that is not yet in a published split, and names the
//! partitions it read, whose published splits (older versions of them) the search node then
//! leaves out of its own part. So a row is counted once whether it is published yet or not,
//! and is searchable on a search node as soon as its ingest node has indexed it.
//!
//! The questions are [`NodeQueries`](super::node::NodeQueries); [`RemoteNode`] asks
//! them of one node over HTTP, and [`FanOut`] of every live ingest node at once. A live tail
//! (`GET /api/v1/internal/tail`) is a stream instead, followed by `super::remote_tail`.
//!
//! The internal answers travel over the HTTP API every node already serves (its TLS, its
//! tokens: the caller's token is passed on), at the address each node advertises in the
//! membership table (`crate::cluster`).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weft_index::store::SplitOrigin;
use weft_index::{Candidates, LogSearch, SummaryPart, TraceSearch};

use super::Error;
use super::aggregation::{Aggregated, Aggregation};
use super::node::{NodeAnswer, NodeQueries, Rows};
use super::wire::{
    CandidatesQuestion, LogsQuestion, PartsQuestion, WireAnswer, WireCandidates, WireParts,
    WireRows,
};
use crate::clock::now_unix_nano;
use crate::cluster::Cluster;
use crate::storage::follower::Follower;

/// The largest answer a node may send to one question. A trace answer holds at most 10,000
/// spans and 50,000 log records; a node that sends more than this is failing, and is taken
/// for missing rather than let fill the asker's memory.
pub const MAX_NODE_ANSWER_BYTES: usize = 256 << 20;

/// What the ingest nodes answered, and which did not.
pub struct Gathered<T> {
    /// Answers.
    pub answers: Vec<NodeAnswer<T>>,
    /// Ingest nodes that did not answer (gone by their heartbeat, or failing): their rows not
    /// yet published are missing from the answer.
    pub missing: Vec<String>,
}

impl<T> Gathered<T> {
    /// The partitions the answers stand for.
    pub fn covered(&self) -> HashSet<SplitOrigin> {
        self.answers.iter().flat_map(NodeAnswer::covered).collect()
    }
}

/// Asks the ingest nodes.
pub struct FanOut {
    cluster: Arc<Cluster>,
    follower: Arc<Follower>,
    client: reqwest::Client,
    stream_client: reqwest::Client,
    timeout: Duration,
}

/// How long a stream (live tail) may go without a byte before it is taken for broken: three
/// of the keep-alives every node sends on it every 15 seconds.
const STREAM_SILENCE: Duration = Duration::from_secs(45);

impl FanOut {
    /// Questions from this node (`cluster`, following the splits with `follower`), each
    /// answered within `timeout`.
    /// With TLS (`tls`, this node's own files), other nodes are trusted by the certificates of
    /// this node's chain: nodes of one cluster share a CA.
    pub fn new(
        cluster: Arc<Cluster>,
        follower: Arc<Follower>,
        timeout: Duration,
        tls: Option<&crate::tls::TlsFiles>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let mut roots = Vec::new();
        if let Some(files) = tls {
            let pem = std::fs::read(&files.cert)
                .with_context(|| format!("cannot read {}", files.cert.display()))?;
            roots = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificates", files.cert.display()))?;
        }
        let builder = || {
            roots.iter().fold(
                reqwest::Client::builder().tls_built_in_root_certs(false),
                |b, certificate| b.add_root_certificate(certificate.clone()),
            )
        };
        Ok(FanOut {
            cluster,
            follower,
            client: builder().timeout(timeout).build()?,
            stream_client: builder()
                .connect_timeout(timeout)
                .read_timeout(STREAM_SILENCE)
                .build()?,
            timeout,
        })
    }

    /// Asks every live ingest node `ask` (given the node) at once, then reads the list of
    /// splits again: a split published while the nodes answered holds rows they no longer
    /// answer for. `authorization` is the caller's, passed on.
    pub async fn gather<T, F>(
        &self,
        authorization: Option<&str>,
        ask: impl Fn(RemoteNode) -> F,
    ) -> Gathered<T>
    where
        F: Future<Output = Result<NodeAnswer<T>, Error>>,
    {
        let (nodes, mut missing) = self.live_ingest_nodes().await;
        let asked = nodes.into_iter().map(|(id, base)| {
            let node = RemoteNode {
                id: id.clone(),
                base,
                client: self.client.clone(),
                authorization: authorization.map(str::to_string),
                max_answer_bytes: MAX_NODE_ANSWER_BYTES,
            };
            let answer = ask(node);
            async move { (id, answer.await) }
        });
        let mut answers = Vec::new();
        for (node, answer) in futures_util::future::join_all(asked).await {
            match answer {
                Ok(answer) => answers.push(answer),
                Err(reason) => {
                    tracing::warn!(%node, %reason, "an ingest node did not answer");
                    missing.push(node);
                }
            }
        }
        if let Err(reason) = self.follower.refresh().await {
            tracing::warn!(%reason, "cannot read the list of splits; answering from the last one");
        }
        Gathered { answers, missing }
    }

    /// Every live ingest node's rows of trace `id` (see [`FanOut::gather`]).
    pub async fn trace(&self, id: [u8; 16], authorization: Option<&str>) -> Gathered<Rows> {
        self.gather(authorization, |node| async move { node.trace(id).await })
            .await
    }

    /// Every live ingest node's page of log records matching `search`.
    pub async fn logs(&self, search: &LogSearch, authorization: Option<&str>) -> Gathered<Rows> {
        self.gather(authorization, |node| async move { node.logs(search).await })
            .await
    }

    /// Every live ingest node's candidate traces of `search`.
    pub async fn trace_candidates(
        &self,
        search: &TraceSearch,
        authorization: Option<&str>,
    ) -> Gathered<Candidates> {
        self.gather(authorization, |node| async move {
            node.trace_candidates(search).await
        })
        .await
    }

    /// What every live ingest node holds of each of `ids` in `[start, end)`.
    pub async fn trace_parts(
        &self,
        ids: &[[u8; 16]],
        (start, end): (u64, u64),
        authorization: Option<&str>,
    ) -> Gathered<Vec<SummaryPart>> {
        self.gather(authorization, |node| async move {
            node.trace_parts(ids, start, end).await
        })
        .await
    }

    /// Every live ingest node's part of `aggregation`.
    pub async fn aggregate(
        &self,
        aggregation: &Aggregation,
        authorization: Option<&str>,
    ) -> Gathered<Aggregated> {
        self.gather(authorization, |node| async move {
            node.aggregate(aggregation).await
        })
        .await
    }

    /// The live ingest nodes other than this one, as (ID, advertised base URL); and the
    /// ingest nodes that are gone (or, when the metastore cannot be read, a note that says
    /// so).
    pub async fn live_ingest_nodes(&self) -> (Vec<(String, String)>, Vec<String>) {
        let members = match self.cluster.members().await {
            Ok(members) => members,
            Err(reason) => {
                tracing::warn!(%reason, "cannot list the cluster's nodes; answering from splits only");
                return (
                    Vec::new(),
                    vec!["(the node list: the metastore cannot be read)".into()],
                );
            }
        };
        let now = now_unix_nano();
        let (mut live, mut gone) = (Vec::new(), Vec::new());
        for member in members {
            if member.role == crate::node::Role::Search.name() || member.id == self.cluster.me().id
            {
                continue;
            }
            if member.alive(now) {
                live.push((member.id, member.advertise));
            } else {
                gone.push(member.id);
            }
        }
        (live, gone)
    }

    /// The client for streams that last as long as their reader (live tail): it bounds
    /// connecting and silence, not the whole answer.
    pub fn stream_client(&self) -> &reqwest::Client {
        &self.stream_client
    }

    /// How long a node has to answer a question (or to open a stream).
    pub fn answer_timeout(&self) -> Duration {
        self.timeout
    }
}

/// Another node, asked over HTTP at its advertised address. Any failure (no connection, an
/// error status, an answer too large or malformed) is an error whose text says which, and
/// makes the node one that did not answer.
pub struct RemoteNode {
    id: String,
    base: String,
    client: reqwest::Client,
    authorization: Option<String>,
    max_answer_bytes: usize,
}

impl RemoteNode {
    /// Node `id` at base URL `base`, asked with `client` (which bounds the time), passing on
    /// `authorization`; answers larger than `max_answer_bytes` are refused.
    pub fn new(
        id: String,
        base: String,
        client: reqwest::Client,
        authorization: Option<String>,
        max_answer_bytes: usize,
    ) -> Self {
        RemoteNode {
            id,
            base,
            client,
            authorization,
            max_answer_bytes,
        }
    }

    /// `POST path` with `question` as JSON; the answer's part made a `T` by `decode`.
    async fn ask<Q: Serialize, W: DeserializeOwned, T>(
        &self,
        path: &str,
        question: &Q,
        decode: impl FnOnce(W) -> Result<T, String>,
    ) -> Result<NodeAnswer<T>, Error> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .json(question);
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let failed = |reason: String| Error::Unavailable(format!("node {}: {reason}", self.id));
        let mut response = request.send().await.map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            if body.len() + chunk.len() > self.max_answer_bytes {
                return Err(failed(format!(
                    "answer larger than {} bytes",
                    self.max_answer_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let wire: WireAnswer<W> = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("answer is not what was asked: {e}")))?;
        // A node whose advertised address leads to another node would have that node's rows
        // counted twice, under two names.
        if !wire.node.is_empty() && wire.node != self.id {
            return Err(failed(format!(
                "answered as node {}: its advertised address leads to another node",
                wire.node
            )));
        }
        wire.decode(&self.id, decode).map_err(failed)
    }
}

impl NodeQueries for RemoteNode {
    async fn trace(&self, id: [u8; 16]) -> Result<NodeAnswer<Rows>, Error> {
        let path = format!("/api/v1/internal/trace/{}", hex::encode(id));
        self.ask(&path, &(), |wire: WireRows| Rows::try_from(wire))
            .await
    }

    async fn logs(&self, search: &LogSearch) -> Result<NodeAnswer<Rows>, Error> {
        let question = LogsQuestion::from(search);
        self.ask("/api/v1/internal/logs", &question, |wire: WireRows| {
            Rows::try_from(wire)
        })
        .await
    }

    async fn trace_candidates(
        &self,
        search: &TraceSearch,
    ) -> Result<NodeAnswer<Candidates>, Error> {
        let question = CandidatesQuestion {
            query: search.query.clone(),
            start_unix_nano: search.start_unix_nano,
            end_unix_nano: search.end_unix_nano,
        };
        self.ask(
            "/api/v1/internal/trace-candidates",
            &question,
            |wire: WireCandidates| Candidates::try_from(wire),
        )
        .await
    }

    async fn trace_parts(
        &self,
        ids: &[[u8; 16]],
        start_unix_nano: u64,
        end_unix_nano: u64,
    ) -> Result<NodeAnswer<Vec<SummaryPart>>, Error> {
        let question = PartsQuestion {
            trace_ids: ids.iter().map(hex::encode).collect(),
            start_unix_nano,
            end_unix_nano,
        };
        self.ask(
            "/api/v1/internal/trace-parts",
            &question,
            |wire: WireParts| wire.parts_of(ids),
        )
        .await
    }

    async fn aggregate(&self, aggregation: &Aggregation) -> Result<NodeAnswer<Aggregated>, Error> {
        self.ask(
            "/api/v1/internal/aggregate",
            aggregation,
            Ok::<Aggregated, String>,
        )
        .await
    }
}
