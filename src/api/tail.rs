//! `GET /api/v1/logs/tail?q=`: Server-Sent Events of newly acknowledged log records matching
//! the query. Events: `ready` once subscribed (`{"partial": …, "missing_nodes": […]}`: on a
//! search node, the ingest nodes whose tail could not be opened), `log` per record (the
//! record as JSON), and `missed` (`{"missed": N}`) when this reader fell behind and N
//! acknowledged records (before filtering) went by unseen. A slow reader never slows ingest.
//!
//! On a search node the records come from every live ingest node's
//! `GET /api/v1/internal/tail` (`crate::remote_tail`), which streams them as protobuf.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use base64::Engine;
use futures_util::Stream;
use prost::Message;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use weft_index::RowBatch;
use weft_index::query::{LogMatcher, parse};

use super::traces::authorization;
use super::{ApiError, ApiState};
use crate::query::answers::{Completeness, LogRecord};
use crate::remote_tail::RemoteTail;
pub(crate) use crate::tail::TailItem;

/// One reader of the live feed: its queue of matching rows, filled by the tail thread, and on
/// a search node the ingest nodes' tails.
pub(crate) struct Subscription {
    items: mpsc::Receiver<TailItem>,
    remote: Option<RemoteTail>,
    stop: watch::Receiver<bool>,
}

impl Subscription {
    /// Subscribes with a query (validated like a search). Refused when weft is stopping or
    /// when `max_tail_subscribers` tails are open.
    pub(crate) fn new(state: &ApiState, q: &str) -> Result<Self, ApiError> {
        let matcher = LogMatcher::new(parse(q)?)?;
        if *state.shutdown.borrow() {
            return Err(ApiError::Busy("weft is shutting down".into()));
        }
        let items = state
            .pipeline
            .tail()
            .subscribe(matcher)
            .map_err(|e| ApiError::TooMany(e.to_string()))?;
        Ok(Subscription {
            items,
            remote: None,
            stop: state.shutdown.clone(),
        })
    }

    /// [`Subscription::new`], and on a search node every live ingest node's tail of `q` too
    /// (`authorization`, the caller's, passed on).
    pub(crate) async fn open(
        state: &ApiState,
        q: &str,
        authorization: Option<String>,
    ) -> Result<Self, ApiError> {
        let mut subscription = Subscription::new(state, q)?;
        if let Some(fanout) = &state.fanout {
            subscription.remote =
                Some(crate::remote_tail::open(fanout.clone(), q, authorization.as_deref()).await);
        }
        Ok(subscription)
    }

    /// On a search node, the ingest nodes whose tail could not be opened.
    pub(crate) fn missing_nodes(&self) -> &[String] {
        self.remote.as_ref().map_or(&[], |r| r.missing.as_slice())
    }

    /// Next item, or `None` when weft stops.
    pub(crate) async fn next(&mut self) -> Option<TailItem> {
        let remote = async {
            match &mut self.remote {
                Some(remote) => remote.items.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = self.items.recv() => item,
            Some(item) = remote => Some(item),
            _ = self.stop.changed() => None,
        }
    }
}

pub(crate) async fn tail(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q = params.get("q").map_or("", String::as_str);
    let subscription = Subscription::open(&state, q, authorization(&headers)).await?;
    let missing = subscription.missing_nodes().to_vec();
    let ready = futures_util::stream::once(async move {
        let data = serde_json::to_string(&Completeness::of(missing)).unwrap_or_default();
        Ok::<_, Infallible>(Event::default().event("ready").data(data))
    });
    let items = futures_util::stream::unfold(subscription, |mut sub| async move {
        let event = match sub.next().await? {
            TailItem::Log(row) => Event::default()
                .event("log")
                .data(serde_json::to_string(&LogRecord::from(&*row)).unwrap_or_default()),
            TailItem::Missed(n) => Event::default()
                .event("missed")
                .data(json!({ "missed": n }).to_string()),
        };
        Some((Ok(event), sub))
    });
    Ok(Sse::new(futures_util::StreamExt::chain(ready, items)).keep_alive(KeepAlive::default()))
}

/// `GET /api/v1/internal/tail?q=`: this node's tail for a search node (`crate::remote_tail`):
/// `ready`, then `row` per record (a `RowBatch` of it, protobuf, base64) and `missed`.
pub(crate) async fn internal_tail(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscription = Subscription::new(&state, params.get("q").map_or("", String::as_str))?;
    let ready = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("ready").data("{}"))
    });
    let items = futures_util::stream::unfold(subscription, |mut sub| async move {
        let event = match sub.next().await? {
            TailItem::Log(row) => {
                let batch = RowBatch {
                    logs: vec![*row],
                    spans: Vec::new(),
                };
                Event::default()
                    .event("row")
                    .data(base64::engine::general_purpose::STANDARD.encode(batch.encode_to_vec()))
            }
            TailItem::Missed(n) => Event::default()
                .event("missed")
                .data(json!({ "missed": n }).to_string()),
        };
        Some((Ok(event), sub))
    });
    Ok(Sse::new(futures_util::StreamExt::chain(ready, items)).keep_alive(KeepAlive::default()))
}
