//! The questions a search node asks an ingest node (`weft::query::node::NodeQueries`), asked
//! over HTTP by the fan-out's client (`weft::fanout::RemoteNode`) of a real node: its answers
//! must hold what the node's own public API answers, and a node that answers badly or too
//! much is refused, not trusted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weft::query::aggregation::Aggregation;
use weft::query::fanout::{MAX_NODE_ANSWER_BYTES, RemoteNode};
use weft::query::node::NodeQueries;
use weft_index::{LogSearch, TraceSearch};

use crate::common::{DEADLINE, TestServer};
use crate::dataset::Dataset;

async fn loaded() -> (TestServer, Dataset) {
    let server = TestServer::start().await;
    let data = Dataset::build();
    data.send(&server).await;
    let [(start, from), (end, to)] = data.range();
    let query = [
        ("limit", "1000"),
        (start, from.as_str()),
        (end, to.as_str()),
    ];
    let started = Instant::now();
    loop {
        let (_, body) = server.get("/api/v1/logs", &query).await;
        if body["logs"].as_array().unwrap().len() == data.logs.len() {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "data set not searchable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for trace in data.trace_durations().keys() {
        let id = hex::decode(trace).unwrap();
        let spans = data.spans.iter().filter(|s| s.trace_id == id).count();
        let logs = data.logs.iter().filter(|l| l.trace_id == id).count();
        server.wait_for_trace(trace, spans, logs).await;
    }
    (server, data)
}

/// A client that gives up as a search node does, rather than hang the test.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

fn remote(server: &TestServer, max_answer_bytes: usize) -> RemoteNode {
    RemoteNode::new(
        "ingest-1".into(),
        server.url(""),
        client(),
        None,
        max_answer_bytes,
    )
}

#[tokio::test]
async fn a_remote_node_answers_what_the_node_answers_its_users() {
    let (server, data) = loaded().await;
    let node = remote(&server, MAX_NODE_ANSWER_BYTES);

    // A trace: the same spans and logs as `/api/v1/traces/{id}`, with the partitions read.
    let id: [u8; 16] = data.cross_hour_trace.as_slice().try_into().unwrap();
    let answer = node.trace(id).await.unwrap();
    assert!(
        !answer.covers.is_empty(),
        "a trace answer names what it read"
    );
    let (status, public) = server
        .get(&format!("/api/v1/traces/{}", hex::encode(id)), &[])
        .await;
    assert_eq!(status, 200, "{public}");
    let span_ids = |ids: Vec<String>| ids.into_iter().collect::<BTreeSet<_>>();
    let theirs = span_ids(
        public["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["span_id"].as_str().unwrap().to_string())
            .collect(),
    );
    let ours = span_ids(
        answer
            .value
            .rows
            .spans
            .iter()
            .map(|s| hex::encode(&s.span_id))
            .collect(),
    );
    assert_eq!(ours, theirs);
    assert!(ours.len() > 1, "the trace crosses an hour: several spans");
    assert_eq!(
        answer.value.rows.logs.len(),
        public["logs"].as_array().unwrap().len()
    );

    // A log search: every record of the data set, newest first, over two pages.
    let search = |cursor| LogSearch {
        query: None,
        start_unix_nano: data.start,
        end_unix_nano: data.end,
        limit: data.logs.len() / 2 + 1,
        cursor,
    };
    let first = node.logs(&search(None)).await.unwrap();
    assert!(first.value.more);
    let last = first.value.rows.logs.last().unwrap();
    let cursor = weft_index::LogCursor::of(last);
    let second = node.logs(&search(Some(cursor))).await.unwrap();
    let times: Vec<u64> = first
        .value
        .rows
        .logs
        .iter()
        .chain(&second.value.rows.logs)
        .map(|r| r.time_unix_nano)
        .collect();
    assert_eq!(times.len(), data.logs.len());
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let query = weft_index::query::parse("service:checkout").unwrap();
    let checkout = node
        .logs(&LogSearch {
            query,
            ..search(None)
        })
        .await
        .unwrap();
    let sent = data.logs.iter().filter(|l| l.service == "checkout").count();
    assert!(sent > 0);
    assert_eq!(checkout.value.rows.logs.len(), sent);

    // Trace candidates and their parts: every request trace, and each part's spans.
    let candidates = node
        .trace_candidates(&TraceSearch {
            query: None,
            start_unix_nano: data.start,
            end_unix_nano: data.end,
            min_duration_ns: None,
            max_duration_ns: None,
            limit: 0,
        })
        .await
        .unwrap();
    let found: BTreeSet<String> = candidates
        .value
        .traces
        .iter()
        .map(|c| hex::encode(c.trace_id))
        .collect();
    for trace in data.trace_durations().keys() {
        assert!(found.contains(trace), "{trace} is a candidate");
    }
    let ids: Vec<[u8; 16]> = candidates.value.traces.iter().map(|c| c.trace_id).collect();
    let parts = node.trace_parts(&ids, data.start, data.end).await.unwrap();
    assert_eq!(parts.value.len(), ids.len());
    for (id, part) in ids.iter().zip(&parts.value) {
        let sent = data.spans.iter().filter(|s| s.trace_id == id).count();
        assert_eq!(part.spans.len(), sent, "spans of {}", hex::encode(id));
    }

    // An aggregation: the services, as `/api/v1/services` counts them.
    let services = node
        .aggregate(&Aggregation::Services {
            start_unix_nano: data.start,
            end_unix_nano: data.end,
        })
        .await
        .unwrap();
    let sent: BTreeSet<&str> = data.logs.iter().map(|l| l.service).collect();
    let answered: BTreeSet<&str> = services.value.services.keys().map(String::as_str).collect();
    assert!(sent.is_subset(&answered), "{sent:?} in {answered:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_node_answering_too_much_or_wrongly_is_refused() {
    let (server, data) = loaded().await;
    let id: [u8; 16] = data.cross_hour_trace.as_slice().try_into().unwrap();
    let small = remote(&server, 64);
    let refused = small.trace(id).await.unwrap_err().to_string();
    assert!(refused.contains("larger than 64 bytes"), "{refused}");
    assert!(refused.contains("ingest-1"), "names the node: {refused}");

    // A node whose address leads elsewhere answers 404, not rows.
    let astray = RemoteNode::new(
        "ingest-2".into(),
        server.url("/nowhere"),
        client(),
        None,
        MAX_NODE_ANSWER_BYTES,
    );
    let refused = astray.trace(id).await.unwrap_err().to_string();
    assert!(refused.contains("404"), "{refused}");

    // A node that is not there.
    let gone = RemoteNode::new(
        "ingest-3".into(),
        "http://127.0.0.1:1".into(),
        client(),
        None,
        MAX_NODE_ANSWER_BYTES,
    );
    assert!(gone.trace(id).await.is_err());
    server.stop().await;
}
