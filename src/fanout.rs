//! A search node's questions to the ingest nodes of its cluster. Each live ingest node
//! answers from what it holds that is not yet in a published split, and names the
//! partitions it read, whose published splits (older versions of them) the search node then
//! leaves out of its own part. So a row is counted once whether it is published yet or not,
//! and is searchable on a search node as soon as its ingest node has indexed it.
//!
//! The questions, each answered by the module that serves it:
//! - `GET /api/v1/internal/trace/{id}` and `GET /api/v1/internal/logs`: rows
//!   ([`InternalRows`]; `api::traces`, `api::logs`);
//! - `POST /api/v1/internal/trace-candidates` and `/trace-parts`: a trace search's candidates
//!   and the parts of their summaries (`api::traces`);
//! - `POST /api/v1/internal/aggregate`: a part of a catalog, histogram, facet, field list,
//!   comparison, span statistics or heatmap (`crate::aggregation`);
//! - `GET /api/v1/internal/tail`: a live tail, followed by `crate::remote_tail`.
//!
//! The internal answers travel over the HTTP API every node already serves (its TLS, its
//! tokens: the caller's token is passed on), at the address each node advertises in the
//! membership table (`crate::cluster`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};
use weft_index::store::{PartitionRef, SplitOrigin};
use weft_index::{LogSearch, RowBatch, Signal};

use crate::cluster::Cluster;
use crate::pipeline::now_unix_nano;
use crate::storage::follower::Follower;

/// What a node answers a search node: its rows not yet in a published split.
#[derive(Debug, Serialize, Deserialize)]
pub struct InternalRows {
    /// The node that answers.
    pub node: Option<String>,
    /// The rows: a `RowBatch`, protobuf, base64.
    pub rows: String,
    /// A trace: more rows than the limits allowed. A log search: more records matched than
    /// the page holds.
    pub more: bool,
    /// The partitions it read.
    pub covers: Vec<CoveredPartition>,
}

/// A partition an answer covers.
#[derive(Debug, Serialize, Deserialize)]
pub struct CoveredPartition {
    /// `logs` or `spans`.
    pub signal: String,
    /// The start of its hour.
    pub start_unix_nano: u64,
    /// Which part of it.
    pub part: u32,
}

impl InternalRows {
    /// The answer for `rows`, read from `covers`, of node `node`.
    pub fn new(node: Option<String>, rows: RowBatch, more: bool, covers: &[PartitionRef]) -> Self {
        InternalRows {
            node,
            rows: base64::engine::general_purpose::STANDARD.encode(rows.encode_to_vec()),
            more,
            covers: covers.iter().map(CoveredPartition::of).collect(),
        }
    }
}

impl CoveredPartition {
    fn of(p: &PartitionRef) -> Self {
        CoveredPartition {
            signal: p.signal.dir_name().to_string(),
            start_unix_nano: p.start_unix_nano,
            part: p.part,
        }
    }

    /// The partition as node `node`'s split origin.
    fn origin(self, node: &str) -> Result<SplitOrigin, String> {
        let signal = match self.signal.as_str() {
            "logs" => Signal::Logs,
            "spans" => Signal::Spans,
            other => return Err(format!("unknown signal '{other}'")),
        };
        Ok(SplitOrigin {
            node: node.to_string(),
            partition: PartitionRef {
                signal,
                start_unix_nano: self.start_unix_nano,
                part: self.part,
            },
        })
    }
}

/// Rows a node answered with.
pub struct NodeRows {
    /// Its rows.
    pub rows: RowBatch,
    /// More rows than it answered with.
    pub more: bool,
    /// The partitions whose published splits its rows stand for.
    pub covers: Vec<SplitOrigin>,
}

/// What a node answers a search node other than rows (`T`: its part of an aggregation, its
/// candidate traces, its parts of trace summaries), over its rows not yet in a published
/// split.
#[derive(Debug, Serialize, Deserialize)]
pub struct InternalAnswer<T> {
    /// The node that answers.
    pub node: Option<String>,
    /// Its part of the answer.
    pub value: T,
    /// The partitions it read.
    pub covers: Vec<CoveredPartition>,
}

impl<T> InternalAnswer<T> {
    /// The answer `value`, read from `covers`, of node `node`.
    pub fn new(node: Option<String>, value: T, covers: &[PartitionRef]) -> Self {
        InternalAnswer {
            node,
            value,
            covers: covers.iter().map(CoveredPartition::of).collect(),
        }
    }
}

/// A node's part of an answer other than rows.
pub struct NodeAnswer<T> {
    /// Its part.
    pub value: T,
    /// The partitions whose published splits its part stands for.
    pub covers: Vec<SplitOrigin>,
}

/// What the ingest nodes answered (`T`: [`NodeRows`] or a [`NodeAnswer`]), and which did
/// not.
pub struct Gathered<T> {
    /// Answers.
    pub answers: Vec<T>,
    /// Ingest nodes that did not answer (gone by their heartbeat, or failing): their rows not
    /// yet published are missing from the answer.
    pub missing: Vec<String>,
}

impl<T> Default for Gathered<T> {
    fn default() -> Self {
        Gathered {
            answers: Vec::new(),
            missing: Vec::new(),
        }
    }
}

/// An answer that stands for the published splits of some partitions.
pub trait Covers {
    /// Those partitions.
    fn covers(&self) -> &[SplitOrigin];
}

impl Covers for NodeRows {
    fn covers(&self) -> &[SplitOrigin] {
        &self.covers
    }
}

impl<T> Covers for NodeAnswer<T> {
    fn covers(&self) -> &[SplitOrigin] {
        &self.covers
    }
}

impl<T: Covers> Gathered<T> {
    /// The partitions the answers stand for.
    pub fn covered(&self) -> HashSet<SplitOrigin> {
        self.answers
            .iter()
            .flat_map(|a| a.covers().iter().cloned())
            .collect()
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

    /// Every live ingest node's rows of trace `id` not yet published; `authorization` is the
    /// caller's, passed on. Then the list of splits is read again: a split published while
    /// the nodes answered holds rows they no longer answer for.
    pub async fn trace(&self, id: &[u8; 16], authorization: Option<&str>) -> Gathered<NodeRows> {
        let path = format!("/api/v1/internal/trace/{}", hex::encode(id));
        let asked = |c: &reqwest::Client, base: &str| c.get(format!("{base}{path}"));
        self.ask(asked, authorization, decode).await
    }

    /// Every live ingest node's log records matching `search` (whose query text is `query`)
    /// not yet published, newest first, a page of them each; as [`FanOut::trace`] otherwise.
    pub async fn logs(
        &self,
        search: &LogSearch,
        query: &str,
        authorization: Option<&str>,
    ) -> Gathered<NodeRows> {
        let mut params = vec![
            ("q", query.to_string()),
            ("start", search.start_unix_nano.to_string()),
            ("end", search.end_unix_nano.to_string()),
            ("limit", search.limit.to_string()),
        ];
        if let Some(cursor) = search.cursor {
            params.push(("cursor", cursor.encode()));
        }
        let asked = |c: &reqwest::Client, base: &str| {
            c.get(format!("{base}/api/v1/internal/logs")).query(&params)
        };
        self.ask(asked, authorization, decode).await
    }

    /// Every live ingest node's part of `aggregation` over its rows not yet published; as
    /// [`FanOut::trace`] otherwise.
    pub async fn aggregate(
        &self,
        aggregation: &crate::aggregation::Aggregation,
        authorization: Option<&str>,
    ) -> Gathered<NodeAnswer<crate::aggregation::Aggregated>> {
        self.post("/api/v1/internal/aggregate", aggregation, authorization)
            .await
    }

    /// Every live ingest node's answer to `POST path` with the JSON body `question`, a
    /// [`InternalAnswer`] of `T`; as [`FanOut::trace`] otherwise.
    pub async fn post<Q: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        question: &Q,
        authorization: Option<&str>,
    ) -> Gathered<NodeAnswer<T>> {
        let asked =
            |c: &reqwest::Client, base: &str| c.post(format!("{base}{path}")).json(question);
        self.ask(asked, authorization, |node, answer: InternalAnswer<T>| {
            Ok(NodeAnswer {
                value: answer.value,
                covers: answer
                    .covers
                    .into_iter()
                    .map(|c| c.origin(node))
                    .collect::<Result<_, String>>()?,
            })
        })
        .await
    }

    /// Asks every live ingest node the request `asked` builds for the node's base URL, and
    /// makes its answer (`A`, JSON) a `T` with `decode`; then reads the list of splits again.
    async fn ask<A: serde::de::DeserializeOwned, T>(
        &self,
        asked: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        authorization: Option<&str>,
        decode: impl Fn(&str, A) -> Result<T, String>,
    ) -> Gathered<T> {
        let gathered = self.ask_nodes(asked, authorization, decode).await;
        if let Err(reason) = self.follower.refresh().await {
            tracing::warn!(%reason, "cannot read the list of splits; answering from the last one");
        }
        gathered
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

    async fn ask_nodes<A: serde::de::DeserializeOwned, T>(
        &self,
        asked: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        authorization: Option<&str>,
        decode: impl Fn(&str, A) -> Result<T, String>,
    ) -> Gathered<T> {
        let (nodes, missing) = self.live_ingest_nodes().await;
        let mut gathered = Gathered {
            answers: Vec::new(),
            missing,
        };
        let mut sent = Vec::new();
        for (node, advertise) in nodes {
            let mut request = asked(&self.client, &advertise);
            if let Some(authorization) = authorization {
                request = request.header(reqwest::header::AUTHORIZATION, authorization);
            }
            sent.push((node, request.send()));
        }
        let decode = &decode;
        let answers =
            futures_util::future::join_all(sent.into_iter().map(|(node, sent)| async move {
                let answer = async {
                    let response = sent.await.map_err(|e| e.to_string())?;
                    if !response.status().is_success() {
                        return Err(format!("answered {}", response.status()));
                    }
                    let answer: A = response.json().await.map_err(|e| e.to_string())?;
                    decode(&node, answer)
                }
                .await;
                (node, answer)
            }))
            .await;
        for (node, answer) in answers {
            match answer {
                Ok(rows) => gathered.answers.push(rows),
                Err(reason) => {
                    tracing::warn!(%node, %reason, "an ingest node did not answer");
                    gathered.missing.push(node);
                }
            }
        }
        gathered
    }
}

/// The rows and covered partitions of node `node`'s answer.
fn decode(node: &str, answer: InternalRows) -> Result<NodeRows, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer.rows)
        .map_err(|e| format!("rows are not base64: {e}"))?;
    let rows =
        RowBatch::decode(bytes.as_slice()).map_err(|e| format!("rows do not decode: {e}"))?;
    let covers = answer
        .covers
        .into_iter()
        .map(|c| c.origin(node))
        .collect::<Result<_, String>>()?;
    Ok(NodeRows {
        rows,
        more: answer.more,
        covers,
    })
}
