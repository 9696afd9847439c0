//! `GET /api/v1/logs/tail?q=`: Server-Sent Events of newly acknowledged log records matching
//! the query. Events: `ready` once subscribed, `log` per record (the record as JSON), and
//! `missed` (`{"missed": N}`) when this reader fell behind and N acknowledged records (before
//! filtering) went by unseen. A slow reader never slows ingest.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use weft_index::LogRow;
use weft_index::query::{LogMatcher, parse};

use super::{ApiError, ApiState};
use crate::pipeline::TailBatch;

/// What a tail delivers.
#[derive(Debug)]
pub(crate) enum TailItem {
    /// A matching record.
    Log(Arc<Vec<LogRow>>, usize),
    /// The reader fell behind and this many records (before filtering) went by.
    Missed(u64),
}

/// One reader of the live feed, with its query.
pub(crate) struct Subscription {
    feed: broadcast::Receiver<TailBatch>,
    matcher: LogMatcher,
    next_seq: Option<u64>,
    pending: VecDeque<TailItem>,
    stop: watch::Receiver<bool>,
}

impl Subscription {
    /// Subscribes with a query (validated like a search).
    pub(crate) fn new(state: &ApiState, q: &str) -> Result<Self, ApiError> {
        let matcher = LogMatcher::new(parse(q)?)?;
        if *state.shutdown.borrow() {
            return Err(ApiError::Busy("weft is shutting down".into()));
        }
        Ok(Subscription {
            feed: state.pipeline.subscribe_tail(),
            matcher,
            next_seq: None,
            pending: VecDeque::new(),
            stop: state.shutdown.clone(),
        })
    }

    /// Next item, or `None` when weft stops.
    pub(crate) async fn next(&mut self) -> Option<TailItem> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let received = tokio::select! {
                r = self.feed.recv() => r,
                _ = self.stop.changed() => return None,
            };
            match received {
                Ok(batch) => self.take(batch),
                // The next batch's sequence number tells how many records were skipped.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn take(&mut self, batch: TailBatch) {
        if let Some(expected) = self.next_seq
            && batch.first_seq > expected
        {
            self.pending
                .push_back(TailItem::Missed(batch.first_seq - expected));
        }
        self.next_seq = Some(batch.first_seq + batch.rows.len() as u64);
        for (i, row) in batch.rows.iter().enumerate() {
            if self.matcher.matches(row) {
                self.pending.push_back(TailItem::Log(batch.rows.clone(), i));
            }
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
            TailItem::Log(rows, i) => Event::default()
                .event("log")
                .data(rows[i].to_json().to_string()),
            TailItem::Missed(n) => Event::default()
                .event("missed")
                .data(json!({ "missed": n }).to_string()),
        };
        Some((Ok(event), sub))
    });
    Ok(Sse::new(futures_util::StreamExt::chain(ready, items)).keep_alive(KeepAlive::default()))
}
