//! Live tail: one thread matches every acknowledged log row against every subscriber's query.
//!
//! ```text
//! WAL thread ──try_send (shared batch, no copy)──> tail thread ──try_send (matching rows)──> subscriber
//!             bounded: a full hub drops batches      runs every matcher    bounded: a slow reader's
//!                                                                          rows are counted as missed
//! ```
//! The work is bounded: at most `max_subscribers` subscribers, one thread for all the matching
//! (off the async runtime), small queues. Ingest never waits for the tail. A subscriber that
//! falls behind, or misses batches the hub dropped, is told how many acknowledged records
//! (before filtering by its query) went by unseen.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::mpsc;
use weft_index::query::LogMatcher;
use weft_index::{LogRow, RowBatch};

/// Batches waiting for the tail thread; beyond this, batches are dropped (and counted).
const HUB_QUEUE_BATCHES: usize = 16;
/// Items a subscriber's queue holds; a reader further behind misses rows.
const SUBSCRIBER_QUEUE_ITEMS: usize = 1024;
/// How often an idle tail thread tells readers what they missed.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// What a subscriber receives.
#[derive(Debug)]
pub enum TailItem {
    /// A matching record.
    Log(Box<LogRow>),
    /// This many acknowledged records (before filtering) went by unseen.
    Missed(u64),
}

/// Acknowledged log rows on their way to the tail thread. `first_seq` numbers the first row in
/// the stream of every acknowledged log row, so gaps can be counted.
pub struct TailBatch {
    first_seq: u64,
    batch: Arc<RowBatch>,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0} live tails are open, the limit (max_tail_subscribers); retry later")]
pub struct TooManySubscribers(pub usize);

struct Subscriber {
    matcher: LogMatcher,
    tx: mpsc::Sender<TailItem>,
    /// Sequence number of the next row this subscriber expects; `None` before its first batch.
    next_seq: Option<u64>,
    /// Rows it missed and has not been told of yet.
    missed: u64,
}

impl Subscriber {
    /// Tells the reader what it missed, if there is room; returns false once it has gone.
    fn flush_missed(&mut self) -> bool {
        if self.missed == 0 {
            return !self.tx.is_closed();
        }
        match self.tx.try_send(TailItem::Missed(self.missed)) {
            Ok(()) => {
                self.missed = 0;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Offers a batch; returns false once the reader has gone.
    fn offer(&mut self, first_seq: u64, rows: &[LogRow]) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        if let Some(expected) = self.next_seq
            && first_seq > expected
        {
            self.missed += first_seq - expected;
        }
        self.next_seq = Some(first_seq + rows.len() as u64);
        if self.missed > 0 {
            match self.tx.try_send(TailItem::Missed(self.missed)) {
                Ok(()) => self.missed = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.missed += rows.len() as u64;
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        for (i, row) in rows.iter().enumerate() {
            if !self.matcher.matches(row) {
                continue;
            }
            match self.tx.try_send(TailItem::Log(Box::new(row.clone()))) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // This row and the rest of the batch go by unseen.
                    self.missed += (rows.len() - i) as u64;
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// The tail thread and its subscribers.
pub struct TailHub {
    subscribers: Mutex<Vec<Subscriber>>,
    count: AtomicUsize,
    max_subscribers: usize,
}

/// The WAL thread's end of the hub: numbers rows and hands batches over without waiting.
pub struct TailFeed {
    hub: Arc<TailHub>,
    tx: Sender<TailBatch>,
    next_seq: u64,
    /// A batch was dropped and no later batch has told the hub where the stream stands.
    gap_untold: bool,
    empty: Arc<RowBatch>,
}

impl TailFeed {
    /// Offers the log rows of an acknowledged batch. Shares the batch rather than copying it,
    /// and only while someone is tailing.
    pub fn offer(&mut self, batch: &Arc<RowBatch>) {
        let rows = batch.logs.len() as u64;
        if rows == 0 {
            return;
        }
        if self.hub.count.load(Ordering::Relaxed) > 0 {
            self.send(batch.clone());
        }
        self.next_seq += rows;
    }

    /// Tells the hub where the stream stands if a dropped batch left that untold, so readers
    /// learn of the gap without waiting for more data. The WAL thread calls it as it idles.
    pub fn flush(&mut self) {
        if self.gap_untold {
            self.send(self.empty.clone());
        }
    }

    fn send(&mut self, batch: Arc<RowBatch>) {
        match self.tx.try_send(TailBatch {
            first_seq: self.next_seq,
            batch,
        }) {
            Ok(()) => self.gap_untold = false,
            // A full hub drops the batch; subscribers see the gap in sequence numbers.
            Err(TrySendError::Full(_)) => self.gap_untold = true,
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl TailHub {
    /// Starts the tail thread; it stops when the feed is dropped.
    pub fn start(max_subscribers: usize) -> std::io::Result<(Arc<TailHub>, TailFeed)> {
        let hub = Arc::new(TailHub {
            subscribers: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            max_subscribers,
        });
        let (tx, rx) = crossbeam_channel::bounded(HUB_QUEUE_BATCHES);
        {
            let hub = hub.clone();
            std::thread::Builder::new()
                .name("weft-tail".into())
                .spawn(move || hub.run(rx))?;
        }
        let feed = TailFeed {
            hub: hub.clone(),
            tx,
            next_seq: 0,
            gap_untold: false,
            empty: Arc::new(RowBatch::default()),
        };
        Ok((hub, feed))
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes with a compiled query. Refused beyond `max_subscribers`.
    pub fn subscribe(
        &self,
        matcher: LogMatcher,
    ) -> Result<mpsc::Receiver<TailItem>, TooManySubscribers> {
        let mut subscribers = self.subscribers();
        subscribers.retain(|s| !s.tx.is_closed());
        if subscribers.len() >= self.max_subscribers {
            return Err(TooManySubscribers(subscribers.len()));
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE_ITEMS);
        subscribers.push(Subscriber {
            matcher,
            tx,
            next_seq: None,
            missed: 0,
        });
        self.count.store(subscribers.len(), Ordering::Relaxed);
        Ok(rx)
    }

    /// Subscribers now.
    pub fn subscriber_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn run(&self, rx: Receiver<TailBatch>) {
        loop {
            match rx.recv_timeout(FLUSH_EVERY) {
                Ok(TailBatch { first_seq, batch }) => {
                    let mut subscribers = self.subscribers();
                    subscribers.retain_mut(|s| s.offer(first_seq, &batch.logs));
                    self.count.store(subscribers.len(), Ordering::Relaxed);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    // A reader that caught up learns what it missed without waiting for data.
                    let mut subscribers = self.subscribers();
                    subscribers.retain_mut(Subscriber::flush_missed);
                    self.count.store(subscribers.len(), Ordering::Relaxed);
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        // The feed is gone (weft is stopping): dropping the senders ends every stream.
        self.subscribers().clear();
        self.count.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use weft_index::query::parse;

    fn rows(n: usize, service: &str) -> Arc<RowBatch> {
        Arc::new(RowBatch {
            logs: (0..n)
                .map(|i| LogRow {
                    service: service.into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!("row {i}"))),
                    }),
                    ..Default::default()
                })
                .collect(),
            spans: vec![],
        })
    }

    fn matcher(q: &str) -> LogMatcher {
        LogMatcher::new(parse(q).unwrap()).unwrap()
    }

    async fn next(rx: &mut mpsc::Receiver<TailItem>) -> TailItem {
        tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
            .await
            .expect("an item in time")
            .expect("the hub is running")
    }

    #[tokio::test]
    async fn matching_rows_reach_their_subscribers_only() {
        let (hub, mut feed) = TailHub::start(4).unwrap();
        let mut a = hub.subscribe(matcher("service:a")).unwrap();
        let mut b = hub.subscribe(matcher("service:b")).unwrap();
        feed.offer(&rows(2, "a"));
        feed.offer(&rows(1, "b"));
        for _ in 0..2 {
            assert!(matches!(next(&mut a).await, TailItem::Log(r) if r.service == "a"));
        }
        assert!(matches!(next(&mut b).await, TailItem::Log(r) if r.service == "b"));
    }

    #[tokio::test]
    async fn subscribers_are_capped_and_a_gone_reader_frees_its_place() {
        let (hub, _feed) = TailHub::start(2).unwrap();
        let first = hub.subscribe(matcher("a")).unwrap();
        let _second = hub.subscribe(matcher("b")).unwrap();
        let refused = hub.subscribe(matcher("c")).unwrap_err();
        assert!(refused.to_string().contains("max_tail_subscribers"));
        drop(first);
        assert!(hub.subscribe(matcher("c")).is_ok());
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_told_how_many_records_it_missed() {
        let (hub, mut feed) = TailHub::start(1).unwrap();
        let mut rx = hub.subscribe(matcher("")).unwrap();
        // Far more than the subscriber's queue, without reading.
        let batches = 3 * SUBSCRIBER_QUEUE_ITEMS / 100;
        for _ in 0..batches {
            feed.offer(&rows(100, "a"));
        }
        let sent = (batches * 100) as u64;
        let mut received = 0u64;
        let mut missed = 0u64;
        while received + missed < sent {
            // The WAL thread does this as it idles: batches the hub had no room for are told.
            feed.flush();
            match next(&mut rx).await {
                TailItem::Log(_) => received += 1,
                TailItem::Missed(n) => missed += n,
            }
        }
        assert!(missed > 0, "the reader fell behind but was not told");
        assert_eq!(received + missed, sent, "every record delivered or counted");
    }
}
