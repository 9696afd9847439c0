//! `GET /api/v1/logs/tail?q=`: Server-Sent Events of newly acknowledged log records matching
//! the query. Events: `ready` once subscribed, `log` per record (the record as JSON), and
//! `missed` (`{"missed": N}`) when this reader fell behind and N acknowledged records (before
//! filtering) went by unseen. A slow reader never slows ingest.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use weft_index::query::{LogMatcher, parse};

use super::{ApiError, ApiState};
pub(crate) use crate::tail::TailItem;

/// One reader of the live feed: its queue of matching rows, filled by the tail thread.
pub(crate) struct Subscription {
    items: mpsc::Receiver<TailItem>,
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
            stop: state.shutdown.clone(),
        })
    }

    /// Next item, or `None` when weft stops.
    pub(crate) async fn next(&mut self) -> Option<TailItem> {
        tokio::select! {
            item = self.items.recv() => item,
            _ = self.stop.changed() => None,
        }
    }
}

pub(crate) async fn tail(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscription = Subscription::new(&state, params.get("q").map_or("", String::as_str))?;
    let ready = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("ready").data("{}"))
    });
    let items = futures_util::stream::unfold(subscription, |mut sub| async move {
        let event = match sub.next().await? {
            TailItem::Log(row) => Event::default()
                .event("log")
                .data(row.to_json().to_string()),
            TailItem::Missed(n) => Event::default()
                .event("missed")
                .data(json!({ "missed": n }).to_string()),
        };
        Some((Ok(event), sub))
    });
    Ok(Sse::new(futures_util::StreamExt::chain(ready, items)).keep_alive(KeepAlive::default()))
}
