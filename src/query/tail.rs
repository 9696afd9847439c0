//! A live tail: newly acknowledged log records matching a query, from this node's feed (the
//! tail thread, `crate::pipeline::tail`) and, on a search node, from every live ingest node's
//! tail (`super::remote_tail`). A slow reader never slows ingest: it is told how many records
//! it missed instead.

use tokio::sync::{mpsc, watch};
use weft_index::query::{LogMatcher, parse};

use super::remote_tail::RemoteTail;
use super::{Error, QueryService};
pub use crate::pipeline::tail::TailItem;

/// One reader of the live feed: its queue of matching rows, filled by the tail thread, and on
/// a search node the ingest nodes' tails.
pub struct Subscription {
    items: mpsc::Receiver<TailItem>,
    remote: Option<RemoteTail>,
    stop: watch::Receiver<bool>,
}

impl QueryService {
    /// A tail of `q` (validated like a search) over this node's feed only: what a search node
    /// asks an ingest node for. Refused when weft is stopping or when `max_tail_subscribers`
    /// tails are open.
    pub fn tail_this_node(&self, q: &str) -> Result<Subscription, Error> {
        let matcher = LogMatcher::new(parse(q)?)?;
        if *self.shutdown.borrow() {
            return Err(Error::Unavailable("weft is shutting down".into()));
        }
        let items = self
            .tail
            .subscribe(matcher)
            .map_err(|e| Error::TooMany(e.to_string()))?;
        Ok(Subscription {
            items,
            remote: None,
            stop: self.shutdown.clone(),
        })
    }

    /// A tail of `q`: this node's feed and, on a search node, every live ingest node's tail of
    /// `q` too (`authorization`, the caller's, passed on).
    pub async fn tail(&self, q: &str, authorization: Option<&str>) -> Result<Subscription, Error> {
        let mut subscription = self.tail_this_node(q)?;
        if let Some(fanout) = self.fanout() {
            subscription.remote =
                Some(super::remote_tail::open(fanout.clone(), q, authorization).await);
        }
        Ok(subscription)
    }
}

impl Subscription {
    /// On a search node, the ingest nodes whose tail could not be opened.
    pub fn missing_nodes(&self) -> &[String] {
        self.remote.as_ref().map_or(&[], |r| r.missing.as_slice())
    }

    /// Next item, or `None` when weft stops.
    pub async fn next(&mut self) -> Option<TailItem> {
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
