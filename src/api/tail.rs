//! `GET /api/v1/logs/tail?q=`: Server-Sent Events of newly acknowledged log records matching
//! the query. Events: `ready` once subscribed (`{"partial": …, "missing_nodes": […]}`: on a
//! search node, the ingest nodes whose tail could not be opened), `log` per record (the
//! record as JSON), and `missed` (`{"missed": N}`) when this reader fell behind and N
//! acknowledged records (before filtering) went by unseen. A slow reader never slows ingest.
//!
//! On a search node the records come from every live ingest node's
//! `GET /api/v1/internal/tail` (`crate::query::remote_tail`), which streams them as protobuf.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use base64::Engine;
use futures_util::Stream;
use prost::Message;
use serde_json::json;
use weft_index::RowBatch;

use super::{ApiError, ApiState, authorization};
use crate::query::answers::{Completeness, LogRecord};
use crate::query::tail::TailItem;

pub(crate) async fn tail(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q = params.get("q").map_or("", String::as_str);
    let subscription = state
        .query
        .tail(q, authorization(&headers).as_deref())
        .await?;
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

/// `GET /api/v1/internal/tail?q=`: this node's tail for a search node (`crate::query::remote_tail`):
/// `ready`, then `row` per record (a `RowBatch` of it, protobuf, base64) and `missed`.
pub(crate) async fn internal_tail(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscription = state
        .query
        .tail_this_node(params.get("q").map_or("", String::as_str))?;
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
