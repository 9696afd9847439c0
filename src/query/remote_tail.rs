//! Live tail on a search node: the tails of every live ingest node, merged. Each ingest node
//! streams the rows matching the query as it acknowledges them
//! (`GET /api/v1/internal/tail`, Server-Sent Events: `ready`, then `row` with a `RowBatch` of
//! one record, protobuf, base64, and `missed`); the search node follows each stream in a task
//! of its own, and follows it again a second after it breaks (or falls silent past the
//! keep-alives), for as long as its own reader stays. The tail is ready once every node has
//! said `ready`, failed to, or let the answer timeout pass; the nodes that did not are named.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use weft_index::RowBatch;

use super::fanout::FanOut;
use crate::pipeline::tail::TailItem;

/// Rows from the ingest nodes waiting for this reader; beyond them, rows are counted missed.
const QUEUE: usize = 1024;
/// The longest event a node may send (a record is bounded far below this).
const MAX_EVENT_BYTES: usize = 16 << 20;
/// How long a broken stream waits before it is followed again.
const RETRY: Duration = Duration::from_secs(1);

/// Every live ingest node's tail of one query.
pub struct RemoteTail {
    /// The merged rows.
    pub items: mpsc::Receiver<TailItem>,
    /// Ingest nodes whose tail could not be opened (gone, or failing).
    pub missing: Vec<String>,
    /// Follows the nodes; ends, with them, when the tail is dropped.
    _supervisor: AbortOnDrop,
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What every follower of one tail shares.
#[derive(Clone)]
struct Source {
    fanout: Arc<FanOut>,
    q: String,
    authorization: Option<String>,
    tx: mpsc::Sender<TailItem>,
}

/// Opens the tail of `q` on every live ingest node, passing `authorization` on; returns once
/// each has said `ready` or failed. Nodes that join later are followed from then on.
pub async fn open(fanout: Arc<FanOut>, q: &str, authorization: Option<&str>) -> RemoteTail {
    let (tx, items) = mpsc::channel(QUEUE);
    let source = Source {
        fanout,
        q: q.to_string(),
        authorization: authorization.map(str::to_string),
        tx,
    };
    let (nodes, mut missing) = source.fanout.live_ingest_nodes().await;
    let mut followers = JoinSet::new();
    let mut followed = HashSet::new();
    let mut readiness = Vec::new();
    for (node, _) in nodes {
        let (ready_tx, ready_rx) = oneshot::channel();
        followers.spawn(follow(source.clone(), node.clone(), Some(ready_tx)));
        followed.insert(node.clone());
        readiness.push((node, ready_rx));
    }
    // Each node has the answer timeout to say `ready`; one that does not is named missing
    // (and followed still: its rows stream once it answers).
    let deadline = tokio::time::Instant::now() + source.fanout.answer_timeout();
    for (node, ready) in readiness {
        match tokio::time::timeout_at(deadline, ready).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(reason))) => {
                tracing::warn!(%node, %reason, "cannot follow an ingest node's tail");
                missing.push(node);
            }
            Ok(Err(_)) | Err(_) => missing.push(node),
        }
    }
    let supervisor = tokio::spawn(supervise(source, followers, followed));
    RemoteTail {
        items,
        missing,
        _supervisor: AbortOnDrop(supervisor),
    }
}

/// Every second, follows the ingest nodes that joined since; holds the followers, which end
/// when it does.
async fn supervise(source: Source, mut followers: JoinSet<()>, mut followed: HashSet<String>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = source.tx.closed() => return,
        }
        let (nodes, _) = source.fanout.live_ingest_nodes().await;
        for (node, _) in nodes {
            if followed.insert(node.clone()) {
                followers.spawn(follow(source.clone(), node, None));
            }
        }
        while followers.try_join_next().is_some() {}
    }
}

/// Follows node `node`'s tail into the source's queue until the reader is gone, at the
/// address it advertises now (a restarted node may listen elsewhere); says on `ready`
/// whether the first attempt got as far as the node's `ready`.
async fn follow(
    source: Source,
    node: String,
    mut ready: Option<oneshot::Sender<Result<(), String>>>,
) {
    loop {
        let (nodes, _) = source.fanout.live_ingest_nodes().await;
        let ended = match nodes.into_iter().find(|(id, _)| *id == node) {
            Some((_, base)) => {
                let mut request = source
                    .fanout
                    .stream_client()
                    .get(format!("{base}/api/v1/internal/tail"))
                    .query(&[("q", source.q.as_str())]);
                if let Some(authorization) = &source.authorization {
                    request = request.header(reqwest::header::AUTHORIZATION, authorization);
                }
                stream(request, &source.tx, &mut ready).await
            }
            None => "gone from the cluster's nodes".to_string(),
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(Err(ended.clone()));
        }
        if source.tx.is_closed() {
            return;
        }
        tracing::debug!(%node, reason = %ended, "an ingest node's tail broke; following it again");
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = source.tx.closed() => return,
        }
    }
}

/// One attempt: the stream's events until it ends; why it ended.
async fn stream(
    request: reqwest::RequestBuilder,
    tx: &mpsc::Sender<TailItem>,
    ready: &mut Option<oneshot::Sender<Result<(), String>>>,
) -> String {
    let mut response = match request.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return format!("answered {}", r.status()),
        Err(e) => return e.to_string(),
    };
    let mut events = EventReader::default();
    let mut missed = 0u64;
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = tx.closed() => return "the reader left".into(),
        };
        let chunk = match chunk {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return "the node ended the stream".into(),
            Err(e) => return e.to_string(),
        };
        let completed = events.push(&chunk);
        if events.pending.len() > MAX_EVENT_BYTES {
            return format!("an event longer than {MAX_EVENT_BYTES} bytes");
        }
        for (name, data) in completed {
            let item = match name.as_str() {
                "ready" => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                    continue;
                }
                "row" => match decode_row(&data) {
                    Ok(row) => TailItem::Log(Box::new(row)),
                    Err(reason) => return reason,
                },
                "missed" => TailItem::Missed(
                    serde_json::from_str::<serde_json::Value>(&data)
                        .ok()
                        .and_then(|v| v["missed"].as_u64())
                        .unwrap_or(0),
                ),
                _ => continue,
            };
            // A slow reader never holds the nodes back: what does not fit is counted.
            if missed > 0 && tx.try_send(TailItem::Missed(missed)).is_ok() {
                missed = 0;
            }
            match tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(TailItem::Missed(n))) => missed += n,
                Err(mpsc::error::TrySendError::Full(_)) => missed += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => return "the reader left".into(),
            }
        }
    }
}

/// The log record of a `row` event.
fn decode_row(data: &str) -> Result<weft_index::LogRow, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("a row is not base64: {e}"))?;
    let batch = RowBatch::decode(bytes.as_slice()).map_err(|e| format!("a row: {e}"))?;
    batch
        .logs
        .into_iter()
        .next()
        .ok_or_else(|| "a row event without a record".to_string())
}

/// The events of a Server-Sent Events stream, read as its bytes arrive: `event:` and `data:`
/// lines, an event ending at a blank line. Comments (keep-alives) are skipped.
#[derive(Default)]
struct EventReader {
    pending: Vec<u8>,
    name: String,
    data: String,
}

impl EventReader {
    /// Takes `bytes`; returns the (name, data) of each event they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.name.is_empty() || !self.data.is_empty() {
                    events.push((
                        std::mem::take(&mut self.name),
                        std::mem::take(&mut self.data),
                    ));
                }
            } else if let Some(name) = line.strip_prefix("event:") {
                self.name = name.trim_start().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(data.strip_prefix(' ').unwrap_or(data));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunks_and_keep_alives_skipped() {
        let mut reader = EventReader::default();
        assert!(reader.push(b"event: ready\ndata: {}\n").is_empty());
        assert_eq!(
            reader.push(b"\n:\n\nevent: row\ndata: AAA"),
            [("ready".to_string(), "{}".to_string())]
        );
        assert_eq!(
            reader.push(b"=\r\n\r\nevent: missed\ndata: {\"missed\": 3}\n\n"),
            [
                ("row".to_string(), "AAA=".to_string()),
                ("missed".to_string(), "{\"missed\": 3}".to_string())
            ]
        );
    }
}
