//! The query service: every question weft answers, apart from how it arrives. The HTTP API
//! (`crate::api`: weft's own, Jaeger's v1 and v3, the internal node API) and gRPC
//! (`crate::grpc`) parse their requests into this service's typed requests, call a method of
//! [`QueryService`], and render its typed answer; none of them knows whether the answer came
//! from one node or a whole cluster, and none of them computes anything.
//!
//! Files, by question:
//! - `logs`: log search, newest first, and the log histogram.
//! - `traces`: a trace by ID, trace search, and whole traces (for Jaeger's searches);
//!   `skew`: the clock skew of a trace's services, and how far to move their spans and logs.
//! - `catalog`: services, operations, event IDs (with the severity rule in force).
//! - `peel`: facets, field lists, span statistics, the latency heatmap, comparisons;
//!   `patterns`: the templates of log bodies, and which are new since a time.
//! - `service_map`: calls between services (weft's service map, Jaeger's dependencies).
//! - `tail`: a live tail subscription (this node's feed and, on a search node, every ingest
//!   node's).
//!
//! Beside them:
//! - `requests`: typed requests built from text parameters (the one parser of each kind of
//!   parameter every adapter uses), and the limits of what one question may ask.
//! - `answers`: the JSON shapes of answers, as typed `Serialize` structs.
//! - `error`: [`Error`], what a question can fail with.
//!
//! How a search node answers for the whole cluster:
//! - `node`: [`node::NodeQueries`], the questions a search node asks each ingest node about
//!   its rows not yet published; [`node::LocalNode`] answers them from this node's store.
//! - `fanout`: asks them of every live ingest node over HTTP (`fanout::RemoteNode`); `wire`:
//!   how questions and answers travel; `aggregation`: the catalogs and counts, summed over
//!   the nodes' parts and the splits; `remote_tail`: the ingest nodes' tails, merged.

pub mod aggregation;
pub mod answers;
pub mod catalog;
mod error;
pub mod fanout;
pub mod logs;
pub mod node;
pub mod patterns;
pub mod peel;
pub mod remote_tail;
pub mod requests;
pub mod service_map;
pub mod skew;
pub mod tail;
pub mod traces;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use weft_index::Store;
use weft_index::faults::Faults;

pub use error::{Error, RETRY_AFTER};

use crate::cluster::Cluster;
use crate::pipeline::tail::TailHub;
use crate::severity::SeverityControl;
use fanout::FanOut;

/// Queries that may run at once; each holds a blocking thread.
pub const MAX_CONCURRENT_QUERIES: usize = 32;

/// An answer, and the ingest nodes that did not give their part of it: their rows not yet
/// published are missing (a partial answer, said so by every adapter).
#[derive(Debug)]
pub struct Answer<T> {
    /// The answer.
    pub value: T,
    /// Ingest nodes that did not answer, sorted; empty on a single node.
    pub missing_nodes: Vec<String>,
}

impl<T> Answer<T> {
    /// A whole answer.
    pub fn whole(value: T) -> Self {
        Answer {
            value,
            missing_nodes: Vec::new(),
        }
    }

    /// The answer turned into another, missing what this one misses.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        Answer {
            value: f(self.value),
            missing_nodes: self.missing_nodes,
        }
    }

    /// An answer missing the parts of `missing_nodes`.
    pub fn missing(value: T, mut missing_nodes: Vec<String>) -> Self {
        missing_nodes.sort();
        missing_nodes.dedup();
        Answer {
            value,
            missing_nodes,
        }
    }
}

/// What the query service needs to answer: this node's index, the bounds on queries, and on a
/// search node the cluster it asks.
pub struct QueryService {
    store: Arc<Store>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    fanout: Option<Arc<FanOut>>,
    cluster: Option<Arc<Cluster>>,
    tail: Arc<TailHub>,
    shutdown: watch::Receiver<bool>,
    severity: Arc<SeverityControl>,
    faults: Option<Arc<Faults>>,
}

/// What a [`QueryService`] is built from.
pub struct QueryServiceParts {
    /// This node's index.
    pub store: Arc<Store>,
    /// Longest a question may take.
    pub timeout: Duration,
    /// On a search node: asks the ingest nodes for their rows not yet published.
    pub fanout: Option<Arc<FanOut>>,
    /// With a PostgreSQL metastore: this node among the others on it.
    pub cluster: Option<Arc<Cluster>>,
    /// The live feed of acknowledged rows, for tails.
    pub tail: Arc<TailHub>,
    /// Turns true when weft stops, ending tails.
    pub shutdown: watch::Receiver<bool>,
    /// Runtime severity rules (the event catalog shows the rule in force).
    pub severity: Arc<SeverityControl>,
    /// Faults a test injects (a query that stalls); `None` in production.
    pub faults: Option<Arc<Faults>>,
}

impl QueryService {
    /// The service, answering at most [`MAX_CONCURRENT_QUERIES`] questions at once.
    pub fn new(parts: QueryServiceParts) -> Self {
        QueryService {
            store: parts.store,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_QUERIES)),
            timeout: parts.timeout,
            fanout: parts.fanout,
            cluster: parts.cluster,
            tail: parts.tail,
            shutdown: parts.shutdown,
            severity: parts.severity,
            faults: parts.faults,
        }
    }

    /// Longest a question may take (`query_timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The services' clock offsets as this node estimates them from the calls it indexed
    /// (`/metrics`; the catalog asks every node).
    pub fn local_clock_offsets(&self) -> BTreeMap<String, weft_index::clock::ClockOffset> {
        self.store.clock_offsets()
    }

    /// On a search node, what asks the ingest nodes.
    pub(crate) fn fanout(&self) -> Option<&Arc<FanOut>> {
        self.fanout.as_ref()
    }

    /// This node's name in the cluster (empty on its own).
    pub(crate) fn node_id(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| c.me().id.clone())
            .unwrap_or_default()
    }

    /// Runs a query over this node's store on the blocking pool, bounded in concurrency and
    /// time.
    pub(crate) async fn run_query<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Store, &Deadline) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.store.clone();
        let faults = self.faults.clone();
        run_gated(&self.permits, self.timeout, move |deadline| {
            if let Some(faults) = faults {
                faults.stall_query();
            }
            query(&store, deadline)
        })
        .await
    }
}

/// When a query's answer is no longer wanted; long loops check it between steps.
pub struct Deadline(Instant, Duration);

impl Deadline {
    /// An error once the deadline has passed.
    pub fn check(&self) -> Result<(), Error> {
        if Instant::now() >= self.0 {
            return Err(Error::Timeout(self.1));
        }
        Ok(())
    }
}

/// Runs `work` on the blocking pool under a permit from `permits`, answering within `timeout`.
/// The permit moves into the blocking task: a query that outlives its answer keeps holding its
/// place, so slow queries cannot pile up beyond the limit.
pub(crate) async fn run_gated<T: Send + 'static>(
    permits: &Arc<Semaphore>,
    timeout: Duration,
    work: impl FnOnce(&Deadline) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let deadline = Deadline(Instant::now() + timeout, timeout);
    let permit = tokio::time::timeout(timeout, permits.clone().acquire_owned())
        .await
        .map_err(|_| Error::Unavailable("too many queries are running; retry shortly".into()))?
        .map_err(|_| Error::Unavailable("weft is shutting down".into()))?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work(&deadline)
    });
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) => Err(Error::Internal(format!("query task failed: {join_error}"))),
        Err(_) => Err(Error::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a timed-out query gave its permit back while its blocking task ran on, so
    /// the limit did not limit slow queries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timed_out_query_keeps_its_permit_until_it_ends() {
        let permits = Arc::new(Semaphore::new(1));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slow = run_gated(&permits, Duration::from_millis(50), move |_| {
            let _ = wait.recv();
            Ok(1)
        })
        .await;
        assert!(matches!(slow, Err(Error::Timeout(_))), "{slow:?}");
        // The slow query still runs and still holds the only permit.
        let refused = run_gated(&permits, Duration::from_millis(50), |_| Ok(2)).await;
        assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
        release.send(()).unwrap();
        let started = Instant::now();
        loop {
            match run_gated(&permits, Duration::from_millis(50), |_| Ok(3)).await {
                Ok(3) => break,
                other => assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the permit never came back: {other:?}"
                ),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_work_sees_its_deadline() {
        let permits = Arc::new(Semaphore::new(1));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let answer = run_gated(&permits, Duration::from_millis(30), move |deadline| {
            let mut steps = 0u64;
            let result = loop {
                if let Err(e) = deadline.check() {
                    break e;
                }
                steps += 1;
                std::thread::sleep(Duration::from_millis(1));
            };
            let _ = done_tx.send(steps);
            Err::<(), _>(result)
        })
        .await;
        assert!(matches!(answer, Err(Error::Timeout(_))));
        let steps = done_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(steps > 0);
    }
}
