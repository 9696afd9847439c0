//! `GET /api/v1/logs/tail?q=`: Server-Sent Events of newly acknowledged log records matching
//! the query. Events: `ready` once subscribed, `log` per record (the record as JSON), and
//! `missed` (`{"missed": N}`) when this reader fell behind and N acknowledged records (before
//! filtering) went by unseen. A slow reader never slows ingest.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use weft_index::query::{LogMatcher, parse};

use super::{ApiError, ApiState};
use crate::pipeline::TailBatch;

struct Subscription {
    feed: broadcast::Receiver<TailBatch>,
    matcher: LogMatcher,
    next_seq: Option<u64>,
    pending: VecDeque<Event>,
    stop: watch::Receiver<bool>,
}

impl Subscription {
    /// Next event, or `None` when weft stops.
    async fn next(&mut self) -> Option<Event> {
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
            let missed = batch.first_seq - expected;
            self.pending.push_back(
                Event::default()
                    .event("missed")
                    .data(json!({ "missed": missed }).to_string()),
            );
        }
        self.next_seq = Some(batch.first_seq + batch.rows.len() as u64);
        for row in batch.rows.iter().filter(|r| self.matcher.matches(r)) {
            self.pending.push_back(
                Event::default()
                    .event("log")
                    .data(row.to_json().to_string()),
            );
        }
    }
}

pub(crate) async fn tail(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let matcher = LogMatcher::new(parse(params.get("q").map_or("", String::as_str))?)?;
    let subscription = Subscription {
        feed: state.pipeline.subscribe_tail(),
        matcher,
        next_seq: None,
        pending: VecDeque::from([Event::default().event("ready").data("{}")]),
        stop: state.shutdown.clone(),
    };
    if *subscription.stop.borrow() {
        return Err(ApiError::Busy("weft is shutting down".into()));
    }
    let stream = futures_util::stream::unfold(subscription, |mut sub| async move {
        sub.next().await.map(|event| (Ok(event), sub))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
